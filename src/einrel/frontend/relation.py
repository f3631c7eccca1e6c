"""Sparse relations for users: `er.relation` declares one, `er.coo` feeds one, `er.densify`
scatters one into a dense tensor; feeds from scipy.sparse and torch sparse are read here too.

Feeds are checked before anything runs: integer indices in range, at most `nnz` tuples, no
duplicate keys (unless `coalesce=True`, which sums them), values of the declared shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import EinrelError, FeedError
from ..ir.graph import Node, check_dtype
from ..ir.relation import Relation, Support, support_of
from ..kernels.coo import Coo, cached, index_dtype, new_cache, stable_argsort
from .tensor import Tensor


def relation(
    name: str,
    keys: Mapping[str, int],
    nnz: int,
    values: Mapping[str, int] | None = None,
    dtype: str = "float32",
) -> Tensor:
    """A sparse relation input: tuples over `keys` (name -> size), at most `nnz` of them, each
    with a scalar value or, with `values` (name -> size), an array of value dims.

    Its dims are its keys then its value dims, so `er.einsum("uv,ud->vd", A, H)` labels A's
    keys u, v. Each run may feed another structure of at most `nnz` tuples.

    Examples
    --------
    >>> A = er.relation("A", keys={"u": 1000, "v": 1000}, nnz=5000)
    >>> Z = er.einsum("uv,ud->vd", A, er.input("H", (1000, 16)))
    """
    if not isinstance(name, str) or not name or "%" in name:
        raise EinrelError(f"relation name must be a non-empty string without '%', got {name!r}")
    where = f"relation {name!r}"
    if not isinstance(keys, Mapping) or not keys:
        raise EinrelError(f"{where}: keys must map key names to sizes, e.g. {{'u': 100}}")
    vals = dict(values or {})
    dims = {**{str(k): v for k, v in keys.items()}, **{str(k): v for k, v in vals.items()}}
    if len(dims) != len(keys) + len(vals):
        raise EinrelError(
            f"{where}: key and value names must differ, got {list(keys)} and {list(vals)}"
        )
    for dim, n in dims.items():
        if not isinstance(n, int | np.integer) or isinstance(n, bool) or n < 1:
            raise EinrelError(f"{where}: size of {dim!r} must be a positive integer, got {n!r}")
    if not isinstance(nnz, int | np.integer) or isinstance(nnz, bool) or nnz < 0:
        raise EinrelError(f"{where}: nnz (the most tuples a feed may have) must be an integer >= 0")
    attrs = Relation(tuple(map(str, keys)), tuple(map(str, vals)), int(nnz))
    shape = tuple(int(n) for n in dims.values())
    return Tensor(Node("relation", (), shape, check_dtype(dtype, where), attrs, name))


def coo(
    indices: Any,
    values: Any = None,
    *,
    shape: tuple[int, ...] | None = None,
    coalesce: bool = False,
) -> Coo:
    """A relation feed: `indices` (nkeys, nnz) integers (or a tuple of nkeys index arrays) and
    `values` (nnz, *value dims); no values means 1.0 per tuple. A scipy.sparse matrix or a
    torch sparse COO/CSR tensor converts as it is (its repeated keys summed).
    `coalesce=True` sums the values of repeated keys (sorted by key); without it a repeated
    key is a FeedError when fed.

    The feed keeps read-only copies of its arrays, so it can be fed again and again: it is
    checked once, and its cuts into blocks and sorted orders are made once and kept with it.
    Build a new one for a new structure (negative samples).
    """
    if values is None and shape is None and not coalesce and _is_sparse(indices):
        return _as_coo(indices)
    idx = _indices(indices)
    implicit = values is None
    if implicit:
        vals = np.ones(idx.shape[1], dtype=np.float32)
    else:
        vals = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values)
    if vals.ndim == 0 or vals.shape[0] != idx.shape[1]:
        raise FeedError(
            f"er.coo: values have shape {vals.shape}, but there are {idx.shape[1]} tuples; "
            "values need one row per tuple"
        )
    keys = (
        shape[: idx.shape[0]]
        if shape is not None
        else tuple(int(r.max()) + 1 if r.size else 1 for r in idx)
    )
    if coalesce:
        idx, vals = _coalesce(idx, vals, keys)
    full = tuple(keys) + tuple(vals.shape[1:])
    return Coo(_frozen(idx), _frozen(vals), tuple(int(n) for n in (shape or full)), implicit)


def _frozen(a: np.ndarray) -> np.ndarray:
    """A read-only C-contiguous array: `a` when it is one already, else a copy."""
    if not a.flags.writeable and a.flags.c_contiguous:
        return a
    out = np.array(a, order="C", copy=True)
    out.flags.writeable = False
    return out


def _is_sparse(x: Any) -> bool:
    return (hasattr(x, "tocoo") and hasattr(x, "nnz")) or str(getattr(x, "layout", "")) in (
        "torch.sparse_coo",
        "torch.sparse_csr",
    )


def densify(x: Tensor) -> Tensor:
    """A relation as a dense tensor: each tuple's value at its keys, 0 elsewhere."""
    if not isinstance(x, Tensor) or support_of(x.node) is None:
        raise EinrelError(f"er.densify expects a relation, got {x!r}")
    return Tensor(Node("densify", (x.node,), x.shape, x.dtype))


