"""The ops a random program is drawn from, each a function that draws its operands from the
`Builder` and emits one or a few lines: elementwise functions, powers and scalars, broadcasting
binaries, updates, random extended einsums with custom joins, matmuls, reductions, layers,
attention and structural ops. `OPS` weighs them."""

from __future__ import annotations

import math
from collections.abc import Callable

from .builder import DIMS, LABELS, SQUASH, Builder


def _unary(b: Builder) -> None:
    t = b.operand()
    if t is None:
        return
    kind = b.ch.pick(
        [
            "exp",
            "tanh",
            "relu",
            "sigmoid",
            "silu",
            "gelu",
            "log",
            "sqrt",
            "neg",
            "square",
            "cube",
            "abs",
            "recip",
            "pow",
            "scale",
            "shift",
            "var",
            "clamp",
        ]
    )
    if kind == "exp":
        t = b.bounded(t, 3.0)
        b.emit(f"er.exp({t.name})", t.shape, math.exp(t.lo), math.exp(t.hi))
    elif kind in ("tanh", "sigmoid"):
        f = math.tanh if kind == "tanh" else (lambda v: 1 / (1 + math.exp(-v)))
        t = b.bounded(t)
        b.emit(f"er.{kind}({t.name})", t.shape, f(t.lo), f(t.hi))
    elif kind == "relu":
        b.emit(f"er.relu({t.name})", t.shape, max(t.lo, 0.0), max(t.hi, 0.0))
    elif kind in ("silu", "gelu"):
        b.emit(f"er.{kind}({t.name})", t.shape, -0.3, max(t.hi, 0.0))
    elif kind in ("log", "sqrt"):
        t = b.positive(t, 0.1)
        f = math.log if kind == "log" else math.sqrt
        b.emit(f"er.{kind}({t.name})", t.shape, f(t.lo), f(t.hi))
    elif kind == "neg":
        b.emit(f"-{t.name}", t.shape, -t.hi, -t.lo)
    elif kind == "square":
        t = b.bounded(t)
        b.emit(f"{t.name} ** 2", t.shape, 0.0, t.mag**2)
    elif kind == "cube":
        t = b.bounded(t, 5.0)
        b.emit(f"{t.name} ** 3", t.shape, t.lo**3, t.hi**3)
    elif kind == "abs":
        b.emit(f"er.abs({t.name})", t.shape, 0.0, t.mag)
    elif kind == "recip":
        t = b.positive(t, 0.5)
        b.emit(f"{b.ch.pick(['1.0', '-2.0'])} / {t.name}", t.shape, -4.0, 4.0)
    elif kind == "pow":
        t = b.positive(t, 0.1)
        p = b.ch.pick([0.5, 1.5, -0.5, -1])
        lo, hi = sorted((t.lo**p, t.hi**p))
        b.emit(f"{t.name} ** {p}", t.shape, lo, hi)
    elif kind == "scale":
        c = b.ch.pick([0.5, 0, -1.5, 3.0])
        b.emit(f"{t.name} * {c}", t.shape, t.lo * c, t.hi * c)
    elif kind == "shift":
        c = b.ch.pick([1.0, -0.5, 0, 2.0])
        if b.ch.coin(0.5):
            b.emit(f"{t.name} + {c}", t.shape, t.lo + c, t.hi + c)
        else:
            b.emit(f"{c} - {t.name}", t.shape, c - t.hi, c - t.lo)
    elif kind == "var":
        v = b.variable()
        b.emit(f'{t.name} * er.var("{v}")', t.shape, -1.5 * t.mag, 1.5 * t.mag)
    else:
        c = b.ch.pick([0.0, 0.5, -0.25])
        fn = b.ch.pick(["maximum", "minimum"])
        lo, hi = (max(t.lo, c), max(t.hi, c)) if fn == "maximum" else (min(t.lo, c), min(t.hi, c))
        args = (t.name, str(c)) if b.ch.coin(0.5) else (str(c), t.name)
        b.emit(f"er.{fn}({args[0]}, {args[1]})", t.shape, lo, hi)


