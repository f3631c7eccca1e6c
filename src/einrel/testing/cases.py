"""Random einrel programs with gradients, written as Python source.

A `Case` is a few lines of einrel code (`t3 = er.softmax(t1 @ x0, axis=-1)`), a scalar loss
over its unconsumed tensors and the gradients of that loss. The lines are the case: running them
with `er` bound to einrel builds the graph, running them with `er` bound to `torchref.TorchRef`
computes the same thing with torch autograd, and printing them gives a program anyone can run
to reproduce a failure. Cases are drawn through a `Choices` source, so hypothesis can shrink them.

Each tensor carries an interval that bounds its values, so that every drawn op stays inside its
domain (logs and square roots of values >= 0.1, divisions by values >= 0.5 in magnitude) and
magnitudes stay moderate (a tensor above `SQUASH` goes through tanh before it grows further):
comparisons can then use tight tolerances without NaN, inf or overflow in the way.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")
SQUASH = 30.0  # larger magnitudes go through tanh before an op that could grow them
DIMS = (2, 3, 4, 1, 5)  # sizes in the order hypothesis shrinks towards
LABELS = "abcdefgh"


class Choices:
    """Where a case's random decisions come from; subclasses give `integer`."""

    def integer(self, lo: int, hi: int) -> int:
        raise NotImplementedError

    def pick(self, options: Sequence[T]) -> T:
        return options[self.integer(0, len(options) - 1)]

    def coin(self, p: float) -> bool:
        return self.integer(0, 999) < p * 1000

    def sample(self, options: Sequence[T], k: int) -> list[T]:
        pool, out = list(options), []
        for _ in range(min(k, len(pool))):
            out.append(pool.pop(self.integer(0, len(pool) - 1)))
        return out


class RandomChoices(Choices):
    """Decisions from a seeded `random.Random`."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)


@dataclass(frozen=True)
class Case:
    """One random program: `lines` of einrel code over inputs and run-time variables.

    `DT` in the lines is the dtype (a variable of the program), `loss` is built by the last
    line, `outputs` are extra forward results, `wrt` the tensors the gradients are taken for.
    """

    dtype: str
    inputs: tuple[tuple[str, tuple[int, ...]], ...]
    lines: tuple[str, ...]
    outputs: tuple[str, ...]
    wrt: tuple[str, ...]
    variables: tuple[str, ...]
    seed: int

    def body(self) -> str:
        """The lines that build `outs` (loss, forward outputs, gradients) with `er` and `DT`."""
        ins = [f'{n} = er.input("{n}", {s!r}, DT)' for n, s in self.inputs]
        outs = ", ".join(self.outputs)
        tail = f"outs = [loss{', ' if outs else ''}{outs}, *er.grad(loss, [{', '.join(self.wrt)}])]"
        return "\n".join([*ins, *self.lines, tail])

    def used_inputs(self) -> list[tuple[str, tuple[int, ...]]]:
        """The inputs some line reads (the others are declared and only differentiated for)."""
        words = set(re.findall(r"\w+", "\n".join(self.lines)))
        return [(n, s) for n, s in self.inputs if n in words]

    def feeds_source(self) -> str:
        """The lines that draw `feeds` (inputs uniform in [-1, 1], variables in [0.5, 1.5])."""
        lines = [f"rng = np.random.default_rng({self.seed})", "feeds = {"]
        for n, s in self.used_inputs():
            lines.append(f'    "{n}": rng.uniform(-1, 1, {s!r}).astype(DT),')
        for v in self.variables:
            lines.append(f'    "{v}": float(rng.uniform(0.5, 1.5)),')
        lines.append("}")
        return "\n".join(lines)

    def build(self, er: Any, dtype: str | None = None) -> tuple[list[Any], dict[str, Any]]:
        """Run the lines with `er` as the einrel namespace; returns `outs` and all names."""
        env: dict[str, Any] = {"er": er, "DT": dtype or self.dtype}
        exec(self.body(), env)
        return env["outs"], env

    def feeds(self, dtype: str | None = None) -> dict[str, Any]:
        env: dict[str, Any] = {"np": np, "DT": dtype or self.dtype}
        exec(self.feeds_source(), env)
        return env["feeds"]

    def program(self, compile_source: str = "prog = er.compile(outs)", run: str = "") -> str:
        """A standalone program that builds the case, compiles it with `compile_source`, runs
        it and prints each output's error; `run` replaces everything after the feeds."""
        run = run or "\n".join(
            [
                "want = er.evaluate(outs, feeds)",
                compile_source,
                "got = prog.run(feeds)",
                "for k, (w, g) in enumerate(zip(want, got)):",
                '    print(k, w.shape, "max abs error", np.max(np.abs(np.asarray(w) - g)))',
            ]
        )
        return "\n".join(
            [
                "import numpy as np",
                "import einrel as er",
                "",
                f'DT = "{self.dtype}"',
                self.body(),
                self.feeds_source(),
                run,
            ]
        )


