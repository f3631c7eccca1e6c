"""The block pool: dead buffers are reused, live ones (views, outputs) never are."""

from __future__ import annotations

import numpy as np

import einrel as er
from einrel.runtime.local import LocalEngine
from einrel.runtime.pool import BlockPool

F32 = np.dtype(np.float32)


def test_a_buffer_returns_with_its_last_user() -> None:
    pool = BlockPool()
    a = pool.take((4, 6), F32)
    pool.hold(a)
    view = a.reshape(6, 4)  # a reshape block shares the buffer
    pool.hold(view)
    pool.drop(a)
    assert pool.take((4, 6), F32) is not a  # the view still uses it
    pool.drop(view)
    assert pool.take((4, 6), F32) is a


def test_outputs_are_forgotten_and_idle_buffers_dropped() -> None:
    pool = BlockPool()
    out, dead = pool.take((3,), F32), pool.take((5,), F32)
    pool.hold(out)
    pool.hold(dead)
    pool.drop(dead)
    pool.end_run()  # `out` is the caller's now
    assert pool.nbytes == dead.nbytes
    assert pool.take((3,), F32) is not out
    assert pool.take((2,), F32) is not dead  # another shape gets a new buffer
    pool.end_run()  # `dead` was on offer for a whole run and nobody took it
    assert pool.nbytes == 0
    assert pool.take((5,), F32) is not dead


def test_foreign_arrays_are_ignored() -> None:
    pool = BlockPool()
    feed = np.ones(4, np.float32)
    pool.hold(feed[1:])
    pool.drop(feed[1:])
    pool.hold(3.0)
    assert pool.nbytes == 0


def test_repeated_runs_reuse_blocks_and_keep_earlier_results() -> None:
    x = er.input("x", (64, 32), "float64")
    w = er.input("w", (32, 48), "float64")
    h = er.relu(x @ w)
    loss = er.sum(h * h)
    gw = er.grad(loss, [w])[0]
    prog = er.compile([h.T @ h, w - 0.1 * gw], devices=er.cpu(2))
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((64, 32)), "w": rng.standard_normal((32, 48))}
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
    np.testing.assert_array_equal(prog.run(feeds)[0], np.eye(8))
