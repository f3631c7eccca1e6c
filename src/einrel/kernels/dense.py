"""numpy kernels for every graph op, on whole tensors or on blocks.

The reference interpreter runs them on whole tensors; the block interpreter and the CPU engines
run the very same functions on blocks, so the levels differ only in how data is cut and moved.
Low-precision dtypes (float16, bfloat16) compute in float32 and round each node's result to
their precision; bfloat16 values travel as float32 arrays holding bfloat16-representable values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import opt_einsum

from ..ir import scalar as S
from ..ir.einsum import Einsum
from ..ir.graph import Fill
from .blas import finish3, gemm
from .dtypes import _STORAGE, compute_dtype, finish
from .fused import _fuse, _fused, _views


def einsum(
    op: Einsum,
    arrays: Sequence[np.ndarray],
    variables: Mapping[str, float],
    dtype: str,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Evaluate an extended einsum; returns an array of `dtype`'s storage dtype.

    With `out` (the output shape, the storage dtype, overlapping no input; a strided window
    of a larger array too) the result is written there and `out` is returned. When the
    storage dtype is the compute dtype the kernels write straight into it (BLAS only into a
    C-contiguous one), which saves a pass over the result: an engine would otherwise copy
    every block it computes once more."""
    cdt = compute_dtype(dtype)
    arrays = [np.asarray(a, dtype=cdt) for a in arrays]
    same = out if out is not None and out.dtype == cdt else None  # numpy ufuncs take strides
    direct = same if same is not None and same.flags.c_contiguous else None
    init = None
    if op.init:  # Z = x0 + the sum of the body over the other operands
        init, arrays, op = arrays[0], arrays[1:], op.body
    if op.agg == "sum":
        split = S.scaled_product(op.join)
        if split is not None:
            coef, scale, factors = split
            if scale is not None:
                coef *= float(S.compile_numpy(scale, 0)(variables))
            res = _factored(op, arrays, variables, coef, factors, cdt, direct, init)
            return _deliver(res, dtype, out)
    res = _fused(
        _fuse(op.join, op.arity),
        _views(op, arrays),
        op.join_shape,
        len(op.output),
        op.agg,
        variables,
        cdt,
        same,
    )
    if init is not None:
        res = np.add(res, init, out=res if res is same or _owned(res, cdt) else None)
    return _deliver(res, dtype, out)


def _deliver(res: np.ndarray, dtype: str, out: np.ndarray | None) -> np.ndarray:
    """`finish(res)`, copied into `out` when one is given and the kernel did not write it."""
    if out is None:
        return finish(res, dtype)
    if res is not out:
        if dtype == "bfloat16":
            res = finish(res, dtype)
        with np.errstate(over="ignore"):  # float16 overflow rounds to inf
            np.copyto(out, res, casting="unsafe")
    return out


def _factored(
    op: Einsum,
    arrays: list[np.ndarray],
    variables: Mapping[str, float],
    coef: float,
    factors: dict[int, S.Expr],
    cdt: np.dtype,
    out: np.ndarray | None = None,
    init: np.ndarray | None = None,
) -> np.ndarray:
    """join = c * prod_i f_i(x_i): map each input by f_i, then one BLAS-backed contraction
    (written into `out` when given and the layout allows), plus `init` when given (the GEMM
    accumulates into it where it can)."""
    size = op.size
    # Operands over the same set of labels (a gradient times a relu mask, say) are multiplied
    # elementwise first, their maps fused into that one pass; what is left is contracted.
    groups: dict[frozenset[str], list[int]] = {}
    for i in sorted(factors):
        groups.setdefault(frozenset(op.inputs[i]), []).append(i)
    ops, specs = [], []
    for members in groups.values():
        first = members[0]
        labs = op.inputs[first]
        a = arrays[first]
        if len(members) > 1 or factors[first] != S.hole(first):
            join = S.remap_holes(factors[first], {first: 0})
            views = [a]
            for k, i in enumerate(members[1:], 1):
                join = S.mul(join, S.remap_holes(factors[i], {i: k}))
                views.append(np.transpose(arrays[i], [op.inputs[i].index(c) for c in labs]))
            fused = _fuse(join, len(members))
            a = _fused(fused, views, a.shape, a.ndim, None, variables, cdt)
        ops.append(a)
        specs.append(labs)
    present = set("".join(specs))
    sub_out = "".join(lab for lab in op.output if lab in present)
    # Aggregated labels that no used input carries just multiply the sum by their size.
    mult = math.prod(size[lab] for lab in op.agg_labels if lab not in present)
    scale = coef * mult
    if len(ops) == 2 and sub_out == op.output:
        res = contract2(specs[0], specs[1], sub_out, ops[0], ops[1], out, scale, init)
        return np.asarray(res, dtype=cdt, order="C")
    if len(ops) == 2:
        res = contract2(specs[0], specs[1], sub_out, ops[0], ops[1])
    elif ops:
        res = (
            opt_einsum.contract(",".join(specs) + "->" + sub_out, *ops)
            if len(ops) > 1
            else np.einsum(f"{specs[0]}->{sub_out}", ops[0])
        )
    else:
        res = np.ones((), dtype=cdt)
    if scale != 1:
        mine = res is out or _owned(res, cdt)
        res = np.multiply(res, cdt.type(scale), out=res if mine else None)
    if sub_out != op.output:  # broadcast labels no input carries
        shape = [size[lab] if lab in present else 1 for lab in op.output]
        perm = sorted(range(len(sub_out)), key=lambda d: op.output.index(sub_out[d]))
        res = np.broadcast_to(np.transpose(res, perm).reshape(shape), op.out_shape)
    if init is not None:
        res = np.add(res, init, out=res if _owned(res, cdt) else None)
    return np.asarray(res, dtype=cdt, order="C")


