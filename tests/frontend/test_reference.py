"""The reference interpreter: feeds, outputs, dtypes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import einrel as er
from einrel.frontend.reference import bind_feeds, interpret


def test_single_tensor_and_lists():
    x = er.input("x", (2,), "float64")
    X = np.array([1.0, 2.0])
    y = x * 3
    single = er.evaluate(y, {"x": X})
    assert isinstance(single, np.ndarray)
    np.testing.assert_array_equal(single, [3.0, 6.0])
    both = er.evaluate([y, x, y], {"x": X})
    assert isinstance(both, list) and len(both) == 3
    np.testing.assert_array_equal(both[0], both[2])
    np.testing.assert_array_equal(both[1], X)
    pair = er.evaluate((y, y * 2), {"x": X})
    np.testing.assert_array_equal(pair[1], [6.0, 12.0])


def test_outputs_are_writable_arrays_of_the_storage_dtype():
    storage = {
        "float32": np.float32,
        "float64": np.float64,
        "float16": np.float16,
        "bfloat16": np.float32,
    }
    for dtype, np_dtype in storage.items():
        x = er.input("x", (2, 3), dtype)
        outs = [x + 1, x * 2, er.exp(x), x.sum(1), x.max(0), x.T, x[0], x.reshape(6)]
        res = er.evaluate(outs, {"x": np.ones((2, 3), np_dtype)})
        for y, r in zip(outs, res):
            assert r.dtype == np_dtype and r.shape == y.shape
            assert r.flags.writeable
            r[...] = 0  # results can be modified in place


def test_feeds_are_converted_from_lists_numbers_and_torch():
    x = er.input("x", (2,), "float32")
    s = er.input("s", (), "float64")
    y = x * 2
    z = s + 1
    np.testing.assert_array_equal(er.evaluate(y, {"x": [1.5, 2.5]}), [3.0, 5.0])
    assert er.evaluate(z, {"s": 2.0}) == 3.0
    assert er.evaluate(z, {"s": np.float64(2.0)}) == 3.0
    np.testing.assert_array_equal(
        er.evaluate(y, {"x": torch.tensor([1.0, 2.0], dtype=torch.float32)}), [2.0, 4.0]
    )


def test_run_time_variables():
    x = er.input("x", (3,), "float64")
    y = er.einsum("i->i", x, join=lambda v: v * er.var("lr") + er.var("step"), agg=None)
    g = er.build_graph([y])
    assert g.variables == ("lr", "step")
    X = np.array([1.0, 2.0, 3.0])
    for lr, step in [(0.5, 1), (-2.0, 10), (np.float32(0.25), np.int64(3)), (np.array(2.0), 0)]:
        (got,) = interpret(g, {"x": X, "lr": lr, "step": step})
        np.testing.assert_array_equal(got, X * float(lr) + float(step))


def test_bind_feeds_returns_arrays_by_node_id():
    a = er.input("a", (2,), "float64")
    b = er.input("b", (1,), "float32")
    g = er.build_graph([a * er.var("v"), b])
    arrays, variables = bind_feeds(g, {"a": np.zeros(2), "b": np.ones(1, np.float32), "v": 3})
    assert set(arrays) == {n.id for n in g.inputs}
    assert variables == {"v": 3.0}


def test_bfloat16_feeds():
    x = er.input("x", (3,), "bfloat16")
    raw = np.array([1.0 + 2.0**-10, -(2.0**-20) * 3, 3.0], np.float32)
    got = er.evaluate(x * 1, {"x": raw})
    want = torch.from_numpy(raw).bfloat16().float().numpy()
    np.testing.assert_array_equal(got, want)
    # a float64 array for a bfloat16 input is rejected with the reason
    with pytest.raises(er.FeedError, match="dtype"):
        er.evaluate(x * 1, {"x": np.zeros(3, np.float64)})


def test_intermediates_do_not_change_the_outputs():
    """interpret frees intermediates after their last use; outputs that are also used later
    must survive."""
    x = er.input("x", (3,), "float64")
    a = x * 2
    b = a + 1
    c = b * a
    X = np.array([1.0, 2.0, 3.0])
    ra, rb, rc = er.evaluate([a, b, c], {"x": X})
    np.testing.assert_array_equal(ra, 2 * X)
    np.testing.assert_array_equal(rb, 2 * X + 1)
    np.testing.assert_array_equal(rc, (2 * X + 1) * 2 * X)


def test_large_custom_einsum_in_chunks():
    """A non-BLAS einsum whose join space exceeds the chunk size still gives the exact answer."""
    rng = np.random.default_rng(0)
    A, B = rng.uniform(-1, 1, (64, 128)), rng.uniform(-1, 1, (128, 600))
    a, b = er.input("a", A.shape, "float64"), er.input("b", B.shape, "float64")
    y = er.einsum("ij,jk->ik", a, b, join=lambda p, q: (p - q) ** 2)  # 4.9M join elements
    got = er.evaluate(y, {"a": A, "b": B})
    want = (A * A).sum(1)[:, None] - 2 * A @ B + (B * B).sum(0)[None]
    # sums of 128 terms of size <= 4: rounding below 256 u * 512 ~ 3e-11
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


def test_outputs_never_alias_feeds():
    """Outputs that are inputs (astype to the same dtype, a one-tensor concat, the input
    itself) or views of them come back as copies: writing into a result leaves the feed alone."""
    x = er.input("x", (4, 3), "float64")
    xv = np.arange(12.0).reshape(4, 3)
    for y in (x.astype("float64"), er.concat([x]), x, x.reshape(12), x[1:3], x.T):
        for got in (er.evaluate(y, {"x": xv}), er.compile(y).run({"x": xv})):
            assert not np.may_share_memory(got, xv), y
            got[...] = -1.0
            np.testing.assert_array_equal(xv, np.arange(12.0).reshape(4, 3))
