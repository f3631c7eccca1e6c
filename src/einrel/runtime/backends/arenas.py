"""What the memory engine asks of a backend, written once: arenas, host copies and node kinds.

A backend keeps one byte arena per device and a pool of host buffers (evicted blocks and
outputs) that lives as long as its memory graph; blocks are typed views at their planned
offsets. `Arenas` implements every node kind on top of a few storage primitives (allocate,
view, copy) and the block executor; `numpy_arenas.NumpyArenas` and
`torch_arenas.TorchArenas` supply those primitives for numpy buffers and torch tensors.

A graph input block is never modified, so evicting it copies nothing (the caller's array is
its host copy) and loading it copies from the caller's array.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ...kernels import coo
from ...kernels.coo import Coo
from ...kernels.coo_slot import CooSlot
from ...kernels.ops import Array, BlockOps
from ...memory import MemGraph, MemNode, Region
from ...taskgraph.execute import coo_slot, execute, touch
from ...taskgraph.ir import Task
from ..mem.schedule import Fetch
from ..transfer import Link


class Arenas:
    """The node kinds of a memory graph over arenas; subclasses provide the storage."""

    name = "arenas"
    ops: BlockOps

    def __init__(self) -> None:
        self.mg: MemGraph | None = None
        self.arenas: list[Any] = []
        self.host: dict[int, Any] = {}

    # --- storage primitives (subclasses) -----------------------------------------------------
    def _buffer(self, nbytes: int, device: int | None) -> Any:
        """A zeroed uint8 buffer on `device` (None: host memory)."""
        raise NotImplementedError

    def _size(self, buf: Any) -> int:
        return len(buf)

    def _typed(self, raw: Any, dtype: str, shape: Sequence[int]) -> Array:
        raise NotImplementedError

    def _transfer(self, dst: Array, src: Array) -> None:
        """dst <- src, finished when this returns (host <-> device, device <-> device)."""
        raise NotImplementedError

    def _check(self, mg: MemGraph) -> None:
        """Refuse what the backend cannot hold."""

    def _finish(self) -> None:
        """Wait for the kernel this thread launched (a stream sync on CUDA)."""

    def _to_numpy(self, a: Array) -> np.ndarray:
        return np.asarray(a)

    @contextlib.contextmanager
    def lane_context(self, device: int, lane: int) -> Iterator[None]:
        """Per engine thread: what the thread runs in (a CUDA stream, a thread count)."""
        yield

    def threads(self, n: int) -> Any:
        """Kernel threads per compute worker for the duration of a run."""
        return contextlib.nullcontext()

    # --- setup -------------------------------------------------------------------------------
    def prepare(self, mg: MemGraph, host_blocks: Sequence[int]) -> None:
        """Allocate the arenas (kept when big enough) and the host pool for `mg`."""
        if self.mg is mg:
            return
        self._check(mg)
        arenas = []
        for d in range(mg.ndev):
            size = mg.arena_size(d)
            old = self.arenas[d] if d < len(self.arenas) else None
            if old is not None and self._size(old) >= size:
                arenas.append(old)
            else:
                self.arenas = self.arenas[:d]  # let the old buffer go before allocating anew
                arenas.append(self._buffer(size, d))
        tasks = mg.taskgraph.tasks
        host = {b: self._buffer(tasks[b].nbytes, None) for b in host_blocks}
        self.arenas, self.host, self.mg = arenas, host, mg

    # --- data --------------------------------------------------------------------------------
    def _task(self, block: int) -> Any:
        assert self.mg is not None
        return self.mg.taskgraph.tasks[block]

    def view(self, block: int, r: Region) -> Array:
        t = self._task(block)
        raw = self.arenas[r.device][r.offset : r.offset + t.nbytes]
        return self._held(raw, t)

    def host_view(self, block: int) -> Array:
        t = self._task(block)
        return self._held(self.host[block], t)

    def _held(self, raw: Any, t: Task) -> Array:
        """A block's bytes as the block: a typed array, or a `CooSlot` for a relation."""
        if t.support is None:
            return self._typed(raw, t.dtype, t.shape)
        return coo_slot(raw, t)

    def input_block(self, block: int, inputs: Mapping[int, Any]) -> Any:
        """The part of a graph input that input task `block` holds (a view of the caller's)."""
        t = self._task(block)
        if t.support is not None:
            return coo.block(inputs[t.node], (t.offset, t.shape), t.support.order)
        return inputs[t.node][tuple(slice(o, o + s) for o, s in zip(t.offset, t.shape))]

    def output(self, block: int, region: Region | None, inputs: Mapping[int, Any]) -> Any:
        """A graph output block at the end of a run, as numpy (a relation as a Coo of its
        own arrays)."""
        if region is None and self._task(block).kind == "input":  # evicted without a copy
            got = self.input_block(block, inputs)
            return got if isinstance(got, Coo) else np.asarray(got)
        held = self.host_view(block)
        if isinstance(held, CooSlot):
            return held.read().copy()
        return self._to_numpy(held)

    # --- node kinds --------------------------------------------------------------------------
    def compute(
        self,
        n: MemNode,
        first: bool,
        inputs: Mapping[int, np.ndarray],
        variables: Mapping[str, float],
        link: Link | None,
    ) -> None:
        """A compute or touch node: the block executor writing into the block's view (an
        input block comes in through the host channel's link)."""
        assert n.region is not None
        t = self._task(n.block)
        out = self.view(n.block, n.region)
        args = [self.view(b, r) for b, r in zip(n.sources, n.reads)]
        if n.kind != "touch":
            args = [a.read() if isinstance(a, CooSlot) else a for a in args]
        if n.kind == "touch":
            touch(self.ops, t, args[0], out, first)
            self._finish()
        elif t.kind == "input":
            assert link is not None

            def copy_in() -> None:
                execute(self.ops, t, args, inputs, variables, out=out)
                self._finish()

            link.transfer(copy_in, t.nbytes)
        else:
            execute(self.ops, t, args, inputs, variables, out=out)
            self._finish()

    def evict(self, n: MemNode, link: Link, inputs: Mapping[int, np.ndarray]) -> None:
        assert n.region is not None
        if self._task(n.block).kind == "input":  # the caller's array is its host copy already
            return
        self._copy(self.host_view(n.block), self.view(n.block, n.region), link, n.block)

    def load(self, n: MemNode, link: Link, inputs: Mapping[int, np.ndarray]) -> None:
        assert n.region is not None
        t = self._task(n.block)
        dst = self.view(n.block, n.region)
        if t.kind == "input":

            def copy_in() -> None:
                execute(self.ops, t, [], inputs, {}, out=dst)
                self._finish()

            link.transfer(copy_in, t.nbytes)
            return
        self._copy(dst, self.host_view(n.block), link, n.block)

    def fetch(self, f: Fetch, link: Link) -> None:
        """Copy an output that stays resident back to host once it is final."""
        self._copy(self.host_view(f.block), self.view(f.block, f.region), link, f.block)

    def _copy(self, dst: Array, src: Array, link: Link, block: int) -> None:
        if isinstance(dst, CooSlot):  # a relation block travels as its bytes
            dst, src = dst.raw, src.raw
        link.transfer(lambda: self._transfer(dst, src), self._task(block).nbytes)
