"""`Coo`: a relation's value at run time — the keys of its tuples and one value per tuple.

A whole relation lists its tuples in the feed's order. A block of it (the tuples whose keys
fall in a box) keeps three more facts: `origin`, the box's key offsets (indices stay global);
`pos`, each tuple's position in the whole relation, which puts blocks back together in the
feed's order; and `order`, the key its tuples are sorted by (ties by position), or None for
position order. Which order a block has is a function of how its keys are cut
(`block_order`), so two blocks cut alike list the same tuples in the same order.

Relations derived from one block share its index arrays and its `cache` (sorted orders, CSR
pointers, sub-blocks), so a structure fed once is sorted and split once: the cache lives as
long as the feed object. The index arrays are never written.
"""

from __future__ import annotations

import functools
import math
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Box = tuple[tuple[int, ...], tuple[int, ...]]  # (offsets, sizes)


def index_dtype(n: int) -> np.dtype:
    """The narrowest integer type (int32 or int64) that holds 0..n."""
    return np.dtype(np.int32 if n < 2**31 else np.int64)


def new_cache() -> dict[Any, Any]:
    """An empty cache of derived structures, with the lock that fills it once."""
    return {"lock": threading.RLock()}


@dataclass(frozen=True, eq=False)
class Coo:
    """Tuples of a relation: `indices` (nkeys, nnz) integers, `values` (nnz, *value dims);
    `shape` is the key sizes then the value dims (of the block, for a block)."""

    indices: np.ndarray
    values: np.ndarray
    shape: tuple[int, ...]
    implicit_values: bool = False  # er.coo without values: ones, in whatever dtype is fed
    pos: np.ndarray | range | None = field(default=None, repr=False)
    origin: tuple[int, ...] = ()
    order: int | None = None
    cache: dict[Any, Any] = field(default_factory=new_cache, repr=False, compare=False)

    @property
    def nnz(self) -> int:
        """The number of tuples."""
        return int(self.indices.shape[1])

    @property
    def nkeys(self) -> int:
        """The number of keys (index rows)."""
        return int(self.indices.shape[0])

    @property
    def keys_shape(self) -> tuple[int, ...]:
        """The key sizes (of the block's key box, for a block)."""
        return self.shape[: self.nkeys]

    @property
    def offsets(self) -> tuple[int, ...]:
        """Where the block's key box starts (zeros for a whole relation)."""
        return self.origin or (0,) * self.nkeys

    @property
    def dtype(self) -> np.dtype:
        """The values' numpy dtype."""
        return self.values.dtype

    @property
    def nbytes(self) -> int:
        """Bytes held: the index array and the values."""
        return int(self.indices.nbytes + self.values.nbytes)

    def positions(self) -> np.ndarray:
        """Where each tuple sits in the whole relation."""
        if isinstance(self.pos, np.ndarray):
            return self.pos
        r = range(self.nnz) if self.pos is None else self.pos
        return np.arange(r.start, r.stop, dtype=index_dtype(r.stop))

    def local(self, k: int) -> np.ndarray:
        """Key k of every tuple, relative to the block's origin."""
        o = self.offsets[k]
        return self.indices[k] - o if o else self.indices[k]

    def to_dense(self, fill: float = 0.0) -> np.ndarray:
        """The dense array (of the block): each tuple's value at its keys, `fill` elsewhere."""
        out = np.full(self.shape, fill, dtype=self.values.dtype)
        out[tuple(self.local(k) for k in range(self.nkeys))] = self.values
        return out

    def with_values(self, values: np.ndarray) -> Coo:
        """The same tuples with other values (a relation derived from this one)."""
        shape = self.keys_shape + tuple(values.shape[1:])
        return Coo(
            self.indices, values, shape, False, self.pos, self.origin, self.order, self.cache
        )

    def copy(self) -> Coo:
        """The same block in arrays of its own (a new cache: nothing derived yet)."""
        pos = self.pos.copy() if isinstance(self.pos, np.ndarray) else self.pos
        idx, vals = self.indices.copy(), self.values.copy()
        return Coo(idx, vals, self.shape, False, pos, self.origin, self.order)

    def __reduce__(self) -> Any:  # the cache (and its lock) stays behind
        args = (self.indices, self.values, self.shape, self.implicit_values, self.pos)
        return (Coo, (*args, self.origin, self.order))

    def __repr__(self) -> str:
        return f"Coo(shape={self.shape}, nnz={self.nnz}, dtype={self.values.dtype})"


