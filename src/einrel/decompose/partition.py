"""Partitions: how a dimension (and so a tensor, or an einsum's join space) is cut into blocks.

A `PartDim` is the list of split points of one dimension; any number of parts from 1 to the
dimension's size, near-equal by default, uneven last blocks allowed. A `Partition` is one
`PartDim` per dimension: a grid of boxes with row-major block ids.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..errors import CompileError

Box = tuple[tuple[int, ...], tuple[int, ...]]  # (offsets, sizes)


@dataclass(frozen=True)
class PartDim:
    """Split points 0 = b0 < b1 < ... < bk = n of one dimension."""

    bounds: tuple[int, ...]

    def __post_init__(self) -> None:
        b = self.bounds
        if len(b) < 2 or b[0] != 0 or any(x >= y for x, y in itertools.pairwise(b)):
            raise CompileError(f"invalid split points {b}: need 0 = b0 < b1 < ... < bk")

    @staticmethod
    def split(n: int, parts: int) -> PartDim:
        """`parts` near-equal pieces of n (the first n % parts pieces are one longer)."""
        if not 1 <= parts <= n:
            raise CompileError(f"cannot cut a dimension of size {n} into {parts} parts")
        q, r = divmod(n, parts)
        bounds = [0]
        for i in range(parts):
            bounds.append(bounds[-1] + q + (i < r))
        return PartDim(tuple(bounds))

    @property
    def n(self) -> int:
        return self.bounds[-1]

    @property
    def parts(self) -> int:
        return len(self.bounds) - 1

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(y - x for x, y in itertools.pairwise(self.bounds))

    def block_of(self, x: int) -> int:
        return bisect.bisect_right(self.bounds, x) - 1

    def refine(self, other: PartDim) -> PartDim:
        """Common refinement: the union of both sets of split points."""
        if other.n != self.n:
            raise CompileError(f"cannot refine dimensions of sizes {self.n} and {other.n}")
        return PartDim(tuple(sorted(set(self.bounds) | set(other.bounds))))

    def refines(self, other: PartDim) -> bool:
        return set(other.bounds) <= set(self.bounds)

    def overlapping(self, lo: int, hi: int) -> range:
        """Indices of the parts that intersect [lo, hi)."""
        return range(self.block_of(lo), self.block_of(hi - 1) + 1)


@dataclass(frozen=True)
class Partition:
    """One PartDim per dimension; blocks are the boxes of the grid, numbered row-major."""

    dims: tuple[PartDim, ...]

    @staticmethod
    def even(shape: Sequence[int], parts: Sequence[int]) -> Partition:
        if len(shape) != len(parts):
            raise CompileError(f"partition {tuple(parts)} does not fit shape {tuple(shape)}")
        return Partition(tuple(PartDim.split(n, p) for n, p in zip(shape, parts)))

    @staticmethod
    def whole(shape: Sequence[int]) -> Partition:
        return Partition(tuple(PartDim((0, n)) for n in shape))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(d.n for d in self.dims)

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(d.parts for d in self.dims)

    @property
    def nblocks(self) -> int:
        return math.prod(self.grid)

    def blocks(self) -> Iterator[tuple[int, ...]]:
        return itertools.product(*(range(d.parts) for d in self.dims))

    def box(self, index: Sequence[int]) -> Box:
        offs = tuple(d.bounds[i] for d, i in zip(self.dims, index))
        sizes = tuple(d.bounds[i + 1] - d.bounds[i] for d, i in zip(self.dims, index))
        return offs, sizes

    def boxes(self) -> list[Box]:
        return [self.box(b) for b in self.blocks()]

    def max_block_elems(self) -> int:
        return math.prod(max(d.sizes) for d in self.dims)

    def restrict(self, dims: Sequence[int]) -> Partition:
        return Partition(tuple(self.dims[d] for d in dims))

    def refine(self, other: Partition) -> Partition:
        if self.shape != other.shape:
            raise CompileError(f"cannot refine partitions of shapes {self.shape}, {other.shape}")
        return Partition(tuple(a.refine(b) for a, b in zip(self.dims, other.dims)))

    def overlapping(self, box: Box) -> Iterator[tuple[int, ...]]:
        """Block indices whose boxes intersect `box`."""
        offs, sizes = box
        return itertools.product(
            *(d.overlapping(o, o + s) for d, o, s in zip(self.dims, offs, sizes))
        )

    def __str__(self) -> str:
        return "x".join(str(d.parts) for d in self.dims) or "()"


def intersect(a: Box, b: Box) -> Box | None:
    offs, sizes = [], []
    for oa, sa, ob, sb in zip(a[0], a[1], b[0], b[1]):
        lo, hi = max(oa, ob), min(oa + sa, ob + sb)
        if lo >= hi:
            return None
        offs.append(lo)
        sizes.append(hi - lo)
    return tuple(offs), tuple(sizes)


def refinement(parts: Sequence[Partition]) -> Partition:
    """The common refinement of several partitions of one tensor."""
    out = parts[0]
    for p in parts[1:]:
        out = out.refine(p)
    return out
