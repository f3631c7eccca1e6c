"""Kernels for einsums over relations: the join over present tuples, block by block.

Two rules, tried in order (`RULES`):
- `spmm`: a sum of products of a two-key relation's values with one dense operand gathered on
  one key and reduced onto the other (`uv,ud->vd`, its transpose in the backward pass) is a
  CSR sparse-dense product, run by torch's row-parallel `spmm_reduce` on the tuples sorted by
  the output key (the sort is cached with the structure, so a structure fed again is not
  sorted again);
- `chunked`: anything else. Tuples are taken a chunk at a time (for a max or min, in the
  order of the key the output keeps, sorted once per structure), and each chunk becomes a
  dense einsum over a tuple label: relation operands give their values, dense operands their
  rows gathered at the chunk's keys. A relation output keeps the chunk's values; a dense
  output adds each chunk's rows onto their keys' rows (torch's `index_add_`, in tuple order),
  or for another aggregation reduces each run of equal keys in key order (`reduceat`),
  starting from the aggregation's identity, so keys without tuples get it. No array larger
  than one chunk times the other labels is made.

Relation operands of one einsum are blocks of one structure in one order (see `kernels.coo`);
dense operands are the blocks of the same join box, so a key's local index is its global index
minus the block's origin.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..ir import scalar as S
from ..ir.einsum import _LETTERS, Einsum
from ..ir.relation import SparseEinsum
from .blas import torch_threads
from .coo import Coo, cached, csr, quiet_torch, stable_argsort
from .dense import einsum as dense_einsum
from .dtypes import AGG_UFUNC, agg_identity, compute_dtype, finish

CHUNK_ELEMENTS = 1 << 20  # join-space elements per chunk: 4 MiB of float32 per operand
ROW_CHUNK_BYTES = 1 << 20  # output bytes per CSR product call (small: malloc reuses them)

Result = np.ndarray | Coo
Rule = Callable[
    [SparseEinsum, Sequence[Any], Mapping[str, float], str, "np.ndarray | None"], Result | None
]


def sparse_einsum(
    sp: SparseEinsum,
    args: Sequence[np.ndarray | Coo],
    variables: Mapping[str, float],
    dtype: str,
    out: np.ndarray | None = None,
) -> Result:
    """Evaluate `sp` on its operands (Coo for relation operands, arrays otherwise): a Coo on
    the support when the output keeps every key, else a dense array, which a rule may write
    straight into `out` (then it returns `out`; otherwise the caller copies). For a relation
    result `out` holds the whole output's values by position (see `_values_place`)."""
    for rule in RULES:
        res = rule(sp, args, variables, dtype, out)
        if res is not None:
            return res
    raise AssertionError("the chunked rule takes every einsum")  # pragma: no cover


USED_ROWS_SHARE = 4  # gather a strided operand's used rows when it has 4x more rows than tuples


# --- the CSR rule --------------------------------------------------------------------------------
def _spmm_shape(sp: SparseEinsum, args: Sequence[Any]) -> tuple[int, int, int] | None:
    """(dense operand, gathered key dim, output key dim) when `sp` is a CSR product."""
    op = sp.einsum
    if sp.out is not None or op.agg != "sum" or op.init or len(sp.keys) != 2:
        return None
    if not S.is_product_of_holes(op.join, op.arity):
        return None
    dense = [k for k, rel in enumerate(sp.relational) if not rel]
    if len(dense) != 1:
        return None
    (j,) = dense
    labs = op.inputs[j]
    gathered = [lab for lab in labs if lab in sp.keys]
    rest = [lab for lab in labs if lab not in sp.keys]
    kept = [lab for lab in op.output if lab in sp.keys]
    if len(gathered) != 1 or len(kept) != 1 or gathered == kept or len(set(labs)) != len(labs):
        return None
    if sorted(op.output) != sorted(kept + rest):
        return None
    for k, rel in enumerate(sp.relational):
        if rel and (len(op.inputs[k]) != 2 or args[k].values.ndim != 1):
            return None
    first = next(a for a in args if isinstance(a, Coo))
    row = _key_dims(sp, first)
    return j, row[gathered[0]], row[kept[0]]


