"""er.optim against torch.optim, step for step, on a two-layer network: the reference
interpreter in float64 (to 1e-12) and a compiled program on two devices in float32."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import einrel as er
from einrel.errors import EinrelError

SHAPES = {"w0": (6, 8), "w1": (8, 3)}


def _model(dtype: str):
    x = er.input("x", (5, 6), dtype)
    y = er.input("y", (5, 3), dtype)
    params = [er.input(k, s, dtype) for k, s in SHAPES.items()]
    h = er.tanh(er.einsum("bi,io->bo", x, params[0]))
    loss = er.mse(er.einsum("bi,io->bo", h, params[1]), y)
    return loss, params


def _data(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {"x": rng.standard_normal((5, 6)), "y": rng.standard_normal((5, 3))}
    feeds |= {k: 0.5 * rng.standard_normal(s) for k, s in SHAPES.items()}
    return feeds


def _torch_steps(feeds: dict[str, np.ndarray], make: Any, steps: int) -> list[list[np.ndarray]]:
    x, y = (torch.from_numpy(feeds[k]) for k in ("x", "y"))
    ws = [torch.from_numpy(feeds[k].copy()).requires_grad_() for k in SHAPES]
    opt = make(ws)
    out = []
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.mean((torch.tanh(x @ ws[0]) @ ws[1] - y) ** 2)
        loss.backward()
        opt.step()
        out.append([w.detach().numpy().copy() for w in ws])
    return out


CASES = [
    (er.optim.SGD(lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    (
        er.optim.SGD(lr=0.05, momentum=0.9, weight_decay=0.01),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01),
    ),
    (
        er.optim.SGD(lr=0.05, momentum=0.8, nesterov=True),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True),
    ),
    (er.optim.Adam(lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
    (
        er.optim.Adam(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
        lambda p: torch.optim.Adam(p, lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
    ),
    (
        er.optim.AdamW(lr=0.01, weight_decay=0.1),
        lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    ),
]


def _run(opt: Any, feeds: dict[str, np.ndarray], steps: int, run: Any) -> list[list[np.ndarray]]:
    out = []
    state = dict(feeds)
    upd = None
    for step in range(1, steps + 1):
        new, upd = run(state, step, upd)
        state.update(upd.next_feeds(new))
        out.append([np.asarray(state[k]) for k in SHAPES])
    return out


@pytest.mark.parametrize(("opt", "make"), CASES, ids=[repr(c[0]) for c in CASES])
def test_reference_steps_match_torch_optim(opt: Any, make: Any) -> None:
    loss, params = _model("float64")
    upd = opt.update(params, er.grad(loss, params))
    feeds = {**_data(), **upd.init_state()}
    want = _torch_steps(_data(), make, 6)
    for step in range(1, 7):
        new = er.evaluate(upd.outputs, {**feeds, **upd.variables(step)})
        feeds.update(upd.next_feeds(new))
        for k, w in zip(SHAPES, want[step - 1]):
            np.testing.assert_allclose(feeds[k], w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("opt", "make"), CASES[1::2], ids=[repr(c[0]) for c in CASES[1::2]])
def test_compiled_float32_steps_match_torch_optim(opt: Any, make: Any) -> None:
    """float32 on two devices: one ulp-level rounding per op, a few ops per step, 6 steps."""
    loss, params = _model("float32")
    upd = opt.update(params, er.grad(loss, params))
    prog = er.compile([loss, *upd.outputs], devices=er.cpu(2))
    data = {k: v.astype(np.float32) for k, v in _data().items()}
    feeds = {**data, **upd.init_state()}
    want = _torch_steps(_data(), make, 6)
    losses = []
    for step in range(1, 7):
        loss_v, *new = prog.run({**feeds, **upd.variables(step)})
        losses.append(float(loss_v))
        feeds.update(upd.next_feeds(new))
        for k, w in zip(SHAPES, want[step - 1]):
            np.testing.assert_allclose(feeds[k], w, rtol=2e-5, atol=2e-6)
    assert losses[-1] < losses[0]


def test_a_run_time_learning_rate_is_a_variable() -> None:
    loss, params = _model("float64")
    upd = er.optim.SGD(lr=er.var("lr")).update(params, er.grad(loss, params))
    feeds = _data()
    fast = er.evaluate(upd.outputs, {**feeds, "lr": 0.2})
    want = _torch_steps(feeds, lambda p: torch.optim.SGD(p, lr=0.2), 1)[0]
    for got, w in zip(fast, want):
        np.testing.assert_allclose(got, w, rtol=1e-12)


def test_bad_optimiser_input_is_named() -> None:
    loss, params = _model("float64")
    grads = er.grad(loss, params)
    with pytest.raises(EinrelError, match=r"not an er\.input"):
        er.optim.SGD().update([params[0] * 2.0, params[1]], grads)
    with pytest.raises(EinrelError, match="2 parameters but 1 gradients"):
        er.optim.SGD().update(params, grads[:1])
    with pytest.raises(EinrelError, match=r"'w0' has shape \(6, 8\), its gradient \(8, 3\)"):
        er.optim.SGD().update(params, grads[::-1])
    with pytest.raises(EinrelError, match="betas must lie in"):
        er.optim.Adam(betas=(0.9, 1.0)).update(params, grads)
    with pytest.raises(EinrelError, match="lr must be >= 0"):
        er.optim.Adam(lr=-1.0).update(params, grads)
    with pytest.raises(EinrelError, match="nesterov needs momentum"):
        er.optim.SGD(nesterov=True).update(params, grads)
    upd = er.optim.Adam().update(params, grads)
    with pytest.raises(EinrelError, match="steps count from 1"):
        upd.variables(0)
    with pytest.raises(EinrelError, match="expects the 6 values"):
        upd.next_feeds([1, 2])
