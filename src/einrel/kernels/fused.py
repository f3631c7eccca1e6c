"""Joins other than BLAS contractions: compiled once to a short list of ufunc steps that
run on cache-sized chunks of the join space, writing into reused buffers (no
temporaries the size of the block, no dtype round trips), then reduced chunk by chunk
when labels are aggregated."""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ir import scalar as S
from ..ir.einsum import Einsum
from .dtypes import AGG_UFUNC

# Joins other than BLAS contractions run on chunks of about this many join-space elements: the
# intermediates of a multi-step join stay in cache, and an aggregation never materialises more
# than one chunk of its join space. Larger chunks mean fewer ufunc calls, each of which takes
# the GIL: Adam's update of two (5·10^5, 64) float32 blocks on two threads at once took 110 ms
# in chunks of 2^15 elements, 75 ms in chunks of 2^16 and 55 ms in chunks of 2^17 (a chunk's
# buffers, 512 KiB each, still sit in L2 or L3).
CHUNK_ELEMENTS = 1 << 17


def _views(op: Einsum, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each input as a view over the join space (its missing labels as size-1 axes)."""
    labels = op.labels
    out = []
    for a, labs in zip(arrays, op.inputs):
        perm = sorted(range(len(labs)), key=lambda d: labels.index(labs[d]))
        shape = [a.shape[labs.index(lab)] if lab in labs else 1 for lab in labels]
        out.append(np.transpose(a, perm).reshape(shape))
    return out


def _negative(a: Any, out: np.ndarray) -> np.ndarray:
    """-a, as a multiply by -1 (the same bits but a NaN's sign): numpy 2.4's negative loop
    reads the wrong elements when its input and output are both strided (stride 4 of
    float32), which a column block written into a window of its output makes them."""
    return np.multiply(a, -1.0, out=out)


_UFUNC: dict[str, Any] = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "neg": _negative,
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
    ufunc = AGG_UFUNC[agg] if agg is not None else None
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
                region: tuple[int | slice, ...] = (*idx, part)
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
                    _run(f, vals, out[region], bufs)
                    continue
                if scratch is None:  # the join is an input (or a constant): reduce it directly
                    src = np.broadcast_to(vals[f.result], (hi - lo, *chunk[1:]))
                else:
                    src = scratch[: hi - lo]
                    _run(f, vals, src, bufs)
                assert ufunc is not None
                if ax < nout:
                    ufunc.reduce(src, axis=raxes, out=out[region])
                    continue
                # each piece reduces to one partial per output element; the partials are
                # combined at the end in one reduction (pairwise for sums)
                assert partials is not None  # allocated whenever agg is set and ax >= nout
                piece = int(np.ravel_multi_index((*idx[nout:], lo // step), pieces))
                partials[(*idx[:nout], piece)] = ufunc.reduce(src, axis=raxes)
    if partials is not None:
        assert ufunc is not None
        ufunc.reduce(partials, axis=-1, out=out)
    return out