def _key_dims(sp: SparseEinsum, first: Coo) -> dict[str, int]:
    """Join label -> key dim of the first relation operand."""
    labs = sp.einsum.inputs[sp.relational.index(True)]
    return {lab: k for k, lab in enumerate(labs[: first.nkeys])}


def _spmm(
    sp: SparseEinsum,
    args: Sequence[Any],
    variables: Mapping[str, float],
    dtype: str,
    out: np.ndarray | None,
) -> Result | None:
    shape = _spmm_shape(sp, args)
    if shape is None:
        return None
    import torch

    j, g, s = shape
    op = sp.einsum
    coos = [a for a in args if isinstance(a, Coo)]
    first = coos[0]
    cdt = compute_dtype(dtype)
    ptr, perm = csr(first, s)
    weight = np.asarray(coos[0].values, dtype=cdt)
    for c in coos[1:]:
        weight = weight * np.asarray(c.values, dtype=cdt)
    if perm is not None:
        weight = weight[perm]

    def columns() -> tuple[np.ndarray, Any]:
        col = first.local(g)
        col = col[perm] if perm is not None else col
        it = torch.int32 if first.nnz < 2**31 and first.shape[g] < 2**31 else torch.int64
        return ptr, torch.from_numpy(np.ascontiguousarray(col)).to(it)

    quiet_torch()
    crow, col = cached(first, ("spmm-columns", s, g), columns)
    labs = op.inputs[j]
    key = next(lab for lab in labs if lab in sp.keys)
    rest = "".join(lab for lab in labs if lab != key)
    x = np.transpose(np.asarray(args[j], dtype=cdt), [labs.index(c) for c in key + rest])
    if not x.flags.c_contiguous and USED_ROWS_SHARE * first.nnz < x.shape[0]:
        # A strided block (a column cut of a table) read at few rows: gather the rows the
        # tuples read rather than copy the whole block to make it contiguous.
        cols = col.numpy()
        used, local = np.unique(cols, return_inverse=True)
        x, col = np.take(x, used, axis=0), torch.from_numpy(local.astype(cols.dtype))
    x = np.ascontiguousarray(x)
    x2 = torch.from_numpy(x.reshape(x.shape[0], -1))
    rows, width = first.shape[s], x2.shape[1]
    order = next(lab for lab in op.output if lab in sp.keys) + rest
    direct = out is not None and order == op.output and out.dtype == cdt
    dest = out.reshape(rows, width) if direct and out is not None else None
    if dest is None or not dest.flags.c_contiguous:
        dest = np.empty((rows, width), dtype=cdt)
    w = torch.from_numpy(np.ascontiguousarray(weight))
    # A run of rows at a time, each written into its rows of the result: no second result
    # is ever whole (torch's product returns a fresh tensor, its mm with out= makes one too).
    step = max(1, ROW_CHUNK_BYTES // max(1, width * cdt.itemsize))
    with torch_threads():
        for r0 in range(0, rows, step):
            r1 = min(rows, r0 + step)
            p0, p1 = int(crow[r0]), int(crow[r1])
            if p0 == p1 or width == 0:
                dest[r0:r1] = 0
                continue
            ptr_chunk = torch.from_numpy(crow[r0 : r1 + 1] - p0).to(col.dtype)
            a = torch.sparse_csr_tensor(
                ptr_chunk, col[p0:p1], w[p0:p1], (r1 - r0, x2.shape[0]), check_invariants=False
            )
            dest[r0:r1] = torch.sparse.mm(a, x2, "sum").numpy()
    if dest is out:
        return out
    res = dest.reshape((rows, *x.shape[1:]))
    return finish(np.transpose(res, [order.index(c) for c in op.output]), dtype)


# --- the chunked rule ----------------------------------------------------------------------------
def _segments(first: Coo, dims: tuple[int, ...]) -> tuple[np.ndarray | None, np.ndarray]:
    """The permutation that sorts the tuples by the kept key dims (None: sorted already) and
    the flat kept key of every tuple in that order."""

    def make() -> tuple[np.ndarray | None, np.ndarray]:
        if len(dims) == 1:
            ptr, perm = csr(first, dims[0])
            flat = np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))
            return perm, flat
        flat = np.ravel_multi_index(
            tuple(first.local(k) for k in dims), tuple(first.shape[k] for k in dims)
        )
        perm = None
        if flat.size > 1 and np.any(flat[1:] < flat[:-1]):
            perm = stable_argsort(flat)
            flat = flat[perm]
        return perm, flat

    return cached(first, ("segments", dims), make)


