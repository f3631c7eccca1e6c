"""numpy kernels for einsums over relations: the join over present tuples, chunk by chunk.

Each chunk of tuples becomes a dense einsum over a tuple label: relation operands give their
values, dense operands their rows gathered at the chunk's keys. A relation output keeps the
chunk's values; a dense output reduces them into the kept keys (segment reduction) or over
all tuples, starting from the aggregation's identity so keys without tuples get it. No array
larger than one chunk times the other labels is ever made.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ..ir.einsum import _LETTERS, Einsum
from ..ir.relation import SparseEinsum
from .coo import Coo
from .dense import einsum as dense_einsum
from .dtypes import AGG_UFUNC, agg_identity, compute_dtype, finish

CHUNK_ELEMENTS = 1 << 22  # join-space elements per chunk: ~16 MiB of float32 per operand


def sparse_einsum(
    sp: SparseEinsum,
    args: Sequence[np.ndarray | Coo],
    variables: Mapping[str, float],
    dtype: str,
) -> np.ndarray | Coo:
    """Evaluate `sp` on its operands (Coo for relation operands, arrays otherwise): a Coo on
    the support when the output keeps every key, else a dense array."""
    op = sp.einsum
    first = next(a for a in args if isinstance(a, Coo))
    rows = dict(zip(op.inputs[sp.relational.index(True)], first.indices))
    size = op.size
    tau = next(c for c in _LETTERS if c not in size)
    keyset = set(sp.keys)
    other = math.prod(n for lab, n in size.items() if lab not in keyset)
    chunk = max(1, CHUNK_ELEMENTS // max(1, other))
    cdt = compute_dtype(dtype)
    kept = sp.kept_keys
    rest = "".join(lab for lab in op.output if lab not in keyset)
    ufunc = AGG_UFUNC[op.agg] if op.agg else None
    if sp.out is not None:
        parts: list[np.ndarray] = []
    else:
        assert op.agg is not None
        shape = tuple(size[lab] for lab in kept + rest)
        acc = np.full(shape, agg_identity(op.agg), dtype=cdt)
        flat = acc.reshape((math.prod(size[lab] for lab in kept), -1))
    for lo in range(0, first.nnz, chunk):
        hi = min(lo + chunk, first.nnz)
        inner, arrays = _chunk_einsum(op, sp, args, rows, tau, hi - lo, lo, hi, kept, rest)
        vals = dense_einsum(inner, arrays, variables, cdt.name)
        if sp.out is not None:
            parts.append(vals)
        elif not kept:
            acc = ufunc(acc, vals)  # type: ignore[misc]
        else:
            seg = np.ravel_multi_index(
                [rows[lab][lo:hi] for lab in kept], [size[lab] for lab in kept]
            )
            ufunc.at(flat, seg, vals.reshape(hi - lo, -1))  # type: ignore[union-attr]
    if sp.out is not None:
        empty = (0, *(size[lab] for lab in rest))
        values = finish(np.concatenate(parts) if parts else np.zeros(empty, cdt), dtype)
        indices = np.stack([rows[lab] for lab in kept]) if kept else first.indices[:0]
        same = [c for c in op.inputs[sp.relational.index(True)][: first.nkeys]] == list(kept)
        idx = first.indices if same else np.ascontiguousarray(indices)
        return Coo(idx, values, tuple(size[lab] for lab in kept) + values.shape[1:])
    order = kept + rest
    return finish(np.transpose(acc, [order.index(lab) for lab in op.output]), dtype)


def _chunk_einsum(
    op: Einsum,
    sp: SparseEinsum,
    args: Sequence[np.ndarray | Coo],
    rows: Mapping[str, np.ndarray],
    tau: str,
    n: int,
    lo: int,
    hi: int,
    kept: str,
    rest: str,
) -> tuple[Einsum, list[np.ndarray]]:
    """The dense einsum of tuples lo:hi over the tuple label `tau`, and its operands."""
    keyset = set(sp.keys)
    inputs, arrays = [], []
    for labs, a, rel in zip(op.inputs, args, sp.relational):
        if rel:
            assert isinstance(a, Coo)
            inputs.append(tau + labs[a.nkeys :])
            arrays.append(a.values[lo:hi])
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
        arrays.append(moved[tuple(rows[lab][lo:hi] for lab in keys)])
    size = {lab: s for lab, s in op.sizes if lab not in keyset}
    size[tau] = n
    output = tau + rest if (sp.out is not None or kept) else rest
    aggregated = [lab for lab in dict.fromkeys("".join(inputs)) if lab not in output]
    sizes = tuple((lab, size[lab]) for lab in [*output, *aggregated])
    return Einsum(tuple(inputs), output, sizes, op.join, op.agg if aggregated else None), arrays
