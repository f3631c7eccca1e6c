"""Block buffers kept from one run of an engine to the next, as a caching allocator does.

A training step allocates the same blocks every run. Fresh large arrays are fresh pages, and
touching them the first time (a page fault and a zeroed page for every 4 KiB) costs time in the
kernel, which grows and varies when two workers fault at once. The pool hands a finished run's
dead buffers to the next block of the same shape and dtype instead.

A buffer goes back to the pool when no live block uses it any more: a block may be a view of
another (a reshape), so the pool counts the blocks that share each buffer. Buffers still in use
when a run ends (its outputs, which now belong to the caller) are forgotten, never reused. The
pool keeps no more than a run returned to it: a buffer that sat unused for a whole run is
dropped. Small blocks are left to malloc, which recycles them without faults; for them the
pool is not worth its bookkeeping. Not thread-safe: the engine calls it under its driver's lock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Key = tuple[tuple[int, ...], np.dtype]

MIN_BYTES = 256 * 1024  # glibc's malloc serves smaller blocks from its heap


def _root(a: np.ndarray) -> np.ndarray:
    """The array that owns `a`'s memory."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


class BlockPool:
    """Reusable C-contiguous numpy buffers by (shape, dtype), with per-buffer block counts."""

    def __init__(self, min_bytes: int = MIN_BYTES) -> None:
        self.min_bytes = min_bytes
        self.free: dict[Key, list[np.ndarray]] = {}  # freed during this run
        self.spare: dict[Key, list[np.ndarray]] = {}  # freed during the last run, not yet reused
        self.users: dict[int, int] = {}  # id(buffer) -> live blocks on it
        self.owned: dict[int, np.ndarray] = {}  # id(buffer) -> buffer, while some run uses it
        self.reused = 0

    def take(self, shape: Sequence[int], dtype: np.dtype) -> np.ndarray | None:
        """A buffer for a block about to be computed: a dead one of that shape, else a new one;
        None for a small block (the kernel allocates it)."""
        key = (tuple(shape), np.dtype(dtype))
        if math.prod(key[0]) * key[1].itemsize < self.min_bytes:
            return None
        stack = self.free.get(key) or self.spare.get(key)
        if stack:
            buf = stack.pop()
            self.reused += 1
        else:
            buf = np.empty(key[0], dtype=key[1])
        self.owned[id(buf)] = buf
        self.users.setdefault(id(buf), 0)
        return buf

    def hold(self, block: object) -> None:
        """A finished block: if it lives on a pool buffer, that buffer has one more user."""
        if self.owned and isinstance(block, np.ndarray):
            k = id(_root(block))
            if k in self.owned:
                self.users[k] += 1

    def drop(self, block: object) -> None:
        """A block no task reads any more; its buffer returns to the pool with its last user."""
        if not self.owned or not isinstance(block, np.ndarray):
            return
        root = _root(block)
        k = id(root)
        if k not in self.owned:
            return
        self.users[k] -= 1
        if self.users[k] == 0:
            del self.users[k], self.owned[k]
            self.free.setdefault((root.shape, root.dtype), []).append(root)

    def end_run(self) -> None:
        """Forget the buffers still in use (outputs, blocks of a failed run) and the free buffers
        this run did not need; what this run freed stays for the next."""
        self.users.clear()
        self.owned.clear()
        self.spare = {k: v for k, v in self.free.items() if v}
        self.free = {}

    def clear(self) -> None:
        self.end_run()
        self.spare = {}

    @property
    def nbytes(self) -> int:
        """Bytes the pool keeps between runs."""
        return sum(b.nbytes for stack in (*self.free.values(), *self.spare.values()) for b in stack)
