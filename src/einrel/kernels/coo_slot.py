"""A relation block in bytes an arena engine planned: the layout of its header, indices,
positions and values at a planned capacity, and `CooSlot`, its view."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .coo import Coo

HEADER_BYTES = 64  # a relation block's tuple count and key origin, before its arrays
MAX_KEYS = HEADER_BYTES // 8 - 1


def _up(n: int) -> int:
    return -(-n // 64) * 64


def layout(
    capacity: int, nkeys: int, index_bytes: int, value_elems: int, value_bytes: int
) -> tuple[int, int, int, int]:
    """Where a relation block's indices, positions and values start in its bytes, and where
    they end (each array 64-byte aligned), for `capacity` tuples."""
    idx = HEADER_BYTES
    pos = _up(idx + nkeys * capacity * index_bytes)
    vals = _up(pos + capacity * index_bytes)
    return idx, pos, vals, _up(vals + capacity * value_elems * value_bytes)


@dataclass(frozen=True)
class CooSlot:
    """A relation block kept in bytes an arena engine planned (`raw`, uint8): a header with
    the tuple count and key origin, then indices, positions and values at `capacity`."""

    raw: np.ndarray
    capacity: int
    index: np.dtype
    shape: tuple[int, ...]
    dtype: np.dtype
    order: int | None
    nkeys: int

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        k, cap = self.nkeys, self.capacity
        vshape = self.shape[k:]
        elems = math.prod(vshape)
        i0, p0, v0, _ = layout(cap, k, self.index.itemsize, elems, self.dtype.itemsize)
        head = self.raw[:HEADER_BYTES].view(np.int64)
        idx = self.raw[i0 : i0 + k * cap * self.index.itemsize].view(self.index).reshape(k, cap)
        pos = self.raw[p0 : p0 + cap * self.index.itemsize].view(self.index)
        vals = self.raw[v0 : v0 + cap * elems * self.dtype.itemsize].view(self.dtype)
        return head, idx, pos, vals.reshape((cap, *vshape))

    def write(self, c: Coo) -> CooSlot:
        """Keep `c` here; a block of more tuples than planned is an error, never a spill."""
        if c.nnz > self.capacity:
            raise ValueError(
                f"a relation block of {c.nnz} tuples does not fit the {self.capacity} its "
                "memory plan holds; compile with structure={name: a feed like it} so the plan "
                "knows how the tuples spread over the key ranges"
            )
        head, idx, pos, vals = self._arrays()
        n = c.nnz
        head[0] = n
        head[1 : 1 + self.nkeys] = c.offsets
        idx[:, :n] = c.indices
        pos[:n] = c.positions()
        vals[:n] = c.values
        return self

    def read(self) -> Coo:
        """The block held here, as views of its bytes."""
        head, idx, pos, vals = self._arrays()
        n = int(head[0])
        origin = tuple(int(o) for o in head[1 : 1 + self.nkeys])
        shape = self.shape
        return Coo(idx[:, :n], vals[:n], shape, False, pos[:n], origin, self.order)