def _binary(b: Builder) -> None:
    t = b.operand()
    if t is None:
        return
    u = b.broadcast_partner(t)
    if b.ch.coin(0.5):
        t, u = u, t
    shape = _broadcast(t.shape, u.shape)
    op = b.ch.pick(["+", "*", "-", "/", "maximum", "minimum"])
    if op == "/":
        u = b.positive(u, 0.5)
        t = b.bounded(t)
        b.emit(f"{t.name} / {u.name}", shape, -2 * t.mag, 2 * t.mag)
    elif op in ("maximum", "minimum"):
        lo = max(t.lo, u.lo) if op == "maximum" else min(t.lo, u.lo)
        hi = max(t.hi, u.hi) if op == "maximum" else min(t.hi, u.hi)
        b.emit(f"er.{op}({t.name}, {u.name})", shape, lo, hi)
    elif op == "*":
        t, u = b.bounded(t), b.bounded(u)
        m = t.mag * u.mag
        b.emit(f"{t.name} * {u.name}", shape, -m, m)
    else:
        hi = t.hi + (u.hi if op == "+" else -u.lo)
        lo = t.lo + (u.lo if op == "+" else -u.hi)
        b.emit(f"{t.name} {op} {u.name}", shape, lo, hi)


def _update(b: Builder) -> None:
    """`w - lr * g` with g a contraction of the same shape, as an SGD step writes it."""
    g = b.operand(lambda t: t.ndim == 2 and t.mag <= SQUASH)
    if g is None:
        return
    g = b.bounded(g)
    k = g.shape[0]
    a = b.operand(lambda t: t.ndim == 2 and t.shape[0] == k and t.mag <= SQUASH)
    a = a or b.new_input((k, b.ch.pick(DIMS)))
    grad = b.derived(f"er.transpose({a.name}) @ {g.name}", (a.shape[1], g.shape[1]), 0, 0)
    m = k * a.mag * g.mag
    grad.lo, grad.hi = -m, m
    w = b.operand(lambda t: t.shape == grad.shape) or b.new_input(grad.shape)
    v = b.variable()
    sign = b.ch.pick(["-", "+"])
    b.emit(
        f'{w.name} {sign} er.var("{v}") * {grad.name}', grad.shape, w.lo - 1.5 * m, w.hi + 1.5 * m
    )


def _broadcast(a: tuple[int, ...], c: tuple[int, ...]) -> tuple[int, ...]:
    rank = max(len(a), len(c))
    a = (1,) * (rank - len(a)) + a
    c = (1,) * (rank - len(c)) + c
    return tuple(max(x, y) for x, y in zip(a, c))


# Custom joins: source over symbolic scalars (the same text runs on torch tensors), the bound of
# the result from the operands' magnitudes, and the largest operand magnitude allowed.
JOINS: dict[int, list[tuple[str, Callable[..., float], float]]] = {
    1: [
        ("lambda a: a * a + 1.0", lambda a: a * a + 1, SQUASH),
        ("lambda a: er.tanh(a) * 2.0", lambda a: 2.0, math.inf),
        ('lambda a: a * er.var("v0")', lambda a: 1.5 * a, math.inf),
        ("lambda a: er.where(a > 0.25, a, -a * 0.5)", lambda a: a, math.inf),
    ],
    2: [
        ("lambda a, b: (a - b) ** 2", lambda a, c: (a + c) ** 2, SQUASH),
        ("lambda a, b: a * b + 1.0", lambda a, c: a * c + 1, SQUASH),
        ("lambda a, b: er.maximum(a, b)", max, math.inf),
        ("lambda a, b: er.exp(a - b)", lambda a, c: math.exp(a + c), 2.0),
        ("lambda a, b: er.where(a > b, a, b * 0.5)", max, math.inf),
        ("lambda a, b: a / (b * b + 1.0)", lambda a, c: a, SQUASH),
    ],
    3: [
        ("lambda a, b, c: a * b - c", lambda a, c, d: a * c + d, SQUASH),
        ("lambda a, b, c: er.minimum(a, b) * c", lambda a, c, d: max(a, c) * d, SQUASH),
    ],
}


