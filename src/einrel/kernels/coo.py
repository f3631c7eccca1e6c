"""`Coo`: a relation's value at run time — the keys of its tuples and one value per tuple.

Relations derived from one input share its index array (same tuples, same order); only their
values differ, so a derived relation costs its values alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Coo:
    """Tuples of a relation: `indices` (nkeys, nnz) int64, `values` (nnz, *value dims);
    `shape` is the key sizes then the value dims."""

    indices: np.ndarray
    values: np.ndarray
    shape: tuple[int, ...]
    implicit_values: bool = False  # er.coo without values: ones, in whatever dtype is fed

    @property
    def nnz(self) -> int:
        """The number of tuples."""
        return int(self.indices.shape[1])

    @property
    def nkeys(self) -> int:
        """The number of keys (index rows)."""
        return int(self.indices.shape[0])

    @property
    def dtype(self) -> np.dtype:
        """The values' numpy dtype."""
        return self.values.dtype

    @property
    def nbytes(self) -> int:
        """Bytes held: the index array and the values."""
        return int(self.indices.nbytes + self.values.nbytes)

    def to_dense(self, fill: float = 0.0) -> np.ndarray:
        """The dense array: each tuple's value at its keys, `fill` elsewhere."""
        out = np.full(self.shape, fill, dtype=self.values.dtype)
        out[tuple(self.indices)] = self.values
        return out

    def with_values(self, values: np.ndarray) -> Coo:
        """The same tuples with other values (a relation derived from this one)."""
        return Coo(self.indices, values, self.shape[: self.nkeys] + tuple(values.shape[1:]))

    def permuted(self, order: tuple[int, ...]) -> Coo:
        """The same tuples with keys in `order` (key dim i is this relation's key order[i])."""
        if order == tuple(range(self.nkeys)):
            return self
        keys = tuple(self.shape[k] for k in order)
        idx = np.ascontiguousarray(self.indices[list(order)])
        return Coo(idx, self.values, keys + self.shape[self.nkeys :])

    def __repr__(self) -> str:
        return f"Coo(shape={self.shape}, nnz={self.nnz}, dtype={self.values.dtype})"