def bind_relation(name: str, node: Any, value: Any, cast: bool) -> Coo:
    """Check a relation's feed against its declaration; return it as a Coo of storage dtype.
    An er.coo feed is checked once: the result is kept with it, and so is all that later
    stages derive from it (cuts, sorted orders)."""
    feed = _as_coo(value)
    return cached(
        feed,
        ("bound", name, node.shape, node.dtype, node.attrs, cast),
        lambda: _bind(name, node, feed, cast),
    )


def _bind(name: str, node: Any, feed: Coo, cast: bool) -> Coo:
    from .. import kernels

    rel: Relation = node.attrs
    where = f"feed {name!r} (relation {node.name}, keys {dict(zip(rel.keys, node.shape))})"
    if feed.nkeys != len(rel.keys):
        raise FeedError(
            f"{where}: indices have {feed.nkeys} key rows, the relation has {len(rel.keys)}"
        )
    if feed.nnz > rel.nnz:
        raise FeedError(f"{where}: {feed.nnz} tuples, more than the declared nnz={rel.nnz}")
    idx = feed.indices
    for k, (key, n) in enumerate(zip(rel.keys, node.shape)):
        if idx.shape[1] and (idx[k].min() < 0 or idx[k].max() >= n):
            bad = idx[k][(idx[k] < 0) | (idx[k] >= n)][0]
            raise FeedError(f"{where}: key {key!r} index {int(bad)} is outside [0, {n})")
    if idx.shape[1] and _has_duplicates(idx, node.shape[: len(rel.keys)]):
        raise FeedError(
            f"{where}: a key appears more than once; pass er.coo(..., coalesce=True) to sum "
            "the values of repeated keys"
        )
    want_shape = (feed.nnz, *node.shape[len(rel.keys) :])
    vals = feed.values
    if vals.shape != want_shape:
        raise FeedError(f"{where}: values have shape {vals.shape}, expected {want_shape}")
    want = kernels.storage_dtype(node.dtype)
    if vals.dtype != want and not (cast or feed.implicit_values) and vals.dtype.kind in "biuf":
        raise FeedError(
            f"{where}: values have dtype {vals.dtype}, the relation is {node.dtype} "
            f"(pass {want.name} values, or run(..., cast=True))"
        )
    if vals.dtype.kind not in "biuf":
        raise FeedError(f"{where}: values have dtype {vals.dtype}, which is not numeric")
    if vals.dtype != want or node.dtype == "bfloat16":
        vals = np.ascontiguousarray(vals, dtype=want)
        if node.dtype == "bfloat16":
            vals = kernels.finish(vals, "bfloat16")
        vals = _frozen(vals)
    keys = node.shape[: len(rel.keys)]
    if idx.dtype.itemsize > index_dtype(max(max(keys), rel.nnz)).itemsize:
        idx = _frozen(idx.astype(index_dtype(max(max(keys), rel.nnz))))
    return Coo(
        idx,
        vals,
        node.shape,
        False,
        None,
        (),
        None,
        feed.cache if idx is feed.indices and vals is feed.values else new_cache(),
    )