@dataclass
class _Tensor:
    name: str
    shape: tuple[int, ...]
    lo: float
    hi: float
    input: bool = False

    @property
    def mag(self) -> float:
        return max(abs(self.lo), abs(self.hi))

    @property
    def ndim(self) -> int:
        return len(self.shape)


@dataclass
class _Builder:
    """The state of one case being drawn: its tensors, lines and inputs."""

    ch: Choices
    dtype: str
    pool: list[_Tensor] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    inputs: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)
    variables: list[str] = field(default_factory=list)
    count: int = 0

    # --- tensors --------------------------------------------------------------------------
    def emit(self, expr: str, shape: tuple[int, ...], lo: float, hi: float) -> _Tensor:
        name = f"t{self.count}"
        self.count += 1
        self.lines.append(f"{name} = {expr}")
        lo, hi = (lo, hi) if lo <= hi else (hi, lo)
        t = _Tensor(name, tuple(shape), lo, hi)
        self.pool.append(t)
        return t

    def new_input(self, shape: tuple[int, ...], prefix: str = "x") -> _Tensor:
        name = f"{prefix}{len(self.inputs)}"
        self.inputs.append((name, tuple(shape)))
        t = _Tensor(name, tuple(shape), -1.0, 1.0, input=True)
        if prefix == "x":
            self.pool.append(t)
        return t

    def variable(self) -> str:
        if not self.variables or (len(self.variables) < 2 and self.ch.coin(0.3)):
            self.variables.append(f"v{len(self.variables)}")
            return self.variables[-1]
        return self.ch.pick(self.variables)

    def shape(self, max_rank: int = 3) -> tuple[int, ...]:
        return tuple(self.ch.pick(DIMS) for _ in range(self.ch.integer(0, max_rank)))

    def operand(self, pred: Callable[[_Tensor], bool] = lambda t: True) -> _Tensor | None:
        fits = [t for t in self.pool if pred(t)]
        if not fits:
            return None
        return self.ch.pick(fits[::-1])  # recent tensors first: deeper graphs

    def bounded(self, t: _Tensor, limit: float = SQUASH) -> _Tensor:
        """`t`, or tanh(t) when its values may exceed `limit`."""
        if t.mag <= limit:
            return t
        return self.derived(f"er.tanh({t.name})", t.shape, math.tanh(t.lo), math.tanh(t.hi))

    def derived(self, expr: str, shape: tuple[int, ...], lo: float, hi: float) -> _Tensor:
        """A helper tensor made for one op (which reads it)."""
        return self.emit(expr, shape, lo, hi)

    def positive(self, t: _Tensor, floor: float) -> _Tensor:
        """`t` when its values are >= floor, else a positive function of it."""
        if t.lo >= floor:
            return t
        t = self.bounded(t, 5.0)
        if self.ch.coin(0.5):
            return self.derived(
                f"er.exp({t.name}) + {floor}", t.shape, floor, math.exp(t.hi) + floor
            )
        return self.derived(f"{t.name} * {t.name} + {floor}", t.shape, floor, t.mag**2 + floor)

    def broadcast_partner(self, t: _Tensor) -> _Tensor:
        """A tensor whose shape broadcasts with `t`'s (from the pool, or a new input)."""

        def fits(u: _Tensor) -> bool:
            k = min(u.ndim, t.ndim)
            return u.ndim <= t.ndim and all(
                a == b or a == 1 for a, b in zip(u.shape[u.ndim - k :], t.shape[t.ndim - k :])
            )

        if self.ch.coin(0.6):
            u = self.operand(fits)
            if u is not None:
                return u
        k = self.ch.integer(0, t.ndim)
        shape = tuple(1 if self.ch.coin(0.2) else n for n in t.shape[t.ndim - k :])
        if self.ch.coin(0.25):
            v = self.ch.pick([0.5, -1.5, 0.0, 2.0])
            fn = self.ch.pick(["fill", "einsum"])
            if fn == "fill" or not shape:
                return self.emit(f"er.fill({shape!r}, {v}, DT)", shape, v, v)
            labs = LABELS[: len(shape)]
            sizes = ", ".join(f'"{c}": {n}' for c, n in zip(labs, shape))
            return self.emit(
                f'er.einsum("->{labs}", {v}, sizes={{{sizes}}}, dtype=DT)', shape, v, v
            )
        return self.new_input(shape)


