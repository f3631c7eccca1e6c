"""The arena allocator: real offsets in [0, budget), with the dependencies reuse creates.

Every free range remembers the node that freed it. Reusing a range makes the new `alloc`
depend on those nodes, which is the only way memory reuse adds edges; preferring the range
freed earliest (lowest dependency) keeps the added edges as harmless as possible.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

ALIGNMENT = 16  # bytes; every block's reservation is rounded up to a multiple of this


@dataclass
class Allocator:
    """Free ranges of one arena, each remembering the node that freed it (-1: never used).

    Allocation returns an offset and the freeing nodes of the range it reuses, which become the
    alloc's dependencies. `capacity=None` is an unbounded arena that never reuses memory."""

    capacity: int | None
    free: list[list[int]] = field(default_factory=list)  # [start, end, freed_by], by start
    top: int = 0  # high-water mark

    def __post_init__(self) -> None:
        if self.capacity is not None and self.capacity > 0 and not self.free:
            self.free = [[0, self.capacity, -1]]

    def find(self, size: int, first_fit: bool = False) -> int | None:
        """An offset with `size` contiguous free bytes: lowest-dependency (the candidate whose
        latest freeing node is earliest, then the lowest offset), or the first fit."""
        if self.capacity is None:
            return self.top
        best: tuple[int, int] | None = None
        segs = self.free
        for i in range(len(segs)):
            start, need, latest = segs[i][0], segs[i][0] + size, -1
            for j in range(i, len(segs)):
                if j > i and segs[j][0] != segs[j - 1][1]:
                    break
                latest = max(latest, segs[j][2])
                if segs[j][1] >= need:
                    if first_fit:
                        return start
                    if best is None or (latest, start) < best:
                        best = (latest, start)
                    break
        return None if best is None else best[1]

    def take(self, offset: int, size: int) -> set[int]:
        """Reserve [offset, offset+size) and return the nodes that freed it."""
        end = offset + size
        self.top = max(self.top, end)
        if self.capacity is None:
            return set()
        deps: set[int] = set()
        out: list[list[int]] = []
        for s in self.free:
            if s[1] <= offset or s[0] >= end:
                out.append(s)
                continue
            if s[2] >= 0:
                deps.add(s[2])
            if s[0] < offset:
                out.append([s[0], offset, s[2]])
            if s[1] > end:
                out.append([end, s[1], s[2]])
        self.free = out
        return deps

    def release(self, offset: int, size: int, freed_by: int) -> None:
        """Return a range; neighbours freed by the same node coalesce into one range."""
        if self.capacity is None:
            return
        seg = [offset, offset + size, freed_by]
        k = bisect.bisect_left([s[0] for s in self.free], offset)
        self.free.insert(k, seg)
        if k + 1 < len(self.free):
            nxt = self.free[k + 1]
            if nxt[0] == seg[1] and nxt[2] == freed_by:
                seg[1] = nxt[1]
                del self.free[k + 1]
        if k > 0:
            prev = self.free[k - 1]
            if prev[1] == seg[0] and prev[2] == freed_by:
                prev[1] = seg[1]
                del self.free[k]


def aligned(nbytes: int, alignment: int = ALIGNMENT) -> int:
    return max(alignment, -(-nbytes // alignment) * alignment)
