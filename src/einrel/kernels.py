"""numpy kernels for every graph op, on whole tensors or on blocks.

The reference interpreter runs them on whole tensors; the block interpreter and the CPU engines
run the very same functions on blocks, so the levels differ only in how data is cut and moved.
Low-precision dtypes (float16, bfloat16) compute in float32 and round each node's result to
their precision; bfloat16 values travel as float32 arrays holding bfloat16-representable values.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import opt_einsum

from . import scalar as S
from .einsum import Einsum
from .graph import Fill

# Joins other than BLAS contractions run on chunks of about this many join-space elements: the
# intermediates of a multi-step join stay in cache, and an aggregation never materialises more
# than one chunk of its join space.
CHUNK_ELEMENTS = 1 << 15

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
    with np.errstate(over="ignore"):  # rounding past float16's range gives inf, as it must
        out = np.asarray(x, dtype=_STORAGE[dtype])
    return out if out.flags.writeable else out.copy()


def combine(agg: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Combine two partial aggregates (the group-by step of a split aggregated label)."""
    return _AGG_UFUNC[agg](a, b)


def agg_identity(agg: str) -> float:
    return {"sum": 0.0, "prod": 1.0, "max": -math.inf, "min": math.inf}[agg]


def einsum(
    op: Einsum,
    arrays: Sequence[np.ndarray],
    variables: Mapping[str, float],
    dtype: str,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Evaluate an extended einsum; returns an array of `dtype`'s storage dtype.

    With `out` (C-contiguous, the output shape, the storage dtype, overlapping no input) the
    result is written there and `out` is returned. When the storage dtype is the compute dtype
    the kernels write straight into it, which saves a pass over the result: an arena-backed
    engine would otherwise copy every block it computes once more."""
    cdt = compute_dtype(dtype)
    arrays = [np.asarray(a, dtype=cdt) for a in arrays]
    direct = out if out is not None and out.dtype == cdt and out.flags.c_contiguous else None
    if op.agg == "sum":
        coef, factors = S.product_factors(op.join)
        if not math.isnan(coef):
            res = _factored(op, arrays, variables, coef, factors, cdt, direct)
            return _deliver(res, dtype, out)
    res = _fused(
        _fuse(op.join, op.arity),
        _views(op, arrays),
        op.join_shape,
        len(op.output),
        op.agg,
        variables,
        cdt,
        direct,
    )
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
) -> np.ndarray:
    """join = c * prod_i f_i(x_i): map each input by f_i, then one BLAS-backed contraction
    (written into `out` when given and the layout allows)."""
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
    if len(ops) == 2:
        res = contract2(
            specs[0], specs[1], sub_out, ops[0], ops[1], out if sub_out == op.output else None
        )
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
        mine = res is out or _owned(res, cdt)
        res = np.multiply(res, cdt.type(scale), out=res if mine else None)
    if sub_out != op.output:  # broadcast labels no input carries
        shape = [size[lab] if lab in present else 1 for lab in op.output]
        perm = sorted(range(len(sub_out)), key=lambda d: op.output.index(sub_out[d]))
        res = np.broadcast_to(np.transpose(res, perm).reshape(shape), op.out_shape)
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
    la: str, lb: str, out: str, a: np.ndarray, b: np.ndarray, dst: np.ndarray | None = None
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
    # Without a reduced label it is an outer product per batch: one multiply, no K=1 GEMM.
    if not red:
        res = np.multiply(am, bm, out=into)
    elif am.dtype == np.float32 and TORCH_SGEMM and am.size * bm.shape[-1] >= TORCH_SGEMM_MIN:
        res = _torch_matmul(am, bm, into)
    else:
        res = np.matmul(am, bm, out=into)
    if into is not None and res is into:
        return dst
    res = res.reshape([dims[c] for c in batch + left + right])
    if order != out:
        res = np.transpose(res, [order.index(c) for c in out])
    return res


# float32 GEMMs go to torch (MKL), about 8% faster than numpy's OpenBLAS per thread on this
# machine's AVX-512 cores (benchmarks/kernels.py); float64 stays on numpy, so the reference
# results the tests compare against do not depend on torch. Tiny products stay on numpy too,
# where torch's per-call overhead would dominate.
TORCH_SGEMM = True
TORCH_SGEMM_MIN = 1 << 18  # m·k·n


def _blas_threads() -> int:
    """OpenBLAS's current thread count: the engines set it per run to cores // devices."""
    ctl = getattr(_blas_threads, "ctl", None)
    if ctl is None:
        from threadpoolctl import ThreadpoolController

        libs = ThreadpoolController().select(user_api="blas").lib_controllers
        ctl = _blas_threads.ctl = libs[0] if libs else False  # type: ignore[attr-defined]
    return max(1, int(ctl.get_num_threads())) if ctl else 1


def _torch_matmul(am: np.ndarray, bm: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """`np.matmul(am, bm, out=out)` through torch, on zero-copy views, with this thread's torch
    thread count set to what BLAS has (torch's setting is per calling thread) and restored."""
    import torch

    if not (am.flags.writeable and bm.flags.writeable):  # torch wants writable memory
        return np.matmul(am, bm, out=out)
    if out is None:
        out = np.empty((am.shape[0], am.shape[1], bm.shape[2]), dtype=am.dtype)
    want = _blas_threads()
    had = torch.get_num_threads()
    if had != want:
        torch.set_num_threads(want)
    try:
        torch.matmul(torch.from_numpy(am), torch.from_numpy(bm), out=torch.from_numpy(out))
    finally:
        if had != want:
            torch.set_num_threads(had)
    return out


def _views(op: Einsum, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each input as a view over the join space (its missing labels as size-1 axes)."""
    labels = op.labels
    out = []
    for a, labs in zip(arrays, op.inputs):
        perm = sorted(range(len(labs)), key=lambda d: labels.index(labs[d]))
        shape = [a.shape[labs.index(lab)] if lab in labs else 1 for lab in labels]
        out.append(np.transpose(a, perm).reshape(shape))
    return out


# ---------------------------------------------------------------------------------------------
# Joins other than BLAS contractions: compiled once to a short list of ufunc steps that run on
# cache-sized chunks of the join space, writing into reused buffers (no temporaries the size of
# the block, no dtype round trips), then reduced chunk by chunk when labels are aggregated.
# ---------------------------------------------------------------------------------------------

_UFUNC: dict[str, Any] = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "neg": np.negative,
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "square": np.square,
    "pow": np.power,
    "max": np.maximum,
    "min": np.minimum,
    "lt": np.less,
    "le": np.less_equal,
    "gt": np.greater,
    "ge": np.greater_equal,
    "eq": np.equal,
    "ne": np.not_equal,
}
_POW_STEPS = {2: "square", 0.5: "sqrt", -1: "recip", -0.5: "rsqrt"}


@dataclass(frozen=True)
class _Step:
    """`slot[out] = fn(*slot[args])`. `fn` is a `_UFUNC` name, "recip" (1/x), "rsqrt"
    (1/sqrt(x)) or "where" (args: condition, then, else); comparisons produce booleans."""

    fn: str
    args: tuple[int, ...]
    out: int

    @property
    def boolean(self) -> bool:
        return self.fn in S.COMPARES


@dataclass(frozen=True)
class Fused:
    """A join as slots and steps. Slots 0..arity-1 are the inputs; `scalars` are the hole-free
    subexpressions (computed once per call on float64 numpy scalars, so numpy's rules hold,
    then cast to the compute dtype); the steps fill the other slots; `result` is the join."""

    arity: int
    nslots: int
    scalars: tuple[tuple[int, S.Expr], ...]
    steps: tuple[_Step, ...]
    result: int


@functools.lru_cache(maxsize=4096)
def _fuse(e: S.Expr, arity: int) -> Fused:
    slots: dict[S.Expr, int] = {}
    scalars: list[tuple[int, S.Expr]] = []
    steps: list[_Step] = []
    count = [arity]

    def new() -> int:
        count[0] += 1
        return count[0] - 1

    def emit(x: S.Expr) -> int:
        if x.op == "hole":
            return int(x.value)
        if x in slots:
            return slots[x]
        op, args = x.op, x.args
        if not x.holes():
            s = new()
            scalars.append((s, x))
        elif op == "add" and args[1].op == "neg":  # a + (-b) is a - b, bit for bit
            a, b = emit(args[0]), emit(args[1].args[0])
            s = new()
            steps.append(_Step("sub", (a, b), s))
        elif op == "add" and args[0].op == "neg":
            a, b = emit(args[1]), emit(args[0].args[0])
            s = new()
            steps.append(_Step("sub", (a, b), s))
        elif op == "pow" and args[1].is_const and args[1].value in _POW_STEPS:
            a = emit(args[0])
            s = new()
            steps.append(_Step(_POW_STEPS[args[1].value], (a,), s))
        elif op == "select":
            c = _Step(x.value, (emit(args[0]), emit(args[1])), new())
            steps.append(c)
            t, f = emit(args[2]), emit(args[3])
            s = new()
            steps.append(_Step("where", (c.out, t, f), s))
        else:
            ins = tuple(emit(a) for a in args)
            s = new()
            steps.append(_Step(op, ins, s))
        slots[x] = s
        return s

    result = emit(e)
    return Fused(arity, count[0], tuple(scalars), tuple(steps), result)


def _buffers(
    f: Fused, shapes: list[tuple[int, ...]]
) -> tuple[list[int], list[tuple[tuple[int, ...], bool]]]:
    """A buffer per step output, reusing the buffers of dead slots (same shape and kind)."""
    steps = f.steps
    last = [-1] * f.nslots
    for k, st in enumerate(steps):
        for a in st.args:
            last[a] = k
    which = [-1] * f.nslots
    specs: list[tuple[tuple[int, ...], bool]] = []
    free: dict[tuple[tuple[int, ...], bool], list[int]] = {}

    def release(k: int, st: _Step) -> None:
        for a in dict.fromkeys(st.args):
            if which[a] >= 0 and last[a] == k:
                free.setdefault(specs[which[a]], []).append(which[a])

    for k, st in enumerate(steps[:-1]):
        if st.fn != "where":  # a ufunc may write over an input it reads; where may not
            release(k, st)
        key = (shapes[st.out], st.boolean)
        pool = free.get(key)
        if pool:
            which[st.out] = pool.pop()
        else:
            which[st.out] = len(specs)
            specs.append(key)
        if st.fn == "where":
            release(k, st)
    return which, specs


def _run(f: Fused, vals: list[Any], target: np.ndarray, bufs: list[np.ndarray]) -> None:
    """Run the steps on one chunk; the last one writes into `target` (broadcasting)."""
    steps = f.steps
    if not steps:
        np.copyto(target, vals[f.result])
        return
    last = len(steps) - 1
    for k, st in enumerate(steps):
        out = target if k == last else bufs[st.out]
        args = [vals[a] for a in st.args]
        fn = st.fn
        if fn == "where":
            _select(out, *args)
        elif fn == "recip":
            np.divide(1.0, args[0], out=out)
        elif fn == "rsqrt":
            np.sqrt(args[0], out=out)
            np.divide(1.0, out, out=out)
        else:
            _UFUNC[fn](*args, out=out)
        vals[st.out] = out


_SAME_SIZE_INT = {4: np.int32, 8: np.int64}


def _select(out: np.ndarray, cond: np.ndarray, then: Any, other: Any) -> None:
    """`out = where(cond, then, other)` without branches: numpy's masked loops cost about ten
    times a plain pass when the mask is random (a relu mask is). An indicator (1 where cond,
    else 0) is a cast; anything else blends the bit patterns, other ^ ((then ^ other) * cond),
    which picks exactly one of the two values, NaN and signed zeros included."""
    if isinstance(then, np.generic) and isinstance(other, np.generic) and then == 1 and other == 0:
        np.copyto(out, cond)
        return
    it = _SAME_SIZE_INT[out.dtype.itemsize]
    bits = out.view(it)
    o = np.asarray(other).view(it)
    np.bitwise_xor(np.asarray(then).view(it), o, out=bits)
    np.multiply(bits, cond, out=bits)
    np.bitwise_xor(bits, o, out=bits)


def _fused(
    f: Fused,
    views: Sequence[np.ndarray],
    jshape: tuple[int, ...],
    nout: int,
    agg: str | None,
    variables: Mapping[str, float],
    cdt: np.dtype,
    into: np.ndarray | None = None,
) -> np.ndarray:
    """Evaluate `f` over the join space `jshape` (inputs as broadcastable `views`) and aggregate
    the labels after the first `nout` with `agg` (None: the join shape is the output). The
    result goes into `into` when it has the output's shape (and overlaps no input)."""
    vals: list[Any] = [None] * f.nslots
    with np.errstate(all="ignore"):
        for s, e in f.scalars:
            vals[s] = cdt.type(np.float64(S.compile_numpy(e, 0)(variables)))
    if not jshape:  # a scalar join: one element, as a 1-d chunk
        views = [v.reshape(1) for v in views]
        return _fused(f, views, (1,), 1, None, variables, cdt).reshape(())
    nd = len(jshape)
    oshape = jshape[:nout] if agg is not None else jshape
    out = into if into is not None and into.shape == oshape else np.empty(oshape, dtype=cdt)
    total = math.prod(jshape)
    if total <= 2 * CHUNK_ELEMENTS or (agg is None and len(f.steps) <= 1):
        ax, step = 0, max(1, jshape[0])
    else:
        ax = next(d for d in range(nd) if math.prod(jshape[d + 1 :]) <= CHUNK_ELEMENTS)
        step = max(1, CHUNK_ELEMENTS // math.prod(jshape[ax + 1 :]))
    step = min(step, jshape[ax])
    lead = [[v.shape[j] > 1 for j in range(ax)] for v in views]
    cut = [v.shape[ax] > 1 for v in views]
    shapes: list[tuple[int, ...]] = [()] * f.nslots
    for i, v in enumerate(views):
        shapes[i] = ((step if cut[i] else 1), *v.shape[ax + 1 :])
    for st in f.steps:
        shapes[st.out] = tuple(np.broadcast_shapes(*(shapes[a] for a in st.args)))
    which, specs = _buffers(f, shapes)
    pool = [np.empty(shape, dtype=bool if b else cdt) for shape, b in specs]
    full: list[Any] = [pool[w] if w >= 0 else None for w in which]
    tail: list[Any] = []
    chunk = (step, *jshape[ax + 1 :])
    scratch = np.empty(chunk, dtype=cdt) if agg is not None and f.steps else None
    ufunc = _AGG_UFUNC[agg] if agg is not None else None
    raxes = tuple(range(max(0, nout - ax), nd - ax))
    n = jshape[ax]
    pieces = (*jshape[nout:ax], -(-n // step))
    partials = (
        np.empty((*jshape[:nout], math.prod(pieces)), dtype=cdt)
        if agg is not None and ax >= nout
        else None
    )
    with np.errstate(all="ignore"):
        for idx in itertools.product(*(range(k) for k in jshape[:ax])):
            for lo in range(0, n, step):
                hi = min(n, lo + step)
                part = slice(lo, hi)
                for i, v in enumerate(views):
                    key = tuple(x if b else 0 for x, b in zip(idx, lead[i]))
                    vals[i] = v[(*key, part if cut[i] else slice(None))]
                bufs = full
                if hi - lo != step:  # the last, shorter chunk uses the front of each buffer
                    if not tail:
                        tail = [
                            b[: hi - lo] if b is not None and b.ndim and b.shape[0] == step else b
                            for b in full
                        ]
                    bufs = tail
                if agg is None:
                    _run(f, vals, out[(*idx, part)], bufs)
                    continue
                if scratch is None:  # the join is an input (or a constant): reduce it directly
                    src = np.broadcast_to(vals[f.result], (hi - lo, *chunk[1:]))
                else:
                    src = scratch[: hi - lo]
                    _run(f, vals, src, bufs)
                assert ufunc is not None
                if ax < nout:
                    ufunc.reduce(src, axis=raxes, out=out[(*idx, part)])
                    continue
                # each piece reduces to one partial per output element; the partials are
                # combined at the end in one reduction (pairwise for sums)
                piece = np.ravel_multi_index((*idx[nout:], lo // step), pieces)
                partials[(*idx[:nout], piece)] = ufunc.reduce(src, axis=raxes)
    if partials is not None:
        ufunc.reduce(partials, axis=-1, out=out)
    return out


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