def _einsum(b: Builder) -> None:
    """A random extended einsum over 1-3 operands: shared labels, any output, any aggregation,
    product or custom join, broadcast labels with sizes."""
    first = b.operand(lambda t: t.ndim > 0)
    if first is None:
        return
    ops = [first]
    for _ in range(b.ch.integer(0, 2)):
        ops.append(b.operand() or b.new_input(b.shape()))
    labels: list[str] = []
    size: dict[str, int] = {}
    fresh = iter(LABELS)
    for t in ops:
        labs = ""
        for n in t.shape:
            shared = [c for c in size if size[c] == n and c not in labs]
            if shared and b.ch.coin(0.6):
                c = b.ch.pick(shared)
            else:
                label = next(fresh, None)
                if label is None:
                    return
                c = label
                size[c] = n
            labs += c
        labels.append(labs)
    used = list(size)
    out = b.ch.sample(used, b.ch.integer(0, min(3, len(used))))
    sizes = {}
    if b.ch.coin(0.15):
        extra = next(fresh, None)
        if extra is not None:
            sizes[extra] = b.ch.pick(DIMS)
            out.insert(b.ch.integer(0, len(out)), extra)
    dropped = [c for c in used if c not in out]
    k = math.prod(size[c] for c in dropped)
    join_src, join_bound, limit = None, None, SQUASH
    if b.ch.coin(0.5):
        join_src, join_bound, limit = b.ch.pick(JOINS[len(ops)])
    ops = [b.bounded(t, limit) for t in ops]
    if join_src and "er.var" in join_src and "v0" not in b.variables:
        b.variables.append("v0")
    mags = [t.mag for t in ops]
    m = join_bound(*mags) if join_bound else math.prod(mags)
    agg = b.ch.pick(["sum", "max", "min", "prod"]) if dropped else "sum"
    if agg == "prod" and (m > 1.5 or k > 8):
        agg = "sum"
    bound = k * m if agg == "sum" else m**k if agg == "prod" else m
    spec = ",".join(labels) + "->" + "".join(out)
    args = [f'"{spec}"', *(t.name for t in ops)]
    if join_src:
        args.append(f"join={join_src}")
    if agg != "sum":
        args.append(f'agg="{agg}"')
    if sizes:
        args.append("sizes={" + ", ".join(f'"{c}": {n}' for c, n in sizes.items()) + "}")
    shape = tuple(sizes.get(c) or size[c] for c in out)
    b.emit(f"er.einsum({', '.join(args)})", shape, -bound, bound)


def _matmul(b: Builder) -> None:
    a = b.operand(lambda t: t.ndim in (1, 2))
    if a is None:
        return
    a = b.bounded(a)
    k = a.shape[-1]
    c = b.operand(lambda t: t.ndim in (1, 2) and t.shape[0] == k and t.mag <= SQUASH)
    if c is None or b.ch.coin(0.3):
        c = b.new_input((k, b.ch.pick(DIMS)) if b.ch.coin(0.8) else (k,))
    shape = a.shape[:-1] + c.shape[1:]
    m = k * a.mag * c.mag
    b.emit(f"{a.name} @ {c.name}", shape, -m, m)