def _chunked(
    sp: SparseEinsum,
    args: Sequence[Any],
    variables: Mapping[str, float],
    dtype: str,
    out: np.ndarray | None,
) -> Result:
    op = sp.einsum
    first: Coo = next(a for a in args if isinstance(a, Coo))
    dims = _key_dims(sp, first)
    size = op.size
    tau = next(c for c in _LETTERS if c not in size)
    keyset = set(sp.keys)
    other = math.prod(n for lab, n in size.items() if lab not in keyset)
    chunk = max(1, CHUNK_ELEMENTS // max(1, other))
    cdt = compute_dtype(dtype)
    kept = sp.kept_keys
    rest = "".join(lab for lab in op.output if lab not in keyset)
    n = first.nnz
    perm: np.ndarray | None = None
    if sp.out is not None:  # each chunk's values straight into their rows
        values = _values_place(first, tuple(size[lab] for lab in rest), cdt, out)
    else:
        assert op.agg is not None
        ufunc = AGG_UFUNC[op.agg]
        shape = tuple(size[lab] for lab in kept + rest)
        acc = _accumulator(
            shape, agg_identity(op.agg), cdt, out if kept + rest == op.output else None
        )
        flat_acc = acc.reshape((math.prod(size[lab] for lab in kept), -1))
        kdims = tuple(dims[lab] for lab in kept)
        add = _index_add(flat_acc, first, kdims) if kept and op.agg == "sum" else None
        if kept and add is None:
            perm, seg = _segments(first, kdims)
    local = {lab: (first.indices[k], first.offsets[k]) for lab, k in dims.items()}
    for lo in range(0, n, chunk):
        hi = min(lo + chunk, n)
        take = perm[lo:hi] if perm is not None else slice(lo, hi)
        inner, arrays = _chunk_einsum(op, sp, args, local, tau, hi - lo, take, kept, rest)
        if sp.out is not None:
            dense_einsum(inner, arrays, variables, cdt.name, out=values[lo:hi])
            continue
        vals = dense_einsum(inner, arrays, variables, cdt.name)
        if add is not None:
            add(lo, hi, vals)
        elif not kept:
            flat_acc[0] = ufunc(flat_acc[0], vals.reshape(-1))
        else:
            keys = seg[lo:hi]
            starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
            red = ufunc.reduceat(vals.reshape(hi - lo, -1), starts, axis=0)
            rows = keys[starts]
            flat_acc[rows] = ufunc(flat_acc[rows], red)
    if sp.out is None:
        if acc is out:
            return out
        order = kept + rest
        return finish(np.transpose(acc, [order.index(lab) for lab in op.output]), dtype)
    return relation_result(first, [dims[lab] for lab in kept], finish(values, dtype))


def _index_add(
    acc: np.ndarray, first: Coo, dims: tuple[int, ...]
) -> Callable[[int, int, np.ndarray], None] | None:
    """A sum onto kept keys as torch's `index_add_` of each chunk's rows, in tuple order: no
    sort of the tuples and no gather in sorted order (ten times faster than sorted segments
    for 2.6·10^5 tuples onto 10^5 rows). None when the accumulator is not float."""
    if acc.dtype not in (np.float32, np.float64):
        return None
    import torch

    def make() -> Any:
        if len(dims) == 1:
            flat = first.local(dims[0])
        else:
            flat = np.ravel_multi_index(
                tuple(first.local(k) for k in dims), tuple(first.shape[k] for k in dims)
            )
        return torch.from_numpy(np.asarray(flat, dtype=np.int64))

    keys = cached(first, ("flat-keys", dims), make)
    target = torch.from_numpy(acc)

    def add(lo: int, hi: int, vals: np.ndarray) -> None:
        with torch_threads():
            target.index_add_(0, keys[lo:hi], torch.from_numpy(vals.reshape(hi - lo, -1)))

    return add


def _accumulator(
    shape: tuple[int, ...], identity: Any, dtype: np.dtype, out: np.ndarray | None
) -> np.ndarray:
    """The array a dense result accumulates in: `out` (an engine's recycled buffer, or its
    window of an output) when it fits, reset to the aggregation's identity, else a new one."""
    if out is None or out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
        return np.full(shape, identity, dtype=dtype)
    out.fill(identity)
    return out


def _values_place(first: Coo, vshape: tuple[int, ...], dtype: np.dtype, out: Any) -> np.ndarray:
    """Where a relation result's values go: their rows of `out` (the whole output's values,
    by position) when the tuples are a run of positions, else a new array."""
    pos = range(first.nnz) if first.pos is None else first.pos
    if (
        isinstance(out, np.ndarray)
        and isinstance(pos, range)
        and out.shape[1:] == vshape
        and out.dtype == dtype
        and pos.stop <= out.shape[0]
    ):
        return out[pos.start : pos.stop]
    return np.empty((first.nnz, *vshape), dtype=dtype)


def relation_result(first: Coo, keys: Sequence[int], values: np.ndarray) -> Coo:
    """`values` on the tuples of `first`, whose key dims `keys` become the output's keys in
    that order (the same structure, shared, unless the keys are permuted)."""
    if list(keys) == list(range(first.nkeys)):
        return first.with_values(values)
    idx = np.ascontiguousarray(first.indices[list(keys)])
    origin = tuple(first.offsets[k] for k in keys)
    order = keys.index(first.order) if first.order is not None else None
    shape = tuple(first.shape[k] for k in keys) + tuple(values.shape[1:])
    return Coo(idx, values, shape, False, first.pos, origin, order)


def _chunk_einsum(
    op: Einsum,
    sp: SparseEinsum,
    args: Sequence[np.ndarray | Coo],
    local: Mapping[str, tuple[np.ndarray, int]],
    tau: str,
    n: int,
    take: np.ndarray | slice,
    kept: str,
    rest: str,
) -> tuple[Einsum, list[np.ndarray]]:
    """The dense einsum of the tuples `take` over the tuple label `tau`, and its operands."""
    keyset = set(sp.keys)
    inputs, arrays = [], []
    for labs, a, rel in zip(op.inputs, args, sp.relational):
        if rel:
            assert isinstance(a, Coo)
            inputs.append(tau + labs[a.nkeys :])
            arrays.append(a.values[take])
            continue
        assert isinstance(a, np.ndarray)
        keys = [lab for lab in labs if lab in keyset]
        if not keys:
            inputs.append(labs)
            arrays.append(a)
            continue
        others = [lab for lab in labs if lab not in keyset]
        moved = np.transpose(a, [labs.index(lab) for lab in keys + others])
        inputs.append(tau + "".join(others))
        arrays.append(_gather(moved, [local[lab][0][take] - local[lab][1] for lab in keys]))
    size = {lab: s for lab, s in op.sizes if lab not in keyset}
    size[tau] = n
    output = tau + rest if (sp.out is not None or kept) else rest
    aggregated = [lab for lab in dict.fromkeys("".join(inputs)) if lab not in output]
    sizes = tuple((lab, size[lab]) for lab in [*output, *aggregated])
    return Einsum(tuple(inputs), output, sizes, op.join, op.agg if aggregated else None), arrays


def _gather(a: np.ndarray, keys: Sequence[np.ndarray]) -> np.ndarray:
    """The rows of `a` at `keys` (one index array per leading dim): `np.take` on a flat view
    where one exists, several times faster than fancy indexing on random rows. A strided `a`
    (a column block of a table) read at fewer rows than it has is indexed: `np.take` would
    first copy all of it."""
    if len(keys) == 1:
        if not a.flags.c_contiguous and 2 * keys[0].size < a.shape[0]:
            return a[keys[0]]
        return np.take(a, keys[0], axis=0)
    lead = a.shape[: len(keys)]
    if a.flags.c_contiguous:
        flat = a.reshape((math.prod(lead), *a.shape[len(keys) :]))
        return np.take(flat, np.ravel_multi_index(tuple(keys), lead), axis=0)
    return a[tuple(keys)]


RULES: tuple[Rule, ...] = (_spmm, _chunked)
