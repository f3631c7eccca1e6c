"""The extended einsum: parsing, validation, and evaluation against numpy and brute force.

Random einsums (1-4 operands, rank <= 5, every aggregation, random joins from the scalar
language) are checked against `np.einsum` (product join, sum) or against a literal loop over the
join space that evaluates the join with Python's `math` and tracks a first-order bound on the
rounding error of every value (running error analysis). The comparison then allows exactly what
floating point can explain: twice that bound (einrel's and the reference's own rounding).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import einrel as er
from einrel import kernels
from einrel.ir.einsum import AGGS, make_einsum, parse_spec
from einrel.kernels import fused

DATA_DIR = Path(__file__).resolve().parents[1] / "data"

U64 = 2.0**-53
U32 = 2.0**-24
TRANSCENDENTAL_ULPS = 4  # exp/log/pow of numpy's SIMD loops and of libm: within a few ulps


# ---------------------------------------------------------------------------------------------
# A float with a running bound on its rounding error
# ---------------------------------------------------------------------------------------------


class Val:
    """A value and a first-order bound `e` on the absolute error of computing it in floating
    point with unit roundoff `u` (each op contributes u |result|, transcendentals a few ulps,
    and the errors of the operands propagate through the op's derivative)."""

    __slots__ = ("e", "u", "v")

    def __init__(self, v: float, e: float, u: float) -> None:
        self.v, self.e, self.u = float(v), float(e), u

    def lift(self, o: Any) -> Val:
        return o if isinstance(o, Val) else Val(o, self.u * abs(o), self.u)

    def _new(self, r: float, e: float, ulps: float = 1.0) -> Val:
        return Val(r, e + ulps * self.u * abs(r), self.u)

    def __add__(self, o: Any) -> Val:
        o = self.lift(o)
        return self._new(self.v + o.v, self.e + o.e)

    __radd__ = __add__

    def __sub__(self, o: Any) -> Val:
        o = self.lift(o)
        return self._new(self.v - o.v, self.e + o.e)

    def __rsub__(self, o: Any) -> Val:
        return self.lift(o) - self

    def __mul__(self, o: Any) -> Val:
        o = self.lift(o)
        return self._new(self.v * o.v, abs(self.v) * o.e + abs(o.v) * self.e + self.e * o.e)

    __rmul__ = __mul__

    def __truediv__(self, o: Any) -> Val:
        o = self.lift(o)
        r = self.v / o.v
        return self._new(r, (self.e + abs(r) * o.e) / (abs(o.v) - o.e))

    def __rtruediv__(self, o: Any) -> Val:
        return self.lift(o) / self

    def __pow__(self, p: float) -> Val:
        assert not isinstance(p, Val)
        r = self.v**p
        d = abs(p * self.v ** (p - 1)) if p != 1 else 1.0
        return self._new(r, d * self.e, TRANSCENDENTAL_ULPS)

    def __neg__(self) -> Val:
        return Val(-self.v, self.e, self.u)

    def _cmp(self, o: Any) -> float:
        return o.v if isinstance(o, Val) else o

    def __gt__(self, o: Any) -> bool:
        return self.v > self._cmp(o)

    def __lt__(self, o: Any) -> bool:
        return self.v < self._cmp(o)

    def __ge__(self, o: Any) -> bool:
        return self.v >= self._cmp(o)

    def __le__(self, o: Any) -> bool:
        return self.v <= self._cmp(o)


class NumOps:
    """einrel's scalar functions on `Val`s, computed with `math`."""

    def __init__(self, u: float) -> None:
        self.u = u

    def val(self, x: Any) -> Val:
        return x if isinstance(x, Val) else Val(x, self.u * abs(x), self.u)

    def exp(self, x: Any) -> Val:
        x = self.val(x)
        r = math.exp(x.v)
        return x._new(r, r * x.e, TRANSCENDENTAL_ULPS)

    def log(self, x: Any) -> Val:
        x = self.val(x)
        return x._new(math.log(x.v), x.e / (x.v - x.e), TRANSCENDENTAL_ULPS)

    def sqrt(self, x: Any) -> Val:
        x = self.val(x)
        r = math.sqrt(x.v)
        return x._new(r, x.e / (2 * r))

    def maximum(self, a: Any, b: Any) -> Val:
        a, b = self.val(a), self.val(b)
        return Val(max(a.v, b.v), max(a.e, b.e), self.u)

    def minimum(self, a: Any, b: Any) -> Val:
        a, b = self.val(a), self.val(b)
        return Val(min(a.v, b.v), max(a.e, b.e), self.u)

    def where(self, cond: bool, t: Any, f: Any) -> Val:
        return self.val(t if cond else f)

    def relu(self, x: Any) -> Val:
        return self.maximum(x, 0.0)

    def sigmoid(self, x: Any) -> Val:
        x = self.val(x)
        r = 1 / (1 + math.exp(-x.v)) if x.v > -700 else 0.0
        # einrel: e^-|x| then one add and one divide; the reference: the same count
        return x._new(r, r * (1 - r) * x.e, 2 * TRANSCENDENTAL_ULPS)

    def tanh(self, x: Any) -> Val:
        x = self.val(x)
        r = math.tanh(x.v)
        # einrel forms 1 - e^{-2|x|}: absolute error of a few ulps of 1 even where tanh is tiny
        e = (1 - r * r) * x.e + 2 * TRANSCENDENTAL_ULPS * self.u * (abs(r) + 1)
        return Val(r, e, self.u)


class SymOps:
    """The same functions on symbolic scalars: what a user's join calls."""

    exp, log, sqrt = staticmethod(er.exp), staticmethod(er.log), staticmethod(er.sqrt)
    maximum, minimum = staticmethod(er.maximum), staticmethod(er.minimum)
    relu, sigmoid, tanh = staticmethod(er.relu), staticmethod(er.sigmoid), staticmethod(er.tanh)

    @staticmethod
    def where(cond: Any, t: Any, f: Any) -> Any:
        return er.where(cond, t, f)


# ---------------------------------------------------------------------------------------------
# Random joins: trees over the scalar language that stay finite on inputs in [-1, 1]
# ---------------------------------------------------------------------------------------------

CONSTS = (-1.5, -0.5, 0.1, 0.25, 1.0, 2.0)
COND_CONSTS = (-0.25, 0.0, 0.5)  # exact in float32 too, so both sides take the same branch
BINARY = ("add", "sub", "mul", "max", "min", "sqdiff", "div")
UNARY = ("neg", "relu", "sigmoid", "tanh", "square", "cube", "logp", "sqrtp", "rsqrtp", "abs")


def join_trees(arity: int, depth: int) -> st.SearchStrategy:
    hole = st.tuples(st.just("x"), st.integers(0, arity - 1))
    leaf = st.one_of(hole, hole, hole, st.tuples(st.just("c"), st.sampled_from(CONSTS)))
    if depth == 0:
        return leaf
    sub = join_trees(arity, depth - 1)
    cond = st.tuples(
        st.sampled_from(("lt", "gt", "le", "ge")),
        st.integers(0, arity - 1),
        st.one_of(st.integers(0, arity - 1), st.sampled_from(COND_CONSTS)),
    )
    return st.one_of(
        leaf,
        st.tuples(st.sampled_from(BINARY), sub, sub),
        st.tuples(st.sampled_from(UNARY), sub),
        # exp only of shallow arguments, so values stay below e^4 and products stay finite
        st.tuples(st.just("exp"), join_trees(arity, min(depth - 1, 1))),
        st.tuples(st.just("where"), cond, sub, sub),
    )


def build(tree: tuple, xs: Sequence[Any], ops: Any) -> Any:
    """Evaluate a join tree on symbolic scalars (tracing) or on `Val`s (the reference)."""
    kind = tree[0]
    if kind == "x":
        return xs[tree[1]]
    if kind == "c":
        return tree[1]
    if kind == "where":
        cmp, i, j = tree[1]
        a, b = xs[i], (xs[j] if isinstance(j, int) else j)
        c = {"lt": a < b, "gt": a > b, "le": a <= b, "ge": a >= b}[cmp]
        return ops.where(c, build(tree[2], xs, ops), build(tree[3], xs, ops))
    args = [build(t, xs, ops) for t in tree[1:]]
    if kind in BINARY:
        a, b = args
        return {
            "add": lambda: a + b,
            "sub": lambda: a - b,
            "mul": lambda: a * b,
            "max": lambda: ops.maximum(a, b),
            "min": lambda: ops.minimum(a, b),
            "sqdiff": lambda: (a - b) ** 2,
            "div": lambda: a / (b * b + 1),
        }[kind]()
    (a,) = args
    return {
        "neg": lambda: -a,
        "relu": lambda: ops.relu(a),
        "sigmoid": lambda: ops.sigmoid(a),
        "tanh": lambda: ops.tanh(a),
        "square": lambda: a * a,
        "cube": lambda: a**3,
        "logp": lambda: ops.log(a * a + 1),
        "sqrtp": lambda: ops.sqrt(a * a + 1),
        "rsqrtp": lambda: (a * a + 1) ** -0.5,
        "abs": lambda: ops.maximum(a, -a),
        "exp": lambda: ops.exp(a),
    }[kind]()


def product_join(*xs: Any) -> Any:
    r = xs[0]
    for x in xs[1:]:
        r = r * x
    return r


# ---------------------------------------------------------------------------------------------
# Random specs
# ---------------------------------------------------------------------------------------------

LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@st.composite
def random_einsums(draw: Any, agg: str, max_join: int = 512) -> dict:
    n_labels = draw(st.one_of(st.integers(0, 2), st.integers(2, 6), st.integers(4, 6)))
    labels = draw(
        st.lists(st.sampled_from(LETTERS), min_size=n_labels, max_size=n_labels, unique=True)
    )
    size = {lab: draw(st.integers(1, 4)) for lab in labels}
    assume(math.prod(size.values()) <= max_join)
    k = draw(st.integers(1, 4))
    inputs = [
        "".join(draw(st.lists(st.sampled_from(labels), unique=True, max_size=5))) if labels else ""
        for _ in range(k)
    ]
    used = list(dict.fromkeys("".join(inputs)))
    unused = [lab for lab in labels if lab not in used]
    out = draw(st.lists(st.sampled_from(used), unique=True)) if used else []
    bcast = draw(st.lists(st.sampled_from(unused), unique=True)) if unused else []
    output = draw(st.permutations(out + bcast)) if out + bcast else []
    output = "".join(output)
    agg_space = math.prod(size[lab] for lab in used if lab not in output)
    if agg == "prod":
        assume(agg_space <= 16)  # keeps products of values up to ~e^8 finite
    tree = draw(st.one_of(st.none(), join_trees(k, draw(st.integers(0, 3)))))
    return {
        "spec": ",".join(inputs) + "->" + output,
        "inputs": inputs,
        "output": output,
        "size": size,
        "bcast": {lab: size[lab] for lab in bcast},
        "agg": agg,
        "tree": tree,
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def brute_force(
    inputs: Sequence[str],
    output: str,
    size: dict[str, int],
    join: Callable[..., Any],
    agg: str,
    arrays: Sequence[np.ndarray],
    u: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Loop over the join space; return the result and a bound on its rounding error."""
    agg_labels = list(dict.fromkeys(lab for lab in "".join(inputs) if lab not in output))
    out_shape = tuple(size[lab] for lab in output)
    ref = np.zeros(out_shape)
    err = np.zeros(out_shape)
    vals = [np.asarray(a, dtype=np.float64) for a in arrays]
    for oi in itertools.product(*(range(n) for n in out_shape)):
        terms: list[Val] = []
        for ai in itertools.product(*(range(size[lab]) for lab in agg_labels)):
            env = dict(zip(output, oi)) | dict(zip(agg_labels, ai))
            args = [
                Val(a[tuple(env[lab] for lab in labs)], 0.0, u) for a, labs in zip(vals, inputs)
            ]
            t = join(*args)
            terms.append(t if isinstance(t, Val) else Val(t, u * abs(t), u))
        n = len(terms)
        if not agg_labels:
            v, e = terms[0].v, terms[0].e
        elif agg == "sum":
            v = math.fsum(t.v for t in terms)
            # any summation order (pairwise, BLAS, opt_einsum's intermediate contractions)
            # errs by at most (n + rank) u sum |t|
            e = sum(t.e for t in terms) + (n + len(inputs)) * u * sum(abs(t.v) for t in terms)
        elif agg == "prod":
            v = math.prod(t.v for t in terms)
            e = n * u * abs(v)
            for k, t in enumerate(terms):
                others = math.prod(abs(s.v) for j, s in enumerate(terms) if j != k)
                e += t.e * others
        else:
            pick = max if agg == "max" else min
            v = pick(t.v for t in terms)
            e = max(t.e for t in terms)
        ref[oi] = v
        err[oi] = e
    return ref, err


def check_close(
    got: np.ndarray, ref: np.ndarray, err: np.ndarray, floor: float, big: float = np.inf
) -> None:
    """|got - ref| <= 2 * bound (einrel's error and the reference's), plus an underflow floor;
    where the exact value is beyond the dtype's largest finite `big`, got must be inf."""
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == ref.shape
    tol = 2 * err + floor
    overflow = np.abs(ref) - tol > big
    borderline = ~overflow & (np.abs(ref) + tol >= big)  # may round either way
    both_inf = np.isinf(ref) & (got == ref)
    diff = np.where(both_inf, 0.0, np.abs(got - ref))
    bad = np.where(overflow, got != np.copysign(np.inf, ref), ~(diff <= tol)) & ~borderline
    assert not bad.any(), (
        f"{int(bad.sum())} element(s) off: got {got[bad][:5]}, want {ref[bad][:5]}, "
        f"bound {2 * err[bad][:5] + floor}"
    )


def run_random(case: dict, dtype: str) -> None:
    inputs, output, size = case["inputs"], case["output"], case["size"]
    rng = np.random.default_rng(case["seed"])
    np_dtype = np.float64 if dtype == "float64" else np.float32
    arrays = [rng.uniform(-1, 1, [size[lab] for lab in labs]).astype(np_dtype) for labs in inputs]
    ts = [er.input(f"x{k}", a.shape, dtype) for k, a in enumerate(arrays)]
    tree = case["tree"]
    k = len(inputs)
    if tree is None:
        sym_join, num_join = None, product_join
    else:

        def sym_join(*xs):
            return build(tree, xs, SymOps)

        u_ops = NumOps(U64 if dtype == "float64" else U32)

        def num_join(*xs):
            return build(tree, xs, u_ops)

    y = er.einsum(case["spec"], *ts, join=sym_join, agg=case["agg"], sizes=case["bcast"] or None)
    got = er.evaluate(y, {f"x{i}": a for i, a in enumerate(arrays)})
    assert got.dtype == np_dtype
    u = U64 if dtype == "float64" else U32
    floor = 1e-300 if dtype == "float64" else 1e-37
    big = float(np.finfo(np_dtype).max)
    einsum_labels = set("".join(inputs))
    if tree is None and case["agg"] == "sum" and not case["bcast"]:
        # product join, sum: numpy's einsum, with the bound (n + k) u einsum(|x|...)
        want = np.einsum(case["spec"], *[a.astype(np.float64) for a in arrays])
        absum = np.einsum(case["spec"], *[np.abs(a.astype(np.float64)) for a in arrays])
        n = math.prod(size[lab] for lab in einsum_labels if lab not in output)
        check_close(got, np.asarray(want), (n + k) * u * np.asarray(absum), floor, big)
        return
    ref, err = brute_force(inputs, output, size, num_join, case["agg"], arrays, u)
    check_close(got, ref, err, floor, big)


def test_all_aggregations_are_covered():
    assert set(AGGS) == {"sum", "prod", "max", "min"}


@pytest.mark.parametrize("agg", AGGS)
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_random_einsums_float64(agg, data):
    run_random(data.draw(random_einsums(agg)), "float64")


@pytest.mark.parametrize("agg", AGGS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_random_einsums_float32(agg, data):
    """float32: the same bound with float32's unit roundoff (2^-24) against a float64 reference."""
    run_random(data.draw(random_einsums(agg, max_join=256)), "float32")


def test_brute_force_reference_detects_errors():
    """The reference and its bound are tight enough to see a one-in-a-million error."""
    x = np.array([[0.3, -0.7], [0.2, 0.9]])
    ref, err = brute_force(["ij"], "i", {"i": 2, "j": 2}, lambda a: a * a, "sum", [x], U64)
    np.testing.assert_allclose(ref, (x * x).sum(1), rtol=1e-15)
    check_close((x * x).sum(1), ref, err, 0.0)
    with pytest.raises(AssertionError):
        check_close((x * x).sum(1) * (1 + 1e-12), ref, err, 0.0)
    # beyond the largest finite value only inf is right
    check_close(np.array([np.inf, -np.inf]), np.array([1e39, -1e39]), np.zeros(2), 0.0, 3.4e38)
    with pytest.raises(AssertionError):
        check_close(np.array([3.3e38]), np.array([1e39]), np.zeros(1), 0.0, 3.4e38)


def test_chunked_aggregation_matches_unchunked(monkeypatch):
    """Large join spaces are aggregated in chunks of one label; the result must not change."""
    rng = np.random.default_rng(1)
    arrays = {"a": rng.uniform(-1, 1, (3, 7)), "b": rng.uniform(-1, 1, (7, 5))}
    a, b = er.input("a", (3, 7), "float64"), er.input("b", (7, 5), "float64")
    outs = [
        er.einsum("ij,jk->ik", a, b, join=lambda x, y: (x - y) ** 2),
        er.einsum("ij,jk->ik", a, b, agg="max"),
        er.einsum("ij,jk->k", a, b, agg="min", join=lambda x, y: x + y),
        er.einsum("ij,jk->i", a, b, agg="prod", join=lambda x, y: 1 + x * y / 4),
    ]
    whole = er.evaluate(outs, arrays)
    monkeypatch.setattr(fused, "CHUNK_ELEMENTS", 8)
    chunked = er.evaluate(outs, arrays)
    for w, c in zip(whole, chunked):
        # only the association of the sum and product changes: a few ulps
        np.testing.assert_allclose(c, w, rtol=64 * U64, atol=64 * U64)
    want_sq = ((arrays["a"][:, :, None] - arrays["b"][None]) ** 2).sum(1)
    np.testing.assert_allclose(chunked[0], want_sq, rtol=64 * U64)


# ---------------------------------------------------------------------------------------------
# opt_einsum's test expressions
# ---------------------------------------------------------------------------------------------


def readme_sizes(readme: str) -> dict[str, int]:
    """The label sizes listed in the data set's README (opt_einsum's tests fix them)."""
    block = [ln for ln in readme.splitlines() if re.fullmatch(r"\s{4}(\w \d+\s*)+", ln)]
    return {lab: int(n) for ln in block for lab, n in re.findall(r"(\w) (\d+)", ln)}


def test_opt_einsum_contract_cases():
    folder = DATA_DIR / "einsum-cases"
    sizes = readme_sizes((folder / "README.md").read_text())
    assert len(sizes) == 20 and sizes["a"] == 2 and sizes["C"] == 9
    lines = (folder / "opt_einsum_contract_cases.txt").read_text().split("\n")
    cases = [ln.strip() for ln in lines if ln.strip()]
    assert len(cases) == 69
    rng = np.random.default_rng(0)
    raised, wrong = [], []
    for case in cases:
        operands = case.split("->")[0].split(",")
        arrays = [rng.random([sizes[c] for c in labs]) for labs in operands]
        ts = [er.input(f"x{k}", a.shape, "float64") for k, a in enumerate(arrays)]
        try:
            y = er.einsum(case, *ts)
        except er.SpecError as e:
            raised.append(case)
            assert case in str(e) or repr(case) in str(e), str(e)
            continue
        got = er.evaluate(y, {f"x{k}": a for k, a in enumerate(arrays)})
        want = np.einsum(case, *arrays)
        absum = want  # all operands are non-negative: no cancellation
        n_terms = math.prod(
            sizes[c] for c in set("".join(operands)) if c not in parse_out(case, operands)
        )
        tol = (n_terms + len(operands)) * U64 * np.abs(absum)
        if got.shape != want.shape or not np.all(np.abs(got - want) <= tol + 1e-300):
            wrong.append(case)
    repeated = [c for c in cases if any(len(set(o)) != len(o) for o in c.split("->")[0].split(","))]
    assert wrong == []
    assert raised == repeated
    assert len(repeated) == 22


def parse_out(case: str, operands: list[str]) -> str:
    if "->" in case:
        return case.split("->")[1]
    counts = {c: "".join(operands).count(c) for c in set("".join(operands))}
    return "".join(sorted(c for c, n in counts.items() if n == 1))


# ---------------------------------------------------------------------------------------------
# Parsing and the Einsum record
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "ranks", "inputs", "output"),
    [
        ("ij,jk->ik", [2, 2], ["ij", "jk"], "ik"),
        ("ij,jk", [2, 2], ["ij", "jk"], "ik"),
        ("ba,ca", [2, 2], ["ba", "ca"], "bc"),
        ("Ba,aC", [2, 2], ["Ba", "aC"], "BC"),
        ("ij->", [2], ["ij"], ""),
        (" i j , j k -> i k ", [2, 2], ["ij", "jk"], "ik"),
        (",ab,->ab", [0, 2, 0], ["", "ab", ""], "ab"),
        ("...ij,...jk->...ik", [4, 3], ["YZij", "Zjk"], "YZik"),
        ("...ij,jk", [3, 2], ["Zij", "jk"], "Zik"),
        ("i...->...", [3], ["iYZ"], "YZ"),
    ],
)
def test_parse_spec(spec, ranks, inputs, output):
    assert parse_spec(spec, ranks) == (inputs, output)


def test_implicit_output_follows_numpy():
    rng = np.random.default_rng(0)
    for spec, shapes in [
        ("ba,ca", [(2, 3), (4, 3)]),
        ("Ba,aC", [(2, 3), (3, 4)]),
        ("dcb,ad", [(2, 3, 4), (5, 2)]),
        ("...ij,...jk", [(3, 2, 3), (3, 3, 2)]),
        ("i,i", [(3,), (3,)]),
    ]:
        arrays = [rng.random(s) for s in shapes]
        ts = [er.input(f"x{k}", s, "float64") for k, s in enumerate(shapes)]
        got = er.evaluate(er.einsum(spec, *ts), {f"x{k}": a for k, a in enumerate(arrays)})
        want = np.einsum(spec, *arrays)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-14)


def test_einsum_record():
    op = make_einsum("ij,jk->kzi", [(2, 3), (3, 4)], join=lambda a, b: (a - b) ** 2, sizes={"z": 5})
    assert op.inputs == ("ij", "jk")
    assert op.output == "kzi"
    assert op.labels == "kzij"
    assert op.agg_labels == "j"
    assert op.broadcast_labels == "z"
    assert op.join_shape == (4, 5, 2, 3)
    assert op.out_shape == (4, 5, 2)
    assert op.input_shapes == ((2, 3), (3, 4))
    assert op.spec == "ij,jk->kzi"
    assert op.arity == 2
    assert op.agg == "sum"
    assert not op.is_contraction and not op.is_elementwise
    assert str(op) == "einsum[ij,jk->kzi | k=4 z=5 i=2 j=3 agg=sum join=(x0 - x1)**2]"
    small = op.with_sizes({"j": 2, "k": 1})
    assert small.join_shape == (1, 5, 2, 2) and small.input_shapes == ((2, 2), (2, 1))
    assert small.join == op.join and small.spec == op.spec
    # flops: one join op count per join point plus one aggregation step
    assert op.flops() == math.prod(op.join_shape) * (3 + 1)
    plain = make_einsum("ij,jk->ik", [(2, 3), (3, 4)])
    assert plain.is_contraction and str(plain) == "einsum[ij,jk->ik | i=2 k=4 j=3 agg=sum]"
    ew = make_einsum("ij->ji", [(2, 3)], agg=None)
    assert ew.is_elementwise and ew.agg is None
    # an aggregation given for an einsum that aggregates nothing is dropped
    assert make_einsum("ij->ij", [(2, 3)], agg="max").agg is None


def test_scalar_operands_are_inlined_into_the_join():
    x = er.input("x", (3,), "float64")
    y = er.einsum(",i,->i", 2.0, x, er.var("lr"), join=lambda a, b, c: a * b + c)
    assert y.node.inputs == (x.node,)
    assert y.node.attrs.spec == "i->i"
    assert str(y.node.attrs.join) == "2*x0 + $lr"
    got = er.evaluate(y, {"x": np.array([1.0, 2.0, 3.0]), "lr": 0.5})
    np.testing.assert_array_equal(got, [2.5, 4.5, 6.5])
    only = er.einsum(",->", 2.0, 3.0)
    assert only.shape == () and er.evaluate(only, {}) == 6.0


def test_broadcast_output_labels():
    x = er.input("x", (2,), "float64")
    y = er.einsum("i->ji", x, sizes={"j": 3})
    X = np.array([1.5, -2.0])
    np.testing.assert_array_equal(er.evaluate(y, {"x": X}), np.broadcast_to(X, (3, 2)))
    z = er.einsum("i->j", x, sizes={"j": 4}, agg="max")
    np.testing.assert_array_equal(er.evaluate(z, {"x": X}), [1.5] * 4)
    c = er.einsum("->ij", 7.0, sizes={"i": 2, "j": 2})
    np.testing.assert_array_equal(er.evaluate(c, {}), np.full((2, 2), 7.0))


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("agg", AGGS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_writing_into_a_given_buffer_changes_nothing(agg, dtype, data):
    """`kernels.einsum(..., out=buf)` (how arena engines call it) fills `buf` with exactly the
    bits the allocating call returns, for GEMMs, fused joins and chunked aggregations alike."""
    case = data.draw(random_einsums(agg, max_join=256))
    rng = np.random.default_rng(case["seed"])
    size = case["size"]
    np_dtype = kernels.storage_dtype(dtype)
    arrays = [
        rng.uniform(-1, 1, [size[lab] for lab in labs]).astype(np_dtype) for labs in case["inputs"]
    ]
    ts = [er.input(f"x{k}", a.shape, dtype) for k, a in enumerate(arrays)]
    tree = case["tree"]
    join = None if tree is None else (lambda *xs: build(tree, xs, SymOps))
    y = er.einsum(case["spec"], *ts, join=join, agg=agg, sizes=case["bcast"] or None)
    op = y.node.attrs
    want = kernels.einsum(op, arrays, {}, dtype)
    buf = np.full(want.shape, np.nan, dtype=np_dtype)
    got = kernels.einsum(op, arrays, {}, dtype, out=buf)
    assert got is buf
    np.testing.assert_array_equal(buf.reshape(-1).view(np.uint8), want.reshape(-1).view(np.uint8))


@pytest.mark.parametrize(
    "spec", ["ij,jk->ik", "ij,jk->ki", "bij,bjk->bik", "bij,bjk->ibk", "ij,kj->ik", "ij,ik->jk"]
)
def test_large_gemms_write_into_a_given_buffer(spec):
    """Products big enough for the torch GEMM path, in layouts it writes directly and ones it
    has to transpose afterwards."""
    size = {"b": 2, "i": 96, "j": 80, "k": 72}
    rng = np.random.default_rng(0)
    ins = spec.split("->")[0]
    ts, arrays = [], []
    for k, labs in enumerate(ins.split(",")):
        arrays.append(rng.standard_normal([size[c] for c in labs]).astype(np.float32))
        ts.append(er.input(f"x{k}", arrays[-1].shape, "float32"))
    op = er.einsum(spec, *ts).node.attrs
    want = kernels.einsum(op, arrays, {}, "float32")
    buf = np.full(want.shape, np.nan, dtype=np.float32)
    assert kernels.einsum(op, arrays, {}, "float32", out=buf) is buf
    np.testing.assert_array_equal(buf, want)
    np.testing.assert_allclose(want, np.einsum(spec, *arrays), rtol=1e-4, atol=1e-4)
