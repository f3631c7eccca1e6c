"""Optimisers as graph builders: SGD (momentum, Nesterov, weight decay), Adam and AdamW.

A graph is declarative, so an optimiser does not mutate anything: `opt.update(params, grads)`
adds the update to the graph and returns an `Update` — the new value of every parameter, the
new value of every state tensor (momentum buffers, Adam moments), the inputs those state tensors
are fed through, and the run-time variables a step needs (Adam's step count). One compiled
program then serves every step; the caller feeds each step's outputs back as the next inputs:

    upd = er.optim.Adam(lr=1e-3).update(params, er.grad(loss, params))
    prog = er.compile([loss, *upd.outputs])
    feeds = {**data, **values, **upd.init_state()}
    for step in range(1, 101):
        loss_v, *new = prog.run({**feeds, **upd.variables(step)})
        feeds.update(upd.next_feeds(new))

The formulas are torch.optim's (the tests check them step for step against it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import EinrelError
from ..ir.scalar.trace import Sym
from .functions import sqrt
from .leaves import input as input_
from .leaves import var
from .tensor import Tensor

Rate = float | Sym  # a constant or a run-time variable (er.var("lr"))


@dataclass(frozen=True)
class Update:
    """What one optimiser step added to the graph, and how to feed the next step."""

    params: list[Tensor]  # the new value of each parameter, in the order given
    param_names: list[str]  # the input name each parameter is fed by
    state: dict[str, Tensor]  # state input name -> its new value
    state_inputs: dict[str, Tensor] = field(repr=False)  # state input name -> the input
    step_var: str | None = None  # the run-time variable holding the 1-based step, if any

    @property
    def outputs(self) -> list[Tensor]:
        """New parameters, then new state, in the order `next_feeds` reads them."""
        return [*self.params, *self.state.values()]

    def init_state(self) -> dict[str, np.ndarray]:
        """Zeros for every state input (torch's optimisers start from zero state too)."""
        return {
            name: np.zeros(t.shape, dtype=np.float32 if t.dtype == "bfloat16" else t.dtype)
            for name, t in self.state_inputs.items()
        }

    def variables(self, step: int) -> dict[str, float]:
        """The run-time variables of step `step` (1-based), to merge into the feeds."""
        if step < 1:
            raise EinrelError(f"optimiser steps count from 1, got {step}")
        return {self.step_var: float(step)} if self.step_var else {}

    def next_feeds(self, values: Sequence[Any]) -> dict[str, Any]:
        """Map the values of `outputs` (as a run returns them) to the input names they feed."""
        names = [*self.param_names, *self.state]
        if len(values) != len(names):
            raise EinrelError(
                f"next_feeds expects the {len(names)} values of Update.outputs, got {len(values)}"
            )
        return dict(zip(names, values))


def _leaf_name(p: Tensor, k: int) -> str:
    node = p.node
    if node.op != "input":
        raise EinrelError(
            f"optimiser parameter {k} (shape {tuple(node.shape)}) is a {node.op!r} node, not an "
            "er.input: parameters are the inputs the next step is fed through"
        )
    return str(node.name)


def _check(params: Sequence[Tensor], grads: Sequence[Tensor]) -> list[str]:
    if len(params) != len(grads):
        raise EinrelError(f"{len(params)} parameters but {len(grads)} gradients")
    names = [_leaf_name(p, k) for k, p in enumerate(params)]
    for name, p, g in zip(names, params, grads):
        if tuple(p.shape) != tuple(g.shape):
            raise EinrelError(
                f"parameter {name!r} has shape {tuple(p.shape)}, its gradient {tuple(g.shape)}"
            )
    if len(set(names)) != len(names):
        raise EinrelError(f"a parameter is given twice: {names}")
    return names


def _nonnegative(**values: Rate) -> None:
    for key, v in values.items():
        if not (isinstance(v, Sym) or v >= 0):
            raise EinrelError(f"optimiser {key} must be >= 0, got {v}")


@dataclass(frozen=True)
class SGD:
    """p <- p - lr * d, d = g + weight_decay * p, with momentum: b <- momentum * b + d and
    d = b (or d + momentum * b with nesterov). Dampening is not offered (torch's first step
    special-cases it)."""

    lr: Rate = 1e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False
    prefix: str = "sgd"  # state inputs are named f"{param}.{prefix}_momentum"

    def update(self, params: Sequence[Tensor], grads: Sequence[Tensor]) -> Update:
        """Add one SGD step for `params` (er.input tensors) with `grads` to the graph."""
        _nonnegative(lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        if self.nesterov and self.momentum == 0:
            raise EinrelError("SGD: nesterov needs momentum > 0")
        names = _check(params, grads)
        new: list[Tensor] = []
        state: dict[str, Tensor] = {}
        inputs: dict[str, Tensor] = {}
        for name, p, g in zip(names, params, grads):
            d = g + self.weight_decay * p if self.weight_decay else g
            if self.momentum:
                key = f"{name}.{self.prefix}_momentum"
                buf = inputs[key] = input_(key, p.shape, p.dtype)
                b = state[key] = self.momentum * buf + d
                d = d + self.momentum * b if self.nesterov else b
            new.append(p - self.lr * d)
        return Update(new, names, state, inputs)


@dataclass(frozen=True)
class Adam:
    """torch.optim.Adam: m <- b1 m + (1-b1) g, v <- b2 v + (1-b2) g^2, p <- p - lr * m_hat /
    (sqrt(v_hat) + eps) with bias-corrected moments; weight_decay adds weight_decay * p to g
    (L2). The step count is the run-time variable `f"{prefix}_step"`."""

    lr: Rate = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    prefix: str = "adam"
    decoupled: bool = field(default=False, repr=False)  # AdamW: decay the weights directly

    def update(self, params: Sequence[Tensor], grads: Sequence[Tensor]) -> Update:
        """Add one Adam step for `params` (er.input tensors) with `grads` to the graph."""
        b1, b2 = self.betas
        _nonnegative(lr=self.lr, eps=self.eps, weight_decay=self.weight_decay)
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise EinrelError(f"{type(self).__name__}: betas must lie in [0, 1), got {self.betas}")
        names = _check(params, grads)
        step = var(f"{self.prefix}_step")
        c1, c2 = 1 - b1**step, 1 - b2**step  # bias corrections
        new: list[Tensor] = []
        state: dict[str, Tensor] = {}
        inputs: dict[str, Tensor] = {}
        for name, p, g in zip(names, params, grads):
            if self.weight_decay and not self.decoupled:
                g = g + self.weight_decay * p
            km, kv = f"{name}.{self.prefix}_m", f"{name}.{self.prefix}_v"
            m_in = inputs[km] = input_(km, p.shape, p.dtype)
            v_in = inputs[kv] = input_(kv, p.shape, p.dtype)
            m = state[km] = b1 * m_in + (1 - b1) * g
            v = state[kv] = b2 * v_in + (1 - b2) * (g * g)
            base = p * (1 - self.lr * self.weight_decay) if self.decoupled else p
            new.append(base - (self.lr / c1) * m / (sqrt(v) / c2**0.5 + self.eps))
        return Update(new, names, state, inputs, f"{self.prefix}_step")


@dataclass(frozen=True)
class AdamW(Adam):
    """torch.optim.AdamW: Adam whose weight decay multiplies the weights by (1 - lr *
    weight_decay) each step instead of adding to the gradient."""

    weight_decay: float = 1e-2
    prefix: str = "adamw"
    decoupled: bool = field(default=True, repr=False)