def _reduce(b: Builder) -> None:
    t = b.operand(lambda t: t.ndim > 0)
    if t is None:
        return
    axes = b.ch.sample(range(t.ndim), b.ch.integer(1, t.ndim))
    axis = axes[0] if len(axes) == 1 and b.ch.coin(0.5) else tuple(sorted(axes))
    keep = b.ch.coin(0.2)
    k = math.prod(t.shape[a] for a in axes)
    shape = tuple(1 if d in axes else n for d, n in enumerate(t.shape) if keep or d not in axes)
    fn = b.ch.pick(["sum", "mean"])
    extra = ", keepdims=True" if keep else ""
    m = t.mag * (k if fn == "sum" else 1)
    b.emit(f"er.{fn}({t.name}, axis={axis!r}{extra})", shape, -m, m)


def _layer(b: Builder) -> None:
    """softmax, log_softmax, layer_norm, rms_norm, cross_entropy, mse."""
    t = b.operand(lambda t: t.ndim > 0)
    if t is None:
        return
    t = b.bounded(t)
    n = t.shape[-1]
    kind = b.ch.pick(["softmax", "log_softmax", "layer_norm", "rms_norm", "cross_entropy", "mse"])
    if kind == "softmax":
        axis = b.ch.integer(-t.ndim, t.ndim - 1)
        b.emit(f"er.softmax({t.name}, axis={axis})", t.shape, 0.0, 1.0)
    elif kind == "log_softmax":
        b.emit(f"er.log_softmax({t.name})", t.shape, -2 * t.mag - math.log(n) - 1, 0.0)
    elif kind in ("layer_norm", "rms_norm"):
        args = [t.name]
        params = 1 if kind == "rms_norm" else 2
        for _ in range(b.ch.integer(0, params)):
            args.append(b.new_input((n,)).name)
        m = math.sqrt(n) * 2 + 1
        b.emit(f"er.{kind}({', '.join(args)})", t.shape[:-1] + (n,), -m, m)
    elif kind == "cross_entropy":
        u = b.operand(lambda u: u.shape == t.shape and u.mag <= SQUASH) or b.new_input(t.shape)
        target = b.derived(f"er.softmax({u.name})", t.shape, 0.0, 1.0)
        b.emit(f"er.cross_entropy({t.name}, {target.name})", (), 0.0, 2 * t.mag + math.log(n))
    else:
        u = b.operand(lambda u: u.shape == t.shape and u.mag <= SQUASH) or b.new_input(t.shape)
        b.emit(f"er.mse({t.name}, {u.name})", (), 0.0, (t.mag + u.mag) ** 2)


def _attention(b: Builder) -> None:
    """softmax(q k^T / sqrt(d) [+ causal mask]) v."""
    q = b.operand(lambda t: t.ndim == 2)
    if q is None:
        q = b.new_input((b.ch.pick(DIMS), b.ch.pick(DIMS)))
    q = b.bounded(q)
    s, d = q.shape
    k = b.operand(lambda t: t.ndim == 2 and t.shape[1] == d and t.mag <= SQUASH)
    k = k or b.new_input((s if b.ch.coin(0.6) else b.ch.pick(DIMS), d))
    kt = b.derived(f"er.transpose({k.name})", (d, k.shape[0]), k.lo, k.hi)
    m = d * q.mag * k.mag / math.sqrt(d)
    scores = f"{q.name} @ {kt.name} * {1 / math.sqrt(d)!r}"
    if k.shape[0] == s and b.ch.coin(0.5):
        scores = b.emit(f"{scores} + er.causal_mask(({s}, {s}), DT)", (s, s), -m, m).name
        b.pool.pop()  # it holds -inf: only the softmax reads it
    p = b.emit(f"er.softmax({scores}, axis=-1)", (s, k.shape[0]), 0.0, 1.0)
    v = b.operand(lambda t: t.ndim == 2 and t.shape[0] == k.shape[0] and t.mag <= SQUASH)
    v = v or b.new_input((k.shape[0], b.ch.pick(DIMS)))
    b.emit(f"{p.name} @ {v.name}", (s, v.shape[1]), -v.mag, v.mag)


