"""Tensor sugar against numpy: broadcasting, matmul, layout, reductions, indexing, dtypes."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import einrel as er

U64 = 2.0**-53


def run(y, **feeds):
    return er.evaluate(y, feeds)


def f64(name, a):
    return er.input(name, np.shape(a), "float64")


# ---------------------------------------------------------------------------------------------
# Broadcasting like numpy
# ---------------------------------------------------------------------------------------------

SHAPES = [
    (),
    (1,),
    (3,),
    (1, 3),
    (2, 1),
    (2, 3),
    (1, 1),
    (4, 1, 3),
    (4, 2, 1),
    (1, 2, 3),
    (2, 1, 1, 3),
]
BINOPS = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "div": (lambda a, b: a / b, np.divide),
    "maximum": (er.maximum, np.maximum),
    "minimum": (er.minimum, np.minimum),
}


@pytest.mark.parametrize("op", sorted(BINOPS))
def test_broadcasting_like_numpy(op):
    fn, ref = BINOPS[op]
    rng = np.random.default_rng(0)
    for s1, s2 in itertools.product(SHAPES, SHAPES):
        try:
            want_shape = np.broadcast_shapes(s1, s2)
        except ValueError:
            with pytest.raises(er.ShapeError, match="broadcast"):
                fn(er.input("a", s1), er.input("b", s2))
            continue
        A, B = rng.uniform(0.5, 2, s1), rng.uniform(0.5, 2, s2)
        y = fn(f64("a", A), f64("b", B))
        assert y.shape == want_shape, (s1, s2)
        got = run(y, a=A, b=B)
        # one correctly rounded op on the same float64 inputs: bit-identical
        np.testing.assert_array_equal(got, ref(A, B), err_msg=f"{op} {s1} {s2}")
        assert er.broadcast_shapes(s1, s2) == want_shape


def test_python_numbers_and_variables_as_operands():
    X = np.array([[1.0, -2.0], [0.5, 4.0]])
    x = f64("x", X)
    cases = [
        (2 + x, 2 + X),
        (x - 3, X - 3),
        (3 - x, 3 - X),
        (x * 0.5, X * 0.5),
        (1 / x, 1 / X),
        (x / 4, X / 4),
        (x**2, X**2),
        (-x, -X),
        (er.maximum(x, 1.0), np.maximum(X, 1.0)),
        (er.minimum(0.0, x), np.minimum(0.0, X)),
    ]
    for y, want in cases:
        np.testing.assert_array_equal(run(y, x=X), want)
    y = x * er.var("lr") + er.var("b")
    np.testing.assert_array_equal(er.evaluate(y, {"x": X, "lr": 0.5, "b": 1.0}), X * 0.5 + 1)
    np.testing.assert_array_equal(er.evaluate(y, {"x": X, "lr": -1.0, "b": 0.0}), -X)


def test_unary_functions():
    X = np.linspace(0.1, 3, 12).reshape(3, 4)
    x = f64("x", X)
    np.testing.assert_allclose(run(er.exp(x), x=X), np.exp(X), rtol=4 * U64)
    np.testing.assert_allclose(run(er.log(x), x=X), np.log(X), rtol=4 * U64)
    np.testing.assert_allclose(run(er.sqrt(x), x=X), np.sqrt(X), rtol=U64)
    np.testing.assert_array_equal(run(er.abs(x - 1), x=X), np.abs(X - 1))
    np.testing.assert_array_equal(run(er.relu(x - 1), x=X), np.maximum(X - 1, 0))
    T = torch.from_numpy(X - 1.5)
    np.testing.assert_allclose(run(er.sigmoid(x - 1.5), x=X), torch.sigmoid(T), rtol=16 * U64)
    np.testing.assert_allclose(
        run(er.tanh(x - 1.5), x=X), torch.tanh(T), rtol=16 * U64, atol=4 * U64
    )
    np.testing.assert_allclose(run(er.silu(x - 1.5), x=X), TF.silu(T), rtol=16 * U64)
    np.testing.assert_allclose(
        run(er.gelu(x - 1.5), x=X), TF.gelu(T, approximate="tanh"), rtol=16 * U64, atol=4 * U64
    )
    # inside a join the same functions act on symbolic scalars
    y = er.einsum("ij->ij", x, join=lambda v: er.exp(v) * er.sqrt(v), agg=None)
    np.testing.assert_allclose(run(y, x=X), np.exp(X) * np.sqrt(X), rtol=8 * U64)
    w = er.elementwise(lambda a, b: er.where(a > b, a, b * 2), x, x.T.T * 0 + 1.5)
    np.testing.assert_array_equal(run(w, x=X), np.where(X > 1.5, X, 3.0))


# ---------------------------------------------------------------------------------------------
# matmul like np.matmul
# ---------------------------------------------------------------------------------------------

MATMUL_SHAPES = [
    ((3,), (3,)),
    ((3,), (3, 4)),
    ((2, 3), (3,)),
    ((2, 3), (3, 4)),
    ((5, 2, 3), (3, 4)),
    ((2, 3), (5, 3, 4)),
    ((5, 2, 3), (5, 3, 4)),
    ((5, 1, 2, 3), (4, 3, 2)),
    ((1, 2, 3), (6, 3, 2)),
    ((6, 1, 2, 3), (1, 5, 3, 2)),
    ((3,), (2, 5, 3, 4)),
    ((2, 5, 4, 3), (3,)),
]


@pytest.mark.parametrize(("sa", "sb"), MATMUL_SHAPES)
def test_matmul_like_numpy(sa, sb):
    rng = np.random.default_rng(0)
    A, B = rng.uniform(-1, 1, sa), rng.uniform(-1, 1, sb)
    a, b = f64("a", A), f64("b", B)
    want = np.matmul(A, B)
    for y in (a @ b, er.matmul(a, b)):
        assert y.shape == want.shape
        got = run(y, a=A, b=B)
        # sums of 3 products: error below 3 u sum |a||b|
        bound = 4 * U64 * np.matmul(np.abs(A), np.abs(B))
        assert np.all(np.abs(got - want) <= bound)


@pytest.mark.parametrize(("sa", "sb"), [((3,), (4,)), ((2, 3), (4, 2)), ((2, 2, 3), (3, 3, 2))])
def test_matmul_shape_errors(sa, sb):
    with pytest.raises(er.ShapeError, match="matmul"):
        er.input("a", sa) @ er.input("b", sb)


def test_matmul_of_a_scalar_is_an_error():
    with pytest.raises(er.ShapeError, match="0-d"):
        er.matmul(er.input("a", ()), er.input("b", (3,)))


# ---------------------------------------------------------------------------------------------
# Layout: transpose, reshape, getitem, slice, concat
# ---------------------------------------------------------------------------------------------


def test_transpose():
    X = np.arange(24.0).reshape(2, 3, 4)
    x = f64("x", X)
    cases = [
        (x.T, X.T),
        (x.transpose(), X.transpose()),
        (x.transpose(2, 0, 1), X.transpose(2, 0, 1)),
        (x.transpose((1, 0, 2)), X.transpose((1, 0, 2))),
        (x.transpose([0, 2, 1]), X.transpose([0, 2, 1])),
        (er.transpose(x, (-1, 0, 1)), np.transpose(X, (-1, 0, 1))),
        (er.transpose(x), np.transpose(X)),
        (x.transpose(np.int64(2), 0, 1), X.transpose(2, 0, 1)),
        (x.transpose(np.array([1, 2, 0])), X.transpose([1, 2, 0])),
    ]
    for y, want in cases:
        assert y.shape == want.shape
        np.testing.assert_array_equal(run(y, x=X), want)
    for bad in [(0, 1), (0, 0, 1), (0, 1, 3)]:
        with pytest.raises(er.ShapeError, match="transpose"):
            x.transpose(bad)


def test_reshape_with_minus_one():
    X = np.arange(24.0).reshape(2, 3, 4)
    x = f64("x", X)
    for shape in [(-1,), (4, -1), (2, -1, 2), (24,), (6, 4), -1, (1, 24), (2, 3, 4)]:
        want = X.reshape(shape)
        y = x.reshape(shape)
        assert y.shape == want.shape
        np.testing.assert_array_equal(run(y, x=X), want)
    np.testing.assert_array_equal(run(x.reshape(4, 6), x=X), X.reshape(4, 6))
    np.testing.assert_array_equal(run(er.reshape(x, [3, 8]), x=X), X.reshape(3, 8))
    assert x.reshape(2, 3, 4) is x  # no node for a reshape that changes nothing
    for bad in [(5, -1), (-1, -1), (7,), (0, 24), (2, 3, 5)]:
        with pytest.raises(er.ShapeError, match="reshape"):
            x.reshape(bad)
    s = er.input("s", (1, 1), "float64")
    np.testing.assert_array_equal(run(s.reshape(()), s=np.array([[2.5]])), np.array(2.5))


INDICES = [
    0,
    -1,
    (1, 2),
    (1, 2, 3),
    (-2, -1, 0),
    (slice(None), 1),
    (Ellipsis, 2),
    (Ellipsis,),
    (1, Ellipsis, 0),
    (slice(1, None), slice(None, 2), slice(-3, -1)),
    slice(0, 1),
    (slice(None), slice(1, 3), 2),
    (slice(0, 100),),
]


@pytest.mark.parametrize("index", INDICES, ids=str)
def test_getitem_like_numpy(index):
    X = np.arange(24.0).reshape(2, 3, 4)
    x = f64("x", X)
    y = x[index]
    want = X[index]
    assert y.shape == want.shape
    np.testing.assert_array_equal(run(y, x=X), want)


@pytest.mark.parametrize(
    "index",
    [(0, 0, 0, 0), 2, (0, 3), (slice(None, None, 2),), None, (slice(2, 1),), [0, 1]],
    ids=str,
)
def test_getitem_errors(index):
    x = er.input("x", (2, 3, 4))
    with pytest.raises(er.ShapeError):
        x[index]


def test_slice_and_concat():
    X = np.arange(24.0).reshape(2, 3, 4)
    Y = -np.arange(6.0).reshape(2, 3, 1)
    x, y = f64("x", X), f64("y", Y)
    s = er.slice(x, (0, 1, 1), (2, 3, 4))
    np.testing.assert_array_equal(run(s, x=X), X[0:2, 1:3, 1:4])
    assert er.slice(x, (0, 0, 0), (2, 3, 4)) is x
    c = er.concat([x, y, x], axis=-1)
    assert c.shape == (2, 3, 9)
    np.testing.assert_array_equal(er.evaluate(c, {"x": X, "y": Y}), np.concatenate([X, Y, X], -1))
    c0 = er.concat([x, x], axis=0)
    np.testing.assert_array_equal(run(c0, x=X), np.concatenate([X, X], 0))
    assert er.concat([x]) is x
    with pytest.raises(er.ShapeError, match="concat"):
        er.concat([x, y], axis=0)
    with pytest.raises(er.ShapeError, match="concat"):
        er.concat([x, er.input("z", (2, 3, 4), "float32")], axis=0)
    with pytest.raises(er.ShapeError, match="concat"):
        er.concat([])
    with pytest.raises(er.ShapeError, match="slice"):
        er.slice(x, (0, 2, 0), (2, 2, 4))


# ---------------------------------------------------------------------------------------------
# Reductions
# ---------------------------------------------------------------------------------------------

AXES = [None, 0, 1, -1, (0, 2), (), [1, 2], (0, 1, 2), np.int64(1), (np.int32(-1), 0)]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("fn", ["sum", "max", "min", "mean", "prod"])
def test_reductions_like_numpy(fn, axis, keepdims):
    X = np.random.default_rng(0).uniform(0.5, 1.5, (2, 3, 4))
    x = f64("x", X)
    np_axis = tuple(axis) if isinstance(axis, list) else axis
    want = getattr(np, fn)(X, axis=np_axis, keepdims=keepdims)
    y = getattr(x, fn)(axis, keepdims=keepdims)
    assert y.shape == want.shape
    got = run(y, x=X)
    if fn in ("max", "min"):
        np.testing.assert_array_equal(got, want)
    else:  # at most 24 terms of size <= 1.5 (products <= 1.5^24): 32 u relative
        np.testing.assert_allclose(got, want, rtol=32 * U64)
    if fn in ("sum", "mean"):
        via = er.sum(x, axis, keepdims) if fn == "sum" else er.mean(x, axis, keepdims)
        np.testing.assert_array_equal(run(via, x=X), got)


def test_reduction_axis_errors():
    x = er.input("x", (2, 3))
    for bad in [2, -3, (0, 0), (0, 5)]:
        with pytest.raises(er.ShapeError):
            x.sum(bad)


# ---------------------------------------------------------------------------------------------
# Composite layers against torch
# ---------------------------------------------------------------------------------------------


def test_layers_match_torch():
    rng = np.random.default_rng(0)
    X = rng.uniform(-3, 3, (4, 6))
    G, B = rng.uniform(0.5, 1.5, 6), rng.uniform(-1, 1, 6)
    T = np.eye(6)[[0, 5, 2, 2]]
    x, g, b, t = f64("x", X), f64("g", G), f64("b", B), f64("t", T)
    tx, tg, tb, tt = map(torch.from_numpy, (X, G, B, T))
    feeds = {"x": X, "g": G, "b": B, "t": T}
    pairs = [
        (er.softmax(x), torch.softmax(tx, -1)),
        (er.softmax(x, 0), torch.softmax(tx, 0)),
        (er.log_softmax(x), torch.log_softmax(tx, -1)),
        (er.log_softmax(x, axis=0), torch.log_softmax(tx, 0)),
        (er.rms_norm(x, g), TF.rms_norm(tx, (6,), tg, eps=1e-6)),
        (er.rms_norm(x), TF.rms_norm(tx, (6,), eps=1e-6)),
        (er.layer_norm(x, g, b), TF.layer_norm(tx, (6,), tg, tb, eps=1e-5)),
        (er.layer_norm(x), TF.layer_norm(tx, (6,), eps=1e-5)),
        (er.cross_entropy(x, t), TF.cross_entropy(tx, tt)),
        (er.mse(x, t), TF.mse_loss(tx, tt)),
    ]
    for y, want in pairs:
        got = er.evaluate(y, {k: v for k, v in feeds.items() if k in _names(y)})
        # a few dozen float64 ops on O(1) values, different association than torch's
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-13, atol=1e-14)
    # softmax stays finite for huge logits (the max is subtracted first)
    big = np.array([[1000.0, 0.0, -1000.0]])
    xb = f64("x", big)
    np.testing.assert_allclose(run(er.softmax(xb), x=big), [[1.0, 0.0, 0.0]], atol=1e-300)
    assert np.all(np.isfinite(run(er.log_softmax(xb), x=big)))
    np.testing.assert_allclose(run(er.log_softmax(xb), x=big), [[0.0, -1000.0, -2000.0]])


def _names(y):
    return {n.name for n in y.graph().inputs}


def test_layer_parameter_shape_errors():
    x = er.input("x", (2, 3))
    with pytest.raises(er.ShapeError, match="rms_norm"):
        er.rms_norm(x, er.input("w", (2,)))
    with pytest.raises(er.ShapeError, match="layer_norm"):
        er.layer_norm(x, er.input("w", (3,)), er.input("b", (2,)))
    with pytest.raises(er.ShapeError, match="cross_entropy"):
        er.cross_entropy(x, er.input("t", (3, 2)))
    with pytest.raises(er.ShapeError, match="mse"):
        er.mse(x, er.input("t", (3,)))


def test_fills_and_causal_mask():
    np.testing.assert_array_equal(run(er.zeros((2, 3))), np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(run(er.ones((2,), "float64")), np.ones(2))
    np.testing.assert_array_equal(run(er.fill((2, 2), 2.5, "float16")), np.full((2, 2), 2.5))
    assert run(er.fill((2, 2), 2.5, "float16")).dtype == np.float16
    m = run(er.causal_mask((2, 3, 3)))
    want = np.triu(np.full((3, 3), -np.inf), 1)
    want[np.tril_indices(3)] = 0
    np.testing.assert_array_equal(m, np.broadcast_to(want, (2, 3, 3)))
    with pytest.raises(er.ShapeError):
        er.causal_mask((3,))


def test_stop_gradient_is_the_identity_in_values():
    X = np.arange(6.0).reshape(2, 3)
    x = f64("x", X)
    np.testing.assert_array_equal(run(er.stop_gradient(x), x=X), X)
    np.testing.assert_array_equal(run(er.stop_gradient(x * 2), x=X), X * 2)


# ---------------------------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------------------------


def _bf16(a) -> np.ndarray:
    return torch.from_numpy(np.asarray(a, np.float32)).to(torch.bfloat16).float().numpy()


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_every_node_computes_in_float32_and_rounds(dtype):
    store = np.float16 if dtype == "float16" else np.float32
    rng = np.random.default_rng(0)
    A = rng.uniform(-4, 4, 4096).astype(store)
    B = rng.uniform(0.5, 4, 4096).astype(store)
    a, b = er.input("a", A.shape, dtype), er.input("b", B.shape, dtype)
    y = (a * b + a) / (b * b + 1) - a
    got = er.evaluate(y, {"a": A, "b": B})
    assert got.dtype == store

    def r(v):  # one node: compute in float32, round to the node's dtype
        return np.asarray(v, np.float32).astype(store)

    f = np.float32
    a32, b32 = A.astype(f), B.astype(f)
    t1 = r(a32 * b32)
    t2 = r(t1.astype(f) + a32)
    t3 = r(b32 * b32)
    t4 = r(t3.astype(f) + 1)
    t5 = r(t2.astype(f) / t4.astype(f))
    want = r(t5.astype(f) - a32)
    np.testing.assert_array_equal(got, want)
    if dtype == "float16":  # rounding per node is visible: computing all in float32 differs
        whole = r((a32 * b32 + a32) / (b32 * b32 + 1) - a32)
        assert np.any(whole != want)
    else:  # and float32 is not computed in float64
        wide = ((A.astype(np.float64) * B + A) / (B.astype(np.float64) * B + 1) - A).astype(f)
        assert np.any(wide != want)


def test_bfloat16_rounds_every_node_and_is_carried_as_float32():
    rng = np.random.default_rng(1)
    A = _bf16(rng.uniform(-4, 4, 4096))
    B = _bf16(rng.uniform(0.5, 4, 4096))
    a, b = er.input("a", A.shape, "bfloat16"), er.input("b", B.shape, "bfloat16")
    y = (a * b + a) / (b * b + 1)
    got = er.evaluate(y, {"a": A, "b": B})
    assert got.dtype == np.float32
    np.testing.assert_array_equal(_bf16(got), got)  # bfloat16-representable values
    ta, tb = torch.from_numpy(A).bfloat16(), torch.from_numpy(B).bfloat16()
    want = ((ta * tb + ta) / (tb * tb + 1)).float().numpy()  # torch: float32 compute per op
    np.testing.assert_array_equal(got, want)
    # a float32 feed for a bfloat16 input is rounded to bfloat16 on the way in
    raw = np.array([1.0 + 2.0**-12, 3.14159], np.float32)
    c = er.input("c", (2,), "bfloat16")
    np.testing.assert_array_equal(er.evaluate(c * 1.0, {"c": raw}), _bf16(raw))


def test_float16_reductions_and_transcendentals_round_once():
    rng = np.random.default_rng(2)
    X = rng.uniform(0, 1, (64, 32)).astype(np.float16)
    x = er.input("x", X.shape, "float16")
    s, e = er.evaluate([x.sum(1), er.exp(x)], {"x": X})
    assert s.dtype == e.dtype == np.float16
    ulp16 = 2.0**-10  # relative spacing of float16 values; the float32 work is far finer
    exact_sum = X.astype(np.float64).sum(1)
    np.testing.assert_allclose(s.astype(np.float64), exact_sum, rtol=ulp16 / 2 + 1e-6)
    np.testing.assert_allclose(
        e.astype(np.float64), np.exp(X.astype(np.float64)), rtol=ulp16 / 2 + 1e-6
    )


@pytest.mark.parametrize("src", ["float32", "float64", "float16", "bfloat16"])
@pytest.mark.parametrize("dst", ["float32", "float64", "float16", "bfloat16"])
def test_astype(src, dst):
    X = np.array([1.0 + 2.0**-9, -3.0e-3, 1234.5678, 0.1])
    storage = {
        "float32": np.float32,
        "float64": np.float64,
        "float16": np.float16,
        "bfloat16": np.float32,
    }
    feed = (_bf16(X) if src == "bfloat16" else X).astype(storage[src])
    x = er.input("x", X.shape, src)
    y = x.astype(dst)
    assert y.dtype == dst and (y is x) == (src == dst)
    got = er.evaluate(y, {"x": feed})
    assert got.dtype == storage[dst]
    want = feed.astype(np.float64)
    if dst == "bfloat16":
        want = _bf16(want.astype(np.float32)) if src != "float64" else _bf16(want)
    want = want.astype(storage[dst])
    if dst == "bfloat16" and src == "float64":
        # float64 -> float32 -> bfloat16 may round twice; within one bfloat16 ulp
        np.testing.assert_allclose(got, want, rtol=2.0**-8)
    else:
        np.testing.assert_array_equal(got, want)


def test_mixed_dtypes_are_rejected():
    with pytest.raises(er.ShapeError, match="dtype"):
        er.input("a", (2,), "float32") + er.input("b", (2,), "float64")
    with pytest.raises(er.ShapeError, match="dtype"):
        er.input("a", (2,), "int32")
    assert er.input("t", (2,), torch.float16).dtype == "float16"
    assert er.input("n", (2,), np.dtype("float64")).dtype == "float64"


def test_einsum_output_dtype():
    x = er.input("x", (3,), "float64")
    y = er.einsum("i->", x, dtype="float32")
    assert y.dtype == "float32"
    got = er.evaluate(y, {"x": np.array([0.1, 0.2, 0.3])})
    assert got.dtype == np.float32 and got == np.float32(0.1 + 0.2 + 0.3)


def test_tensor_properties():
    x = er.input("x", (2, 3), "float16")
    assert (x.shape, x.dtype, x.ndim, x.size, len(x), x.name) == ((2, 3), "float16", 2, 6, 2, "x")
    assert repr(x) == "Tensor(x: f16[2, 3])"
    assert repr(x + 1).startswith("Tensor(einsum: f16[2, 3]")
    with pytest.raises(er.EinrelError):
        bool(x)
    with pytest.raises(er.EinrelError, match="lazy"):
        np.asarray(x)
    with pytest.raises(er.EinrelError):
        len(er.input("s", ()))
    assert math.prod(x.shape) == x.size