def cached(coo: Coo, key: Any, make: Callable[[], Any]) -> Any:
    """`make()` once per structure: kept in the cache its derived relations share."""
    c = coo.cache
    if key in c:
        return c[key]
    with c["lock"]:
        if key not in c:
            c[key] = make()
        return c[key]


def block_order(split: Sequence[bool]) -> int | None:
    """The tuple order of a block whose keys are cut as `split` says: sorted by the first cut
    key (so a block is a contiguous run of that order), else the relation's own order."""
    return next((k for k, s in enumerate(split) if s), None)


@functools.cache
def quiet_torch() -> None:
    """torch warns once per process, on the first tensor made from a read-only array (einrel
    only reads those) and on the first CSR tensor (its support is in beta): make both first
    ones here, with the warnings silenced."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        frozen = np.zeros(1)
        frozen.flags.writeable = False
        torch.from_numpy(frozen)
        ptr, col = torch.zeros(2, dtype=torch.int64), torch.zeros(1, dtype=torch.int64)
        torch.sparse_csr_tensor(ptr, col, torch.zeros(1), (1, 1), check_invariants=False)


def stable_argsort(keys: np.ndarray) -> np.ndarray:
    """The stable order that sorts integer `keys`, in the narrowest index type: torch's radix
    sort, several times faster than numpy's stable sort on 10^7 keys."""
    import torch

    if keys.size < 1 << 16:
        order = np.argsort(keys, kind="stable")
    else:
        quiet_torch()
        order = torch.sort(torch.from_numpy(np.ascontiguousarray(keys)), stable=True)[1].numpy()
    return order.astype(index_dtype(keys.size), copy=False)