# --- ops: each draws its operands and emits one or a few lines -------------------------------


def _unary(b: _Builder) -> None:
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


def _binary(b: _Builder) -> None:
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


def _update(b: _Builder) -> None:
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


def _einsum(b: _Builder) -> None:
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


def _matmul(b: _Builder) -> None:
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


def _reduce(b: _Builder) -> None:
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


def _layer(b: _Builder) -> None:
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


def _attention(b: _Builder) -> None:
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


def _structural(b: _Builder) -> None:
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


def _reshape_target(b: _Builder, shape: tuple[int, ...]) -> tuple[int, ...]:
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


OPS: list[tuple[Callable[[_Builder], None], int]] = [
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


def draw_case(ch: Choices, max_ops: int = 8) -> Case:
    """A random case: 1-3 inputs, up to `max_ops` ops, a loss over the unconsumed tensors."""
    dtype = ch.pick(["float64", "float32"])
    b = _Builder(ch, dtype)
    for _ in range(ch.integer(1, 3)):
        b.new_input(b.shape())
    table = [op for op, w in OPS for _ in range(w)]
    for _ in range(ch.integer(1, max_ops)):
        ch.pick(table)(b)
    # Tensors no later line reads are the loss's terms, so that every line reaches the loss.
    read = [set(re.findall(r"\w+", line.partition("=")[2])) for line in b.lines]
    sinks = [t for t in b.pool if not t.input and not any(t.name in words for words in read)] or [
        b.pool[-1]
    ]
    terms = []
    for t in sinks:
        t = b.bounded(t, 1e3) if math.isfinite(t.lo) else t
        r = b.new_input(t.shape, prefix="r")
        terms.append(f"er.sum({t.name} * {r.name})")
    b.lines.append("loss = " + " + ".join(terms))
    inner = [t.name for t in b.pool if not t.input]
    outputs = tuple(ch.sample(inner, ch.integer(0, min(2, len(inner)))))
    wrt = [t.name for t in b.pool if t.input]
    if inner and ch.coin(0.2):
        wrt.append(ch.pick(inner))
    return Case(
        dtype,
        tuple(b.inputs),
        tuple(b.lines),
        outputs,
        tuple(wrt),
        tuple(b.variables),
        ch.integer(0, 2**31 - 1),
    )