def _owned(a: Any, cdt: np.dtype) -> bool:
    """True for a fresh, writable, contiguous array of dtype `cdt` (safe to overwrite)."""
    return (
        isinstance(a, np.ndarray)
        and a.dtype == cdt
        and a.ndim > 0
        and a.base is None
        and a.flags.writeable
        and a.flags.c_contiguous
    )


def contract2(
    la: str,
    lb: str,
    out: str,
    a: np.ndarray,
    b: np.ndarray,
    dst: np.ndarray | None = None,
    alpha: float = 1.0,
    init: np.ndarray | None = None,
) -> np.ndarray:
    """Two-operand contraction as one batched GEMM, laid out so that the result is already in
    `out` order whenever the labels allow it (no transposing copy after the BLAS call). The
    GEMM writes into `dst` (C-contiguous, the output's shape and dtype) when that layout holds;
    the result is `dst` exactly when it did."""
    # Labels only one operand has and the output lacks are summed away first.
    a_only = "".join(c for c in la if c not in lb and c not in out)
    b_only = "".join(c for c in lb if c not in la and c not in out)
    if a_only:
        la2 = "".join(c for c in la if c not in a_only)
        a, la = np.einsum(f"{la}->{la2}", a), la2
    if b_only:
        lb2 = "".join(c for c in lb if c not in b_only)
        b, lb = np.einsum(f"{lb}->{lb2}", b), lb2
    batch = "".join(c for c in out if c in la and c in lb)
    left = "".join(c for c in out if c in la and c not in lb)
    right = "".join(c for c in out if c in lb and c not in la)
    red = "".join(c for c in la if c in lb and c not in out)
    if batch + right + left == out and batch + left + right != out:
        # The output wants b's free labels first: swap the operands, C^T = B^T A^T.
        a, b, la, lb, left, right = b, a, lb, la, right, left
    dims = dict(zip(la, a.shape)) | dict(zip(lb, b.shape))

    def prod(labels: str) -> int:
        return math.prod(dims[c] for c in labels)

    # Put the batch labels in the order they have in `out`; if the output interleaves batch
    # and free labels, fall back to a transpose at the end.
    am = np.transpose(a, [la.index(c) for c in batch + left + red]).reshape(
        prod(batch), prod(left), prod(red)
    )
    bm = np.transpose(b, [lb.index(c) for c in batch + red + right]).reshape(
        prod(batch), prod(red), prod(right)
    )
    order = batch + left + right
    shape3 = (am.shape[0], am.shape[1], bm.shape[2])
    into = None
    if dst is not None and order == out and dst.dtype == np.result_type(am, bm):
        into = dst.reshape(shape3)
    init3 = None
    if init is not None:  # in the GEMM's output layout
        init3 = np.transpose(init, [out.index(c) for c in order]).reshape(shape3)
    # Without a reduced label it is an outer product per batch: one multiply, no K=1 GEMM.
    if not red:
        res = finish3(np.multiply(am, bm, out=into), alpha, init3)
    else:
        res = gemm(am, bm, into, alpha, init3)
    if into is not None and res is into:
        assert dst is not None  # into is a view of dst
        return dst
    res = res.reshape([dims[c] for c in batch + left + right])
    if order != out:
        res = np.transpose(res, [order.index(c) for c in out])
    return res


def fill(
    f: Fill, shape: Sequence[int], dtype: str, offset: Sequence[int] | None = None
) -> np.ndarray:
    """A fill, or the block of it at `offset` (the causal mask depends on the position)."""
    sdt = _STORAGE[dtype]
    if not f.triu:
        return np.full(tuple(shape), f.value, dtype=sdt)
    off = tuple(offset) if offset is not None else (0,) * len(shape)
    rows = np.arange(off[-2], off[-2] + shape[-2])[:, None]
    cols = np.arange(off[-1], off[-1] + shape[-1])[None, :]
    mask = np.where(cols > rows, f.value, 0.0).astype(sdt)
    return np.asarray(np.broadcast_to(mask, tuple(shape)), order="C")
