"""The block pool: dead buffers are reused, live ones (views, outputs) never are."""

from __future__ import annotations

import numpy as np

import einrel as er
from einrel.runtime.local import LocalEngine
from einrel.runtime.pool import BlockPool

F32 = np.dtype(np.float32)
BIG, BIG_T, OTHER = (256, 512), (512, 256), (512, 512)  # over MIN_BYTES in float32


def test_a_buffer_returns_with_its_last_user() -> None:
    pool = BlockPool()
    a = pool.take(BIG, F32)
    assert a is not None
    pool.hold(a)
    view = a.reshape(BIG_T)  # a reshape block shares the buffer
    pool.hold(view)
    pool.drop(a)
    assert pool.take(BIG, F32) is not a  # the view still uses it
    pool.drop(view)
    assert pool.take(BIG, F32) is a


def test_outputs_are_forgotten_and_idle_buffers_dropped() -> None:
    pool = BlockPool()
    out, dead = pool.take(BIG, F32), pool.take(OTHER, F32)
    assert out is not None and dead is not None
    pool.hold(out)
    pool.hold(dead)
    pool.drop(dead)
    pool.end_run()  # `out` is the caller's now
    assert pool.nbytes == dead.nbytes
    assert pool.take(BIG, F32) is not out
    assert pool.take(BIG_T, F32) is not dead  # another shape gets a new buffer
    pool.end_run()  # `dead` was on offer for a whole run and nobody took it
    assert pool.nbytes == 0
    assert pool.take(OTHER, F32) is not dead


def test_small_blocks_are_left_to_malloc() -> None:
    pool = BlockPool()
    assert pool.take((4, 6), F32) is None


def test_foreign_arrays_are_ignored() -> None:
    pool = BlockPool()
    assert pool.take(BIG, F32) is not None
    feed = np.ones(BIG, np.float32)
    pool.hold(feed[1:])
    pool.drop(feed[1:])
    pool.hold(3.0)
    pool.end_run()
    assert pool.nbytes == 0


def test_repeated_runs_reuse_blocks_and_keep_earlier_results() -> None:
    x = er.input("x", (512, 256), "float64")
    w = er.input("w", (256, 384), "float64")
    h = er.relu(x @ w)
    loss = er.sum(h * h)
    gw = er.grad(loss, [w])[0]
    prog = er.compile([h.T @ h, w - 0.1 * gw], devices=er.cpu(2))
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((512, 256)), "w": rng.standard_normal((256, 384))}
    want = er.evaluate([h.T @ h, w - 0.1 * gw], feeds)
    first = prog.run(feeds)
    engine = prog.engine
    assert isinstance(engine, LocalEngine) and engine.pool is not None
    taken = engine.pool.reused
    second = prog.run(feeds)
    assert engine.pool.reused > taken
    for a, b, c in zip(first, second, want):
        np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(b, c, rtol=1e-12, atol=1e-12)
    prog.close()
    assert engine.pool.nbytes == 0


def test_pooling_can_be_turned_off() -> None:
    x = er.input("x", (8, 8), "float64")
    prog = er.compile(x @ x, devices=er.cpu(2), engine_options={"reuse_buffers": False})
    assert prog.engine.pool is None
    feeds = {"x": np.eye(8)}
    np.testing.assert_array_equal(prog.run(feeds), np.eye(8))


def test_a_scatter_into_a_reused_buffer_starts_from_zero() -> None:
    # Three keys make it the chunked rule; its dense result is a pooled block, and a run on
    # other tuples must not see the rows that the last run's tuples wrote.
    n, d = 4096, 32
    t = er.relation("T", keys={"t": 64, "u": n, "i": 8}, nnz=64, dtype="float64")
    q = er.input("Q", (8, d), "float64")
    grad = er.einsum("tui,id->ud", t, q)
    prog = er.compile(2.0 * grad, devices=er.cpu(2))
    rng = np.random.default_rng(0)
    feeds = {"Q": rng.standard_normal((8, d))}
    engine = prog.engine
    assert isinstance(engine, LocalEngine) and engine.pool is not None
    for run in range(3):
        idx = np.stack([np.arange(64), rng.integers(0, n, 64), rng.integers(0, 8, 64)])
        feeds["T"] = er.coo(idx, rng.standard_normal(64))
        want = np.zeros((n, d))
        np.add.at(want, idx[1], feeds["T"].values[:, None] * feeds["Q"][idx[2]])
        np.testing.assert_allclose(prog.run(feeds), 2.0 * want, rtol=1e-12, atol=1e-12)
        if run == 0:
            taken = engine.pool.reused
    assert engine.pool.reused > taken
    prog.close()
