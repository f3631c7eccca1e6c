"""The scalar expression language: tracing, printing, simplification, derivatives, compilation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import einrel as er
from einrel.ir import scalar as S

U64 = 2.0**-53  # unit roundoff of float64
X0, X1, X2 = S.hole(0), S.hole(1), S.hole(2)


def neg(e: S.Expr) -> S.Expr:
    return S.Expr("neg", (e,))


def trace(fn, arity: int = 1) -> S.Expr:
    return S.trace(fn, arity)


# ---------------------------------------------------------------------------------------------
# Construction and tracing
# ---------------------------------------------------------------------------------------------


def test_constants_are_normalised_and_checked():
    assert S.const(2.0) == S.const(2) and S.const(2.0).value == 2
    assert isinstance(S.const(2.0).value, int)
    assert S.const(0.5).value == 0.5
    for bad in (True, 1j, "1", None):
        with pytest.raises(er.JoinError):
            S.const(bad)
    with pytest.raises(er.JoinError):
        S.var("not a name")
    with pytest.raises(er.JoinError):
        S.select("lt=", X0, X1, X0, X1)


def test_trace_builds_the_expected_tree():
    assert trace(lambda a, b: (a - b) ** 2, 2) == S.power(S.add(X0, neg(X1)), S.const(2))
    assert trace(lambda a: a) == X0
    assert trace(lambda a, b: 3.0, 2) == S.const(3)
    assert trace(lambda a: er.var("lr") * a) == S.mul(S.var("lr"), X0)
    # numpy ufuncs and einrel's functions both reach the scalar language
    assert trace(lambda a: np.exp(a)) == trace(lambda a: er.exp(a)) == S.exp(X0)
    assert trace(lambda a: np.maximum(a, 0)) == trace(lambda a: er.relu(a))
    assert trace(lambda a: np.square(a)) == S.mul(X0, X0)
    assert trace(lambda a: abs(a)) == S.maximum(X0, neg(X0))
    assert trace(lambda a: +a) == X0


def test_comparisons_act_as_numbers():
    # a comparison used as a number is 1.0 where it holds, else 0.0
    cases = {
        lambda a, b: (a > b) * a: lambda a, b: (a > b) * a,
        lambda a, b: a * (a > b): lambda a, b: a * (a > b),
        lambda a, b: (a > b) + a: lambda a, b: (a > b) + a,
        lambda a, b: 1 - (a > b): lambda a, b: 1 - (a > b),
        lambda a, b: (a <= b) - b: lambda a, b: (a <= b) - b,
        lambda a, b: (a != b) / 2: lambda a, b: (a != b) / 2,
        lambda a, b: 2 / ((a >= b) + 1): lambda a, b: 2 / ((a >= b) + 1),
        lambda a, b: -(a < b): lambda a, b: -1.0 * (a < b),
        lambda a, b: (a == a) * b: lambda a, b: b,
    }
    for fn, ref in cases.items():
        f = S.compile_numpy(trace(fn, 2), 2)
        for a, b in [(1.0, 2.0), (2.0, 1.0), (1.5, 1.5)]:
            assert float(f(np.float64(a), np.float64(b), {})) == float(ref(a, b))


def test_variables_and_holes():
    e = trace(lambda a, b: a * er.var("lr") + b * er.var("beta") + er.var("lr"), 2)
    assert e.variables() == {"lr", "beta"}
    assert e.holes() == {0, 1}
    f = S.compile_numpy(e, 2)
    assert f(2.0, 3.0, {"lr": 0.5, "beta": 2.0}) == 2.0 * 0.5 + 3.0 * 2.0 + 0.5
    assert f(2.0, 3.0, {"lr": 1.0, "beta": 0.0}) == 3.0
    assert S.substitute(e, {0: S.const(1)}).holes() == {1}
    assert S.remap_holes(S.add(X0, X1), {0: 1, 1: 0}) == S.add(X1, X0)


# ---------------------------------------------------------------------------------------------
# Printing
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fn", "arity", "text"),
    [
        (lambda a, b: (a - b) ** 2, 2, "(x0 - x1)**2"),
        (lambda a, b: a / (b + 1), 2, "x0/(x1 + 1)"),
        (lambda a, b, c: a / (b * c), 3, "x0/(x1*x2)"),
        (lambda a, b, c: a - (b - c), 3, "x0 - (x1 - x2)"),
        (lambda a, b: -(a + b), 2, "-(x0 + x1)"),
        (lambda a, b: (-a) ** b, 2, "(-x0)**x1"),
        (lambda a: a**-0.5, 1, "x0**(-0.5)"),
        (lambda a: 3 * er.sqrt(a), 1, "3*sqrt(x0)"),
        (lambda a: a - 2, 1, "x0 - 2"),
        (lambda a: 2**a, 1, "2**x0"),
        (lambda a: a * er.var("lr"), 1, "x0*$lr"),
        (lambda a, b: er.where(a > b, a, -b), 2, "where(x0 > x1, x0, -x1)"),
        (lambda a: er.exp(a) + er.log(a), 1, "exp(x0) + log(x0)"),
        (lambda a, b: er.maximum(a, b) - er.minimum(a, 0), 2, "max(x0, x1) - min(x0, 0)"),
        (lambda a: er.relu(a), 1, "max(x0, 0)"),
    ],
)
def test_printing(fn, arity, text):
    e = trace(fn, arity)
    assert str(e) == text
    assert repr(e) == f"Expr({text})"


def test_printed_form_evaluates_to_the_same_value():
    """The printed text is Python (with where/max/min/sqrt and $vars) that means the same."""
    env = {
        "where": lambda c, t, f: t if c else f,
        "max": max,
        "min": min,
        "sqrt": math.sqrt,
        "exp": math.exp,
        "log": math.log,
    }
    fns = [
        lambda a, b: (a - b) ** 2 / (1 + a * a) - (b - (a - 1)) * 3,
        lambda a, b: -(a + b) * 2 ** (-a) / er.sqrt(b * b + 1),
        lambda a, b: er.where(a >= b, a * er.var("lr"), -b) + er.maximum(a, -b),
        lambda a, b: er.exp(-a) / (er.log(b * b + 2) - 0.5) ** 3,
    ]
    for fn in fns:
        e = trace(fn, 2)
        text = str(e).replace("$", "v_")
        for a, b in [(0.3, -1.7), (-2.5, 0.25), (1.0, 1.0)]:
            got = eval(text, {**env, "x0": a, "x1": b, "v_lr": 0.1})
            want = S.compile_numpy(e, 2)(np.float64(a), np.float64(b), {"lr": 0.1})
            assert got == pytest.approx(float(want), rel=1e-14)


# ---------------------------------------------------------------------------------------------
# Simplification
# ---------------------------------------------------------------------------------------------

C = S.const


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        (S.add(C(2), C(3)), C(5)),
        (S.mul(C(2), S.add(C(1), C(0.5))), C(3)),
        (S.exp(C(0)), C(1)),
        (S.log(C(1)), C(0)),
        (S.power(C(2), C(10)), C(1024)),
        (S.maximum(C(2), C(-3)), C(2)),
        (neg(C(4)), C(-4)),
        (S.div(C(1), C(4)), C(0.25)),
        (S.mul(X0, C(1)), X0),
        (S.mul(C(1), X0), X0),
        # x+0, x*0 and 0/x stay: -0 + 0 is +0, and NaN or inf times 0 is NaN
        (S.add(X0, C(0)), S.add(X0, C(0))),
        (S.add(C(0), X0), S.add(X0, C(0))),
        (S.mul(X0, C(0)), S.mul(C(0), X0)),
        (S.mul(C(0), S.exp(X0)), S.mul(C(0), S.exp(X0))),
        (neg(neg(X0)), X0),
        (neg(neg(neg(X0))), neg(X0)),
        (S.power(X0, C(1)), X0),
        (S.power(X0, C(0)), C(1)),
        (S.div(X0, C(1)), X0),
        (S.div(C(0), X0), S.div(C(0), X0)),
        (S.maximum(X0, X0), X0),
        (S.mul(X0, C(-1)), neg(X0)),
        (S.mul(X0, C(3)), S.mul(C(3), X0)),
        (S.mul(C(2), S.mul(C(3), X0)), S.mul(C(2), S.mul(C(3), X0))),  # no reassociation
        (S.mul(neg(X0), neg(X1)), S.mul(X0, X1)),
        (S.add(C(2), X0), S.add(X0, C(2))),
        (S.power(S.power(X0, C(2)), C(3)), S.power(X0, C(6))),
        (S.power(S.power(X0, C(0.5)), C(2)), S.power(S.power(X0, C(0.5)), C(2))),
        (S.select("lt", C(1), C(2), X0, X1), X0),
        (S.select("gt", C(1), C(2), X0, X1), X1),
        (S.select("lt", X0, X1, X2, X2), X2),
        (S.add(S.mul(X0, S.add(C(1), C(-1))), S.mul(C(1), X1)), S.add(S.mul(C(0), X0), X1)),
    ],
)
def test_simplify_rules(expr, expected):
    assert S.simplify(expr) == expected
    assert S.simplify(S.simplify(expr)) == S.simplify(expr)


def test_simplify_leaves_what_numpy_would_make_nan_or_inf_unfolded_or_exact():
    # (-1) ** 0.5 is complex in Python; it must not crash the simplifier
    e = S.simplify(S.power(C(-1), C(0.5)))
    with np.errstate(invalid="ignore"):
        assert np.isnan(S.compile_numpy(e, 0)({}))
    assert S.simplify(S.div(C(1), C(0))) == C(math.inf)
    assert S.simplify(S.exp(C(1000))) == C(math.inf)
    assert S.simplify(S.log(C(0))) == C(-math.inf)
    # and such constants compile, for numpy and for torch
    e = trace(lambda a: er.maximum(a, -math.inf) + er.minimum(a, math.inf) * 0.5)
    x = np.array([-1e300, 0.0, 2.0])
    np.testing.assert_array_equal(S.compile_numpy(e, 1)(x, {}), 1.5 * x)
    np.testing.assert_array_equal(S.compile_torch(e, 1)(torch.from_numpy(x), {}).numpy(), 1.5 * x)
    assert S.compile_numpy(C(-math.inf), 0)({}) == -math.inf


def _expr_trees(n_holes: int, leaf_values=(-2.0, -0.5, 0.0, 1.0, 3.0)):
    leaves = st.one_of(
        st.integers(0, n_holes - 1).map(S.hole),
        st.sampled_from(leaf_values).map(S.const),
        st.just(S.var("v")),
    )

    def extend(children):
        binary = st.sampled_from(["add", "mul", "max", "min", "sub", "div"])
        unary = st.sampled_from(["neg", "exp", "sq", "cube"])
        return st.one_of(
            st.tuples(binary, children, children).map(
                lambda t: S.sub(t[1], t[2]) if t[0] == "sub" else S.Expr(t[0], (t[1], t[2]))
            ),
            st.tuples(unary, children).map(
                lambda t: {
                    "neg": lambda x: S.Expr("neg", (x,)),
                    "exp": S.exp,
                    "sq": lambda x: S.power(x, C(2)),
                    "cube": lambda x: S.power(S.power(x, C(1)), C(3)),
                }[t[0]](t[1])
            ),
            st.tuples(st.sampled_from(S.COMPARES), children, children, children, children).map(
                lambda t: S.select(*t)
            ),
        )

    return st.recursive(leaves, extend, max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(_expr_trees(2), st.integers(0, 2**32 - 1))
def test_simplify_preserves_values(e, seed):
    """Simplification only rewrites into equal values wherever the original is finite."""
    rng = np.random.default_rng(seed)
    xs = [rng.uniform(-2, 2, 16), rng.uniform(-2, 2, 16)]
    v = {"v": float(rng.uniform(-2, 2))}
    with np.errstate(all="ignore"):
        raw = np.broadcast_to(S.compile_numpy(e, 2)(*xs, v), (16,))
        simple = np.broadcast_to(S.compile_numpy(S.simplify(e), 2)(*xs, v), (16,))
    ok = np.isfinite(raw) & (np.abs(raw) < 1e100)
    assume(ok.any())
    # Folding constants and (x^a)^b -> x^(ab) change rounding by a few
    # ulps per rewrite (64 ulps of the largest magnitude covers a 12-leaf tree); exp turns a
    # relative change d of its argument t into |t| d, and values below 1e100 keep |t| < 231
    # (< 5.5 for an exp nested inside), so 64 ulps * 231 * 5.5 ~ 1e-11 relative bounds it.
    scale = np.abs(raw[ok]).max() + 1
    np.testing.assert_allclose(simple[ok], raw[ok], rtol=1e-11, atol=64 * U64 * scale)


SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 2.5, -3.0, 1e300])


@settings(max_examples=200, deadline=None)
@given(_expr_trees(2, leaf_values=(-2.0, -1.0, 0.0, 0.5, 1.0, 2.0)))
def test_simplify_keeps_nan_and_inf(e):
    """On NaN, +-inf and zeros the simplified expression is NaN, inf or finite exactly where the
    original is (x*0 of NaN is NaN in numpy, and so in einrel)."""
    xs = np.meshgrid(SPECIALS, SPECIALS)
    xs = [xs[0].ravel(), xs[1].ravel()]
    v = {"v": 0.0}
    with np.errstate(all="ignore"):
        raw = np.broadcast_to(S.compile_numpy(e, 2)(*xs, v), xs[0].shape)
        simple = np.broadcast_to(S.compile_numpy(S.simplify(e), 2)(*xs, v), xs[0].shape)
    np.testing.assert_array_equal(np.isnan(simple), np.isnan(raw))
    np.testing.assert_array_equal(np.isposinf(simple), np.isposinf(raw))
    np.testing.assert_array_equal(np.isneginf(simple), np.isneginf(raw))


@pytest.mark.parametrize("x", [math.nan, math.inf, -math.inf])
def test_times_zero_is_not_simplified_away(x):
    t = er.input("t", (3,), "float64")
    tv = np.array([x, 1.0, 0.0])
    with np.errstate(all="ignore"):
        cases = [
            (t * 0, tv * 0),
            (0 * t, 0 * tv),
            (0.0 / t, 0.0 / tv),
            (t + 0.0, tv + 0.0),
            (er.einsum("a->a", t, join=lambda a: a * 0 + a * 0, agg=None), tv * 0 + tv * 0),
        ]
        for y, want in cases:
            for got in (er.evaluate(y, {"t": tv}), er.compile(y).run({"t": tv})):
                np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------------------------------------
# Symbolic derivatives against central finite differences
# ---------------------------------------------------------------------------------------------

POS = (0.5, 2.0)  # domain for log, sqrt and fractional powers
ANY = (-2.0, 2.0)

DERIVATIVE_CASES = {
    "add": (lambda a, b: a + b, [ANY, ANY]),
    "sub": (lambda a, b: a - b, [ANY, ANY]),
    "mul": (lambda a, b: a * b, [ANY, ANY]),
    "neg": (lambda a: -a, [ANY]),
    "div": (lambda a, b: a / b, [ANY, POS]),
    "pow-int": (lambda a: a**3, [ANY]),
    "pow-neg": (lambda a: a**-2, [POS]),
    "pow-frac": (lambda a: a**2.5, [POS]),
    "pow-var-exponent": (lambda a, b: a**b, [POS, ANY]),
    "pow-const-base": (lambda a: 3.0**a, [ANY]),
    "exp": (lambda a: er.exp(a), [ANY]),
    "log": (lambda a: er.log(a), [POS]),
    "sqrt": (lambda a: er.sqrt(a), [POS]),
    "rsqrt": (lambda a: a**-0.5, [POS]),
    "max": (lambda a, b: er.maximum(a, b), [ANY, ANY]),
    "min": (lambda a, b: er.minimum(a, b), [ANY, ANY]),
    "where": (lambda a, b: er.where(a > b, a * b, a + 2 * b), [ANY, ANY]),
    "where-le": (lambda a, b: er.where(a <= 0.3, er.exp(b), a * a), [ANY, ANY]),
    "abs": (lambda a: abs(a), [ANY]),
    "relu": (lambda a: er.relu(a), [ANY]),
    "sigmoid": (lambda a: er.sigmoid(a), [(-8.0, 8.0)]),
    "silu": (lambda a: er.silu(a), [(-8.0, 8.0)]),
    "tanh": (lambda a: er.tanh(a), [(-4.0, 4.0)]),
    "gelu": (lambda a: er.gelu(a), [(-4.0, 4.0)]),
    "composite": (lambda a, b: er.sigmoid(a * b) * er.log(b) / (1 + a * a), [ANY, POS]),
    "variable": (lambda a, b: a * er.var("lr") + (b - er.var("lr")) ** 2, [ANY, ANY]),
}


@pytest.mark.parametrize("name", sorted(DERIVATIVE_CASES))
def test_derivative_matches_central_differences(name):
    fn, domains = DERIVATIVE_CASES[name]
    n = len(domains)
    e = trace(fn, n)
    rng = np.random.default_rng(sum(map(ord, name)))
    xs = [rng.uniform(lo, hi, 200) for lo, hi in domains]
    v = {"lr": 0.7}
    f = S.compile_numpy(e, n)
    h = 1e-5
    for i in range(n):
        d = S.derivative(e, i)
        got = np.broadcast_to(S.compile_numpy(d, n)(*xs, v), xs[0].shape)
        up = [x + h if k == i else x for k, x in enumerate(xs)]
        dn = [x - h if k == i else x for k, x in enumerate(xs)]
        fd = (f(*up, v) - f(*dn, v)) / (2 * h)
        # Central differences err by h^2/6 |f'''| + u |f| / h; on these domains |f|, |f'''| < 30,
        # so both terms stay below 1e-9: 1e-7 leaves a 100x margin.
        np.testing.assert_allclose(got, fd, rtol=1e-7, atol=1e-7, err_msg=f"{name} d/dx{i}")


def test_derivative_is_simplified_and_exact_for_polynomials():
    e = trace(lambda a, b: a * a * b + 3 * a, 2)
    d0 = S.compile_numpy(S.derivative(e, 0), 2)
    for a, b in [(2.0, 5.0), (-1.5, 0.25), (0.0, 3.0)]:
        assert d0(a, b, {}) == 2 * a * b + 3  # small integers and dyadics: exact
    assert S.derivative(e, 1) == S.mul(X0, X0)
    assert S.derivative(e, 2) == C(0)  # a hole the expression does not use
    assert S.derivative(trace(lambda a: er.var("lr") * a), 0) == S.var("lr")
    assert S.derivative(S.const(3), 0) == C(0)


def test_derivative_conventions_at_kinks():
    """At a tie the first side of max/min takes the derivative, except against a constant
    side (relu's kink), where it is 0 as in torch; tanh and sigmoid stay right at 0."""

    def d(fn, i, *at):
        e = trace(fn, len(at))
        return float(S.compile_numpy(S.derivative(e, i), len(at))(*map(np.float64, at), {}))

    assert d(lambda a: er.relu(a), 0, 0.0) == 0.0
    assert d(lambda a: er.relu(a), 0, 1e-300) == 1.0
    assert d(lambda a: er.relu(a), 0, -1e-300) == 0.0
    assert d(lambda a, b: er.maximum(a, b), 0, 1.0, 1.0) == 1.0
    assert d(lambda a, b: er.maximum(a, b), 1, 1.0, 1.0) == 0.0
    assert d(lambda a, b: er.minimum(a, b), 0, 1.0, 1.0) == 1.0
    assert d(lambda a, b: er.minimum(a, b), 1, 1.0, 1.0) == 0.0
    assert d(lambda a: abs(a), 0, 0.0) == 1.0
    assert d(lambda a: er.tanh(a), 0, 0.0) == 1.0
    assert d(lambda a: er.sigmoid(a), 0, 0.0) == 0.25
    assert d(lambda a, b: er.where(a > b, a, 2 * a), 0, 1.0, 1.0) == 2.0


# ---------------------------------------------------------------------------------------------
# Sugar against its mathematical definition, and without overflow
# ---------------------------------------------------------------------------------------------


def _gelu_ref(x: float) -> float:
    return 0.5 * x * (1 + math.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


SUGAR = {
    "sigmoid": (er.sigmoid, lambda x: 1 / (1 + math.exp(-x)) if x > -700 else 0.0),
    "silu": (er.silu, lambda x: x / (1 + math.exp(-x)) if x > -700 else -0.0),
    "tanh": (er.tanh, math.tanh),
    "gelu": (er.gelu, _gelu_ref),
    "relu": (er.relu, lambda x: max(x, 0.0)),
    "abs": (er.abs, abs),
    "sqrt": (er.sqrt, math.sqrt),
    "exp": (er.exp, math.exp),
    "log": (er.log, math.log),
}


@pytest.mark.parametrize("name", sorted(SUGAR))
def test_sugar_matches_its_definition(name):
    fn, ref = SUGAR[name]
    e = trace(fn)
    xs = np.concatenate([np.linspace(-30, 30, 601), [-1e-8, 1e-8, -150.0, 150.0, 99.9, 100.1]])
    if name in ("sqrt", "log"):
        xs = np.abs(xs) + 1e-3
    want = np.array([ref(float(x)) for x in xs])
    got_np = np.asarray(S.compile_numpy(e, 1)(xs, {}))
    got_t = S.compile_torch(e, 1)(torch.from_numpy(xs), {}).numpy()
    # Each sugar is a handful of correctly rounded ops plus exp (a few ulps); einrel's tanh
    # forms 1 - e^{-2|x|}, whose absolute error is one ulp of 1: 16 ulps relative plus 4 ulps
    # absolute covers both.
    np.testing.assert_allclose(got_np, want, rtol=16 * U64, atol=4 * U64)
    np.testing.assert_allclose(got_t, want, rtol=16 * U64, atol=4 * U64)


def test_gelu_matches_torch():
    x = torch.linspace(-12, 12, 2401, dtype=torch.float64)
    want = torch.nn.functional.gelu(x, approximate="tanh").numpy()
    got = S.compile_numpy(trace(er.gelu), 1)(x.numpy(), {})
    np.testing.assert_allclose(got, want, rtol=16 * U64, atol=4 * U64)
    xt = x.clone().requires_grad_(True)
    torch.nn.functional.gelu(xt, approximate="tanh").sum().backward()
    dgot = S.compile_numpy(S.derivative(trace(er.gelu), 0), 1)(x.numpy(), {})
    np.testing.assert_allclose(dgot, xt.grad.numpy(), rtol=1e-13, atol=1e-14)


LARGE = [-1e30, -1e20, -1e10, -1e4, -100.0, -20.0, 20.0, 100.0, 1e4, 1e10, 1e20, 1e30]
ASYMPTOTE = {  # name: (value at -inf, value at +inf, derivative at -inf, at +inf)
    "sigmoid": (lambda x: 0.0, lambda x: 1.0, 0.0, 0.0),
    "tanh": (lambda x: -1.0, lambda x: 1.0, 0.0, 0.0),
    "silu": (lambda x: 0.0, lambda x: x, 0.0, 1.0),
    "gelu": (lambda x: 0.0, lambda x: x, 0.0, 1.0),
    "relu": (lambda x: 0.0, lambda x: x, 0.0, 1.0),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(ASYMPTOTE))
def test_sugar_for_large_arguments_has_no_overflow_or_nan(name, dtype):
    e = trace(getattr(er, name))
    d = S.derivative(e, 0)
    lo, hi, dlo, dhi = ASYMPTOTE[name]
    xs = np.array([x for x in LARGE if abs(x) < np.finfo(dtype).max], dtype=dtype)
    big = np.abs(xs) >= 100  # far enough out that every function sits on its asymptote
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        val = np.broadcast_to(S.compile_numpy(e, 1)(xs, {}), xs.shape)
        der = np.broadcast_to(S.compile_numpy(d, 1)(xs, {}), xs.shape)
    tval = S.compile_torch(e, 1)(torch.from_numpy(xs), {}).numpy()
    tder = np.broadcast_to(S.compile_torch(d, 1)(torch.from_numpy(xs), {}).numpy(), xs.shape)
    for got in (val, der, tval, tder):
        assert np.all(np.isfinite(got)), (name, dtype, xs, got)
    # beyond |x| = 100 the distance to the asymptote is below e^-100 ~ 4e-44 (x e^-x for silu)
    tol = {"rtol": 4 * np.finfo(dtype).eps, "atol": 1e-40}
    want = np.array([lo(x) if x < 0 else hi(x) for x in xs.astype(np.float64)])
    np.testing.assert_allclose(val[big], want[big], **tol)
    np.testing.assert_allclose(tval[big], want[big], **tol)
    dwant = np.where(xs < 0, dlo, dhi)
    np.testing.assert_allclose(der[big], dwant[big], **tol)
    np.testing.assert_allclose(tder[big], dwant[big], **tol)


# ---------------------------------------------------------------------------------------------
# numpy and torch kernels agree with each other and with math
# ---------------------------------------------------------------------------------------------

KERNEL_CASES = {
    "square-diff": (lambda a, b: (a - b) ** 2, lambda a, b, v: (a - b) ** 2),
    "ratio": (lambda a, b: a / (b * b + 1), lambda a, b, v: a / (b * b + 1)),
    "pow": (lambda a, b: (a * a + 1) ** (b / 3), lambda a, b, v: (a * a + 1) ** (b / 3)),
    "powers": (
        lambda a, b: a**2 + (b * b + 1) ** 0.5 + (a * a + 2) ** -0.5 + 1 / (b * b + 3) + a**3,
        lambda a, b, v: a**2 + (b * b + 1) ** 0.5 + (a * a + 2) ** -0.5 + 1 / (b * b + 3) + a**3,
    ),
    "max-min": (
        lambda a, b: er.maximum(a, b) * er.minimum(a, 0.25) + er.maximum(-1.0, b),
        lambda a, b, v: max(a, b) * min(a, 0.25) + max(-1.0, b),
    ),
    "where": (
        lambda a, b: er.where(a >= b, er.exp(a), 0.1) + er.where(b < 0, 0.3, 0.7),
        lambda a, b, v: (math.exp(a) if a >= b else 0.1) + (0.3 if b < 0 else 0.7),
    ),
    "log-sqrt": (
        lambda a, b: er.log(a * a + 0.5) * er.sqrt(b * b + 2),
        lambda a, b, v: math.log(a * a + 0.5) * math.sqrt(b * b + 2),
    ),
    "variables": (
        lambda a, b: a * er.var("lr") - b / er.var("t"),
        lambda a, b, v: a * v["lr"] - b / v["t"],
    ),
    "variable-only-subterms": (
        lambda a, b: a * er.exp(er.var("lr")) + er.maximum(er.var("t"), 2.0) * b,
        lambda a, b, v: a * math.exp(v["lr"]) + max(v["t"], 2.0) * b,
    ),
    "variable-condition": (
        lambda a, b: er.where(er.var("t") > 1.0, a, b) + er.where(er.var("lr") > 1.0, a, b),
        lambda a, b, v: (a if v["t"] > 1.0 else b) + (a if v["lr"] > 1.0 else b),
    ),
    "variable-vs-hole": (
        lambda a, b: er.minimum(a, er.var("lr")) + er.maximum(er.sqrt(er.var("t")), b),
        lambda a, b, v: min(a, v["lr"]) + max(math.sqrt(v["t"]), b),
    ),
    "constant": (lambda a, b: 2.5, lambda a, b, v: 2.5),
    "sugar": (
        lambda a, b: er.gelu(a) + er.silu(b) * er.tanh(a - b) + er.sigmoid(a * b),
        lambda a, b, v: (
            _gelu_ref(a) + b / (1 + math.exp(-b)) * math.tanh(a - b) + 1 / (1 + math.exp(-a * b))
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(KERNEL_CASES))
def test_numpy_and_torch_kernels_agree_with_math(name):
    fn, ref = KERNEL_CASES[name]
    e = trace(fn, 2)
    rng = np.random.default_rng(sum(map(ord, name)))
    a, b = rng.uniform(-3, 3, 64), rng.uniform(-3, 3, 64)
    v = {"lr": 0.3, "t": 1.7}
    want = np.array([ref(x, y, v) for x, y in zip(a, b)])
    got_np = np.broadcast_to(S.compile_numpy(e, 2)(a, b, v), a.shape)
    raw_t = S.compile_torch(e, 2)(torch.from_numpy(a), torch.from_numpy(b), v)
    if isinstance(raw_t, torch.Tensor):  # (a join without holes gives a float)
        # float64 in, float64 out: no detour through torch's float32 default dtype
        assert raw_t.dtype == torch.float64
    got_t = np.broadcast_to(np.asarray(raw_t), a.shape)
    # a dozen ops of at most a few ulps each (exp/log/pow), on values of order 10
    np.testing.assert_allclose(got_np, want, rtol=64 * U64, atol=64 * U64)
    np.testing.assert_allclose(got_t, want, rtol=64 * U64, atol=64 * U64)
    np.testing.assert_allclose(got_t, got_np, rtol=64 * U64, atol=64 * U64)
    # and with other values of the run-time variables, the same compiled function
    v2 = {"lr": 2.0, "t": 0.5}
    want2 = np.array([ref(x, y, v2) for x, y in zip(a, b)])
    np.testing.assert_allclose(
        np.broadcast_to(S.compile_numpy(e, 2)(a, b, v2), a.shape), want2, rtol=64 * U64, atol=0
    )
    got_t2 = S.compile_torch(e, 2)(torch.from_numpy(a), torch.from_numpy(b), v2)
    np.testing.assert_allclose(
        np.broadcast_to(np.asarray(got_t2), a.shape), want2, rtol=64 * U64, atol=0
    )


def test_parts_without_holes_follow_numpy_rules():
    """Run-time variables are Python floats; arithmetic on them alone must still give inf/nan
    like numpy (not ZeroDivisionError, OverflowError or complex numbers)."""
    lr = S.var("lr")
    cases = [
        (S.mul(X0, S.div(C(1), lr)), {"lr": 0.0}, math.inf),
        (S.mul(X0, S.div(lr, S.sub(lr, lr))), {"lr": -1.0}, -math.inf),
        (S.mul(X0, S.power(lr, C(3))), {"lr": 1e200}, math.inf),
        (S.mul(X0, S.exp(lr)), {"lr": 1e4}, math.inf),
        (S.add(X0, S.power(lr, C(0.5))), {"lr": -4.0}, math.nan),
        (S.add(X0, S.power(lr, C(1.5))), {"lr": -4.0}, math.nan),
        (S.add(X0, S.log(lr)), {"lr": 0.0}, -math.inf),
    ]
    x = np.ones(3)
    for e, v, want in cases:
        with np.errstate(all="ignore"):
            got_np = np.asarray(S.compile_numpy(e, 1)(x, v))
            got_t = S.compile_torch(e, 1)(torch.from_numpy(x), v).numpy()
        np.testing.assert_array_equal(got_np, np.full(3, want), err_msg=str(e))
        np.testing.assert_array_equal(got_t, np.full(3, want), err_msg=str(e))


def test_float32_kernels_agree():
    e = trace(lambda a, b: er.gelu(a) * er.sigmoid(b) + (a - b) ** 2 / (1 + b * b), 2)
    rng = np.random.default_rng(0)
    a = rng.uniform(-4, 4, 256).astype(np.float32)
    b = rng.uniform(-4, 4, 256).astype(np.float32)
    ref = S.compile_numpy(e, 2)(a.astype(np.float64), b.astype(np.float64), {})
    got_np = S.compile_numpy(e, 2)(a, b, {})
    got_t = S.compile_torch(e, 2)(torch.from_numpy(a), torch.from_numpy(b), {})
    assert got_t.dtype == torch.float32
    # about 30 float32 ops on values of order 10: 256 float32 ulps of the scale is generous
    tol = 256 * 2.0**-24 * (np.abs(ref) + 1)
    assert np.all(np.abs(np.asarray(got_np, np.float64) - ref) <= tol)
    assert np.all(np.abs(got_t.numpy().astype(np.float64) - ref) <= tol)


def test_source_is_python_with_shared_subexpressions():
    e = trace(lambda a: er.exp(a * a) + er.exp(a * a) * a, 1)
    src = S.source(e, 1)
    assert src.startswith("def f(x0, v):")
    assert src.count("np.exp") == 1  # the common subexpression is computed once
    assert "torch.exp" in S.source(e, 1, "torch")


def test_product_factors():
    c, f = S.product_factors(trace(lambda a, b: -2 * er.exp(a) * b * a, 2))
    assert c == -2 and set(f) == {0, 1} and f[1] == X1
    assert math.isnan(S.product_factors(trace(lambda a, b: a + b, 2))[0])
    assert math.isnan(S.product_factors(trace(lambda a: a * er.var("lr"), 1))[0])
    assert S.is_product_of_holes(trace(lambda a, b, c: a * b * c, 3), 3)
    assert not S.is_product_of_holes(trace(lambda a, b: 2 * a * b, 2), 2)
    assert not S.is_product_of_holes(trace(lambda a, b: a * a, 2), 2)