def _as_coo(value: Any) -> Coo:
    """A Coo from er.coo, scipy.sparse or a torch sparse COO/CSR tensor (their repeated keys
    are summed, as those libraries mean them)."""
    if isinstance(value, Coo):
        return value
    if hasattr(value, "tocoo") and hasattr(value, "nnz"):  # scipy.sparse
        m = value.tocoo()
        m.sum_duplicates()
        return coo(np.stack([m.row, m.col]), np.asarray(m.data), shape=m.shape)
    layout = str(getattr(value, "layout", ""))
    if layout == "torch.sparse_coo":
        t = value.detach().cpu().coalesce()
        return coo(t.indices().numpy(), t.values().numpy(), shape=tuple(t.shape))
    if layout == "torch.sparse_csr":
        t = value.detach().cpu()
        crow = t.crow_indices().numpy()
        rows = np.repeat(np.arange(len(crow) - 1), np.diff(crow))
        return coo(
            np.stack([rows, t.col_indices().numpy()]),
            t.values().numpy(),
            shape=tuple(t.shape),
            coalesce=True,
        )
    raise FeedError(
        f"a relation is fed with er.coo(indices, values), a scipy.sparse matrix or a torch "
        f"sparse COO/CSR tensor, got {type(value).__name__}"
    )


def _indices(indices: Any) -> np.ndarray:
    if hasattr(indices, "detach"):
        indices = indices.detach().cpu().numpy()
    if isinstance(indices, tuple | list) and indices and not np.isscalar(indices[0]):
        rows = [np.asarray(r.detach().cpu() if hasattr(r, "detach") else r) for r in indices]
        if len({r.shape for r in rows}) != 1 or rows[0].ndim != 1:
            raise FeedError("er.coo: index arrays must be 1-d and of one length")
        idx = np.stack(rows)
    else:
        idx = np.asarray(indices)
    if idx.ndim != 2:
        raise FeedError(f"er.coo: indices must be (nkeys, nnz), got shape {idx.shape}")
    if idx.dtype.kind not in "iu":
        raise FeedError(f"er.coo: indices must be integers, got dtype {idx.dtype}")
    if idx.dtype not in (np.int32, np.int64):
        idx = idx.astype(np.int64)
    return idx


def _flat_keys(idx: np.ndarray, keys: tuple[int, ...]) -> np.ndarray | None:
    """One int64 per tuple identifying its keys, or None when the key space overflows int64."""
    if np.prod([float(n) for n in keys]) >= 2**62:
        return None
    return np.ravel_multi_index(tuple(idx), tuple(int(n) for n in keys))


def _sort_order(idx: np.ndarray, keys: tuple[int, ...]) -> np.ndarray | None:
    """The stable order that sorts the tuples by their keys (None: sorted already)."""
    flat = _flat_keys(idx, keys)
    if flat is None:
        order = np.lexsort(idx[::-1])
        return None if np.array_equal(order, np.arange(order.size)) else order
    if flat.size < 2 or not np.any(flat[1:] < flat[:-1]):
        return None
    return stable_argsort(flat)


def _has_duplicates(idx: np.ndarray, keys: tuple[int, ...]) -> bool:
    """Whether two tuples have the same keys. The leading keys whose space fits an int64
    decide it when they are distinct already (tuples numbered by a key of their own, say)."""
    lead = len(keys)
    while lead > 1 and np.prod([float(n) for n in keys[:lead]]) >= 2**62:
        lead -= 1
    if lead < len(keys) and not _has_duplicates(idx[:lead], keys[:lead]):
        return False
    order = _sort_order(idx, keys)
    s = idx if order is None else idx[:, order]
    return bool(np.any(np.all(s[:, 1:] == s[:, :-1], axis=0)))


def _coalesce(
    idx: np.ndarray, vals: np.ndarray, keys: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Unique keys in sorted order, with the values of repeated keys summed."""
    order = _sort_order(idx, keys)
    if order is None:
        order = np.arange(idx.shape[1])
    s = idx[:, order]
    first = np.ones(s.shape[1], dtype=bool)
    first[1:] = np.any(s[:, 1:] != s[:, :-1], axis=0)
    starts = np.flatnonzero(first)
    out = np.add.reduceat(vals[order], starts, axis=0) if starts.size else vals[:0].copy()
    return np.ascontiguousarray(s[:, first]), out.astype(vals.dtype, copy=False)


def support(x: Tensor) -> Support | None:
    """Where a relation tensor's tuples come from (None for a dense tensor)."""
    return support_of(x.node)