def csr(coo: Coo, k: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Row pointers over key k (local, size+1 of them) and the permutation that sorts the
    tuples by key k (None when they already are)."""

    def make() -> tuple[np.ndarray, np.ndarray | None]:
        keys = coo.local(k)
        perm = None
        if coo.order != k and keys.size > 1 and np.any(keys[1:] < keys[:-1]):
            perm = stable_argsort(keys)
        ptr = np.zeros(coo.shape[k] + 1, np.int64)
        np.cumsum(np.bincount(keys, minlength=coo.shape[k]), out=ptr[1:])
        return ptr, perm

    return cached(coo, ("csr", k), make)


@dataclass(eq=False)
class Cut:
    """Which tuples of a relation a block holds, in its order: `sel` picks them from the
    relation (a slice or an index array), with their keys, positions and the cache every
    block of these tuples shares. Only structure: values are taken per relation (`made`
    keeps the last block made from each value array, so a feed's values are gathered once)."""

    sel: np.ndarray | slice
    indices: np.ndarray
    pos: np.ndarray | range
    origin: tuple[int, ...]
    keys: tuple[int, ...]
    order: int | None
    cache: dict[Any, Any] = field(default_factory=new_cache)
    made: dict[Any, tuple[np.ndarray, Coo]] = field(default_factory=dict)

    def of(self, coo: Coo, vbox: Box) -> Coo:
        """The block of `coo`'s values on these tuples, with the value dims `vbox`."""
        last = self.made.get(vbox)
        if last is not None and last[0] is coo.values:
            return last[1]
        vals = coo.values[self.sel]
        k = coo.nkeys
        if vbox[1] != coo.shape[k:]:
            vals = vals[(slice(None), *(slice(o, o + s) for o, s in zip(*vbox)))]
        shape = self.keys + vbox[1]
        out = Coo(self.indices, vals, shape, False, self.pos, self.origin, self.order, self.cache)
        self.made[vbox] = (coo.values, out)
        return out


def _positions(coo: Coo, sel: np.ndarray | slice) -> np.ndarray | range:
    """Where the tuples `sel` of `coo` sit in the whole relation."""
    return _pick(range(coo.nnz) if coo.pos is None else coo.pos, sel)


def _pick(pos: np.ndarray | range, sel: np.ndarray | slice) -> np.ndarray | range:
    """Positions `sel` of `pos` (a run of a range is a range: no array is made for it)."""
    if isinstance(pos, np.ndarray):
        return pos[sel]
    if isinstance(sel, slice):
        return pos[sel.start : sel.stop : sel.step]
    if pos.start == 0 and sel.dtype == index_dtype(pos.stop):
        return sel  # the selection is its own positions
    return (sel + pos.start).astype(index_dtype(pos.stop), copy=False)


def _base(coo: Coo, order: int | None) -> Cut:
    """Every tuple of `coo`, listed in `order` (cached: every block of that order is a run of
    this one)."""
    return cached(coo, ("base", order), lambda: _make_base(coo, order))


def _make_base(coo: Coo, order: int | None) -> Cut:
    if order == coo.order:
        perm = None
    elif order is None:
        pos = coo.positions()
        perm = stable_argsort(pos) if np.any(pos[1:] < pos[:-1]) else None
    else:
        perm = csr(coo, order)[1]
    if perm is None:  # the same tuples in the same sequence: what is derived is shared
        every = slice(None)
        return Cut(
            every,
            coo.indices,
            _positions(coo, every),
            coo.offsets,
            coo.keys_shape,
            order,
            coo.cache,
        )
    idx = np.ascontiguousarray(coo.indices[:, perm])
    return Cut(perm, idx, _positions(coo, perm), coo.offsets, coo.keys_shape, order)


def _cut(coo: Coo, keys: Box, order: int | None) -> Cut:
    """The tuples of `coo` in the key box `keys`, listed in `order` (cached)."""

    def make() -> Cut:
        base = _base(coo, order)
        if keys == (coo.offsets, coo.keys_shape):
            return base
        sel: np.ndarray | slice = slice(None)
        if order is not None:  # a run of the sorted order
            ptr, _ = csr(coo, order)
            lo = keys[0][order] - coo.offsets[order]
            sel = slice(int(ptr[lo]), int(ptr[lo + keys[1][order]]))
        inside = None
        for j in range(coo.nkeys):
            o, n = keys[0][j], keys[1][j]
            if j != order and (o, n) != (coo.offsets[j], coo.shape[j]):
                row = base.indices[j, sel]
                fits = (row >= o) & (row < o + n)
                inside = fits if inside is None else inside & fits
        if inside is not None:
            sel = np.arange(base.indices.shape[1])[sel][inside]
        outer = sel if isinstance(base.sel, slice) else base.sel[sel]
        return Cut(outer, base.indices[:, sel], _pick(base.pos, sel), keys[0], keys[1], order)

    return cached(coo, ("cut", keys, order), make)


def sorted_by(coo: Coo, k: int) -> Coo:
    """The relation with its tuples sorted by key k (ties by position)."""
    if coo.order == k:
        return coo
    vbox = ((0,) * (len(coo.shape) - coo.nkeys), coo.shape[coo.nkeys :])
    return _cut(coo, (coo.offsets, coo.keys_shape), k).of(coo, vbox)


def block(coo: Coo, box: Box, order: int | None) -> Coo:
    """The tuples of `coo` whose keys fall in the key part of `box`, with the value part of
    `box`, listed in `order` (see `block_order`). A feed is cut once: the cut is cached with
    its structure, and the values are gathered once per value array."""
    k = coo.nkeys
    keys = (box[0][:k], box[1][:k])
    vbox = (box[0][k:], box[1][k:])
    if keys == (coo.offsets, coo.keys_shape) and order == coo.order and vbox[1] == coo.shape[k:]:
        return coo
    return _cut(coo, keys, order).of(coo, vbox)


def _by_tuples(
    pieces: Sequence[tuple[Coo, tuple[int, ...]]], vshape: tuple[int, ...]
) -> list[tuple[Coo, np.ndarray]]:
    """Pieces grouped by their tuples (same key box), each group's values side by side."""
    groups: dict[tuple[int, ...], list[tuple[Coo, tuple[int, ...]]]] = {}
    for p, voff in pieces:
        groups.setdefault(p.offsets + p.keys_shape, []).append((p, voff))
    out = []
    for parts in groups.values():
        first = parts[0][0]
        k = first.nkeys
        if len(parts) == 1 and first.shape[k:] == vshape:
            out.append((first, first.values))
            continue
        v = np.empty((first.nnz, *vshape), dtype=first.values.dtype)
        for p, voff in parts:
            v[(slice(None), *(slice(o, o + s) for o, s in zip(voff, p.shape[k:])))] = p.values
        out.append((first, v))
    return out


def assemble(
    pieces: Sequence[tuple[Coo, tuple[int, ...]]],
    shape: tuple[int, ...],
    origin: tuple[int, ...],
    order: int | None,
) -> Coo:
    """One relation block from pieces: each piece is a block and the offset of its value
    dims inside the result; pieces with the same tuples side by side in the value dims,
    pieces with other tuples one after another. Listed in `order`."""
    k = len(origin)
    groups = _by_tuples(pieces, shape[k:])
    if len(groups) == 1 and groups[0][0].order == order:
        c, v = groups[0]
        return Coo(c.indices, v, shape, False, c.pos, origin, order)
    indices = np.concatenate([c.indices for c, _ in groups], axis=1)
    where = np.concatenate([c.positions() for c, _ in groups])
    values = np.concatenate([v for _, v in groups])
    perm = stable_argsort(where)  # by position, then (stably) by the order's key
    if order is not None:
        perm = perm[stable_argsort(indices[order][perm])]
    return Coo(indices[:, perm], values[perm], shape, False, where[perm], origin, order)


def whole(
    blocks: Sequence[tuple[Coo, tuple[int, ...]]], shape: tuple[int, ...], feed: Coo | None = None
) -> Coo:
    """A relation output from its blocks (each with its offsets): every tuple back at its
    position in the feed's order, indices included (the `feed`'s own, when given: a relation
    whose keys are the feed's, in its order, lists exactly its tuples)."""
    k = next(iter(blocks))[0].nkeys
    groups = _by_tuples([(b, off[k:]) for b, off in blocks], shape[k:])
    c, v = groups[0]
    if len(groups) == 1 and (c.pos is None or (isinstance(c.pos, range) and c.pos.start == 0)):
        return Coo(c.indices, v, shape)
    n = sum(c.nnz for c, _ in groups)
    indices = feed.indices if feed is not None else np.empty((k, n), c.indices.dtype)
    values = np.empty((n, *shape[k:]), dtype=groups[0][1].dtype)
    runs: list[range] = []
    seen = None
    for c, v in groups:
        pos = c.pos if c.pos is not None else range(c.nnz)
        at: slice | np.ndarray = slice(pos.start, pos.stop) if isinstance(pos, range) else pos
        if isinstance(pos, range):
            runs.append(pos)
        else:
            seen = np.zeros(n, dtype=bool) if seen is None else seen
            seen[pos] = True
        if feed is None:
            indices[:, at] = c.indices
        values[at] = v
    if seen is not None:
        for r in runs:
            seen[r.start : r.stop] = True
        tiled = bool(seen.all())
    else:  # runs of positions only: they tile 0..n when they meet end to end
        ends = sorted((r.start, r.stop) for r in runs)
        tiled = all(a[1] == b[0] for a, b in zip(ends, ends[1:])) and ends[0][0] == 0
    if not tiled or indices.shape[1] != n:
        raise AssertionError("relation blocks do not tile the relation's tuples")
    return Coo(indices, values, shape)


def capacity(nnz: int, keys: Sequence[int], box: Box, counts: int | None = None) -> int:
    """Tuples a block with key box `box` is planned for: its count when the structure is
    known, else its share of `nnz` under a uniform spread, with room for the spread's noise."""
    if counts is not None:  # room for another structure like it (negative samples)
        return min(nnz, math.ceil(counts * 1.05) + 16)
    share = nnz * math.prod(box[1]) / max(1, math.prod(keys))
    if share >= nnz:
        return nnz
    return min(nnz, math.ceil(share * 1.25 + 4 * math.sqrt(share) + 64))
