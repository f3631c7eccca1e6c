"""numpy kernels for every graph op, on whole tensors or on blocks.

The reference interpreter runs them on whole tensors; the block interpreter and the CPU engines
run the very same functions on blocks, so the levels differ only in how data is cut and moved.
Low-precision dtypes (float16, bfloat16) compute in float32 and round each node's result to
their precision; bfloat16 values travel as float32 arrays holding bfloat16-representable values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import opt_einsum

from . import scalar as S
from .einsum import Einsum
from .graph import Fill

# Above this many join-space elements a non-BLAS einsum is evaluated in chunks of an aggregated
# label, so memory stays near the output size instead of the join size.
CHUNK_ELEMENTS = 1 << 22

_AGG_UFUNC = {"sum": np.add, "prod": np.multiply, "max": np.maximum, "min": np.minimum}
_STORAGE = {
    "float32": np.float32,
    "float64": np.float64,
    "float16": np.float16,
    "bfloat16": np.float32,
}


def storage_dtype(dtype: str) -> np.dtype:
    """The numpy dtype that holds a tensor of einrel dtype `dtype`."""
    return np.dtype(_STORAGE[dtype])


def compute_dtype(dtype: str) -> np.dtype:
    return np.dtype(np.float64 if dtype == "float64" else np.float32)


def finish(x: np.ndarray, dtype: str) -> np.ndarray:
    """Round a float32/float64 result to `dtype` and store it in its storage dtype.

    The result is always a writable array: kernels may produce read-only broadcast views.
    """
    if dtype == "bfloat16":
        import torch

        x = np.asarray(x, dtype=np.float32, order="C")
        t = torch.from_numpy(x if x.flags.writeable else x.copy())
        return t.to(torch.bfloat16).to(torch.float32).numpy()
    out = np.asarray(x, dtype=_STORAGE[dtype])
    return out if out.flags.writeable else out.copy()


def combine(agg: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Combine two partial aggregates (the group-by step of a split aggregated label)."""
    return _AGG_UFUNC[agg](a, b)


def agg_identity(agg: str) -> float:
    return {"sum": 0.0, "prod": 1.0, "max": -math.inf, "min": math.inf}[agg]


def einsum(
    op: Einsum, arrays: Sequence[np.ndarray], variables: Mapping[str, float], dtype: str
) -> np.ndarray:
    """Evaluate an extended einsum; returns an array of `dtype`'s storage dtype."""
    cdt = compute_dtype(dtype)
    arrays = [np.asarray(a, dtype=cdt) for a in arrays]
    if op.agg in (None, "sum"):
        coef, factors = S.product_factors(op.join)
        if not math.isnan(coef):
            return finish(_factored(op, arrays, variables, coef, factors, cdt), dtype)
    return finish(_general(op, arrays, variables, cdt), dtype)


def _factored(
    op: Einsum,
    arrays: list[np.ndarray],
    variables: Mapping[str, float],
    coef: float,
    factors: dict[int, S.Expr],
    cdt: np.dtype,
) -> np.ndarray:
    """join = c * prod_i f_i(x_i): map each input by f_i, then one BLAS-backed contraction."""
    size = op.size
    used = sorted(factors)
    ops, specs = [], []
    for i in used:
        a = arrays[i]
        f = factors[i]
        if f != S.hole(i):
            a = np.asarray(S.compile_numpy(S.remap_holes(f, {i: 0}), 1)(a, variables), dtype=cdt)
            a = np.broadcast_to(a, arrays[i].shape)
        ops.append(a)
        specs.append(op.inputs[i])
    present = set("".join(specs))
    sub_out = "".join(lab for lab in op.output if lab in present)
    # Aggregated labels that no used input carries just multiply the sum by their size.
    mult = math.prod(size[lab] for lab in op.agg_labels if lab not in present)
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
    scale = coef * mult
    if scale != 1:
        res = res * cdt.type(scale)
    if sub_out != op.output:  # broadcast labels no input carries
        shape = [size[lab] if lab in present else 1 for lab in op.output]
        perm = sorted(range(len(sub_out)), key=lambda d: op.output.index(sub_out[d]))
        res = np.broadcast_to(np.transpose(res, perm).reshape(shape), op.out_shape)
    return np.asarray(res, dtype=cdt, order="C")


def contract2(la: str, lb: str, out: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two-operand contraction as one batched GEMM, laid out so that the result is already in
    `out` order whenever the labels allow it (no transposing copy after the BLAS call)."""
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
    res = np.matmul(am, bm).reshape([dims[c] for c in batch + left + right])
    order = batch + left + right
    if order != out:
        res = np.transpose(res, [order.index(c) for c in out])
    return res


def _views(op: Einsum, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each input as a view over the join space (its missing labels as size-1 axes)."""
    labels = op.labels
    out = []
    for a, labs in zip(arrays, op.inputs):
        perm = sorted(range(len(labs)), key=lambda d: labels.index(labs[d]))
        shape = [a.shape[labs.index(lab)] if lab in labs else 1 for lab in labels]
        out.append(np.transpose(a, perm).reshape(shape))
    return out


def _general(
    op: Einsum, arrays: list[np.ndarray], variables: Mapping[str, float], cdt: np.dtype
) -> np.ndarray:
    fn = S.compile_numpy(op.join, op.arity)
    views = _views(op, arrays)
    jshape = op.join_shape
    nout = len(op.output)
    if op.agg is None:
        with np.errstate(all="ignore"):
            res = np.asarray(fn(*views, variables), dtype=cdt)
        if res.shape != jshape:
            res = np.broadcast_to(res, jshape)
        return np.asarray(res, order="C")
    axes = tuple(range(nout, len(jshape)))
    ufunc = _AGG_UFUNC[op.agg]
    total = math.prod(jshape)
    # chunk along the largest aggregated label when the join space is large
    ax = max(axes, key=lambda d: jshape[d])
    pieces = max(1, min(jshape[ax], math.ceil(total / CHUNK_ELEMENTS)))
    bounds = np.linspace(0, jshape[ax], pieces + 1).astype(int)
    acc: np.ndarray | None = None
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        vs = [v[(slice(None),) * ax + (slice(lo, hi),)] if v.shape[ax] > 1 else v for v in views]
        shape = jshape[:ax] + (hi - lo,) + jshape[ax + 1 :]
        with np.errstate(all="ignore"):
            part = ufunc.reduce(
                np.broadcast_to(np.asarray(fn(*vs, variables), dtype=cdt), shape), axis=axes
            )
        acc = part if acc is None else ufunc(acc, part)
    assert acc is not None
    return np.asarray(acc, dtype=cdt, order="C")


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