def _structural(b: Builder) -> None:
    """slice / index, concat, reshape, transpose, stop_gradient, a dtype round trip."""
    t = b.operand(lambda t: t.ndim > 0)
    if t is None:
        return
    kind = b.ch.pick(["slice", "concat", "reshape", "transpose", "stop", "index", "astype"])
    if kind == "slice":
        starts, stops = [], []
        for n in t.shape:
            lo = b.ch.integer(0, n - 1)
            starts.append(lo)
            stops.append(b.ch.integer(lo + 1, n))
        shape = tuple(e - s for s, e in zip(starts, stops))
        b.emit(f"er.slice({t.name}, {starts}, {stops})", shape, t.lo, t.hi)
    elif kind == "index":
        d = b.ch.integer(0, t.ndim - 1)
        i = b.ch.integer(-t.shape[d], t.shape[d] - 1)
        idx = ", ".join([":"] * d + [str(i)])
        b.emit(f"{t.name}[{idx}]", t.shape[:d] + t.shape[d + 1 :], t.lo, t.hi)
    elif kind == "concat":
        ax = b.ch.integer(0, t.ndim - 1)
        u = b.operand(
            lambda u: (
                u.ndim == t.ndim
                and all(x == y for d, (x, y) in enumerate(zip(u.shape, t.shape)) if d != ax)
            )
        )
        if u is None or (u is t and b.ch.coin(0.5)):
            u = b.new_input(t.shape[:ax] + (b.ch.pick(DIMS),) + t.shape[ax + 1 :])
        shape = t.shape[:ax] + (t.shape[ax] + u.shape[ax],) + t.shape[ax + 1 :]
        pair = [t.name, u.name] if b.ch.coin(0.5) else [u.name, t.name]
        b.emit(
            f"er.concat([{', '.join(pair)}], axis={ax})", shape, min(t.lo, u.lo), max(t.hi, u.hi)
        )
    elif kind == "reshape":
        shape = _reshape_target(b, t.shape)
        b.emit(f"er.reshape({t.name}, {shape!r})", shape, t.lo, t.hi)
    elif kind == "transpose":
        perm = b.ch.sample(range(t.ndim), t.ndim)
        b.emit(
            f"er.transpose({t.name}, {tuple(perm)!r})",
            tuple(t.shape[p] for p in perm),
            t.lo,
            t.hi,
        )
    elif kind == "stop":
        b.emit(f"er.stop_gradient({t.name})", t.shape, t.lo, t.hi)
    else:
        # Only inputs take the round trip, so that both sides round the same values.
        x = b.operand(lambda u: u.input) or t
        if not x.input:
            return
        other = "float32" if b.dtype == "float64" else "float64"
        b.emit(f'er.astype(er.astype({x.name}, "{other}"), DT)', x.shape, x.lo, x.hi)


def _reshape_target(b: Builder, shape: tuple[int, ...]) -> tuple[int, ...]:
    dims = list(shape)
    kind = b.ch.pick(["merge", "split", "unit", "flat"])
    if kind == "merge" and len(dims) >= 2:
        d = b.ch.integer(0, len(dims) - 2)
        dims[d : d + 2] = [dims[d] * dims[d + 1]]
    elif kind == "split":
        d = b.ch.integer(0, len(dims) - 1)
        n = dims[d]
        f = next((p for p in (2, 3) if n % p == 0 and n > p), None)
        dims[d : d + 1] = [f, n // f] if f else [n, 1]
    elif kind == "unit":
        dims.insert(b.ch.integer(0, len(dims)), 1)
    else:
        dims = [math.prod(dims)]
    return tuple(dims)


OPS: list[tuple[Callable[[Builder], None], int]] = [
    (_unary, 6),
    (_binary, 4),
    (_einsum, 4),
    (_matmul, 2),
    (_reduce, 2),
    (_layer, 2),
    (_attention, 1),
    (_structural, 3),
    (_update, 1),
]
