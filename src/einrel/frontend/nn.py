"""Network pieces built from extended einsums: softmax, norms and losses, each a few
einsums that decompose like any other."""

from __future__ import annotations

from ..errors import ShapeError
from .functions import exp, log
from .tensor import _L, Tensor, _axes, _tensor, einsum, stop_gradient


def _last_axis(x: Tensor, axis: int, what: str) -> tuple[str, str]:
    ax = _axes(x, axis, what)[0]
    labs = _L[: x.ndim]
    return labs, labs[:ax] + labs[ax + 1 :]


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """max-reduce, subtract-and-exp, sum-reduce, divide: four einsums that each decompose."""
    x = _tensor(x, "softmax")
    labs, red = _last_axis(x, axis, "softmax")
    m = stop_gradient(einsum(f"{labs}->{red}", x, agg="max"))
    e = einsum(f"{labs},{red}->{labs}", x, m, join=lambda v, mx: exp(v - mx), agg=None)
    s = einsum(f"{labs}->{red}", e)
    return einsum(f"{labs},{red}->{labs}", e, s, join=lambda v, t: v / t, agg=None)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """`log(softmax(x))` over `axis`, computed stably (max subtracted first)."""
    x = _tensor(x, "log_softmax")
    labs, red = _last_axis(x, axis, "log_softmax")
    m = stop_gradient(einsum(f"{labs}->{red}", x, agg="max"))
    z = einsum(f"{labs},{red}->{labs}", x, m, join=lambda v, mx: v - mx, agg=None)
    lse = einsum(f"{labs}->{red}", z, join=lambda v: exp(v))
    return einsum(f"{labs},{red}->{labs}", z, lse, join=lambda v, t: v - log(t), agg=None)


def rms_norm(x: Tensor, weight: Tensor | None = None, eps: float = 1e-6, axis: int = -1) -> Tensor:
    """x / sqrt(mean(x^2) + eps) * weight, over one axis."""
    x = _tensor(x, "rms_norm")
    labs, red = _last_axis(x, axis, "rms_norm")
    n = x.shape[_axes(x, axis, "rms_norm")[0]]
    ms = einsum(f"{labs}->{red}", x, join=lambda v: v * v * (1.0 / n))
    if weight is None:
        return einsum(
            f"{labs},{red}->{labs}", x, ms, join=lambda v, q: v * (q + eps) ** -0.5, agg=None
        )
    wl = labs[_axes(x, axis, "rms_norm")[0]]
    if weight.shape != (n,):
        raise ShapeError(f"rms_norm: weight shape {weight.shape} != ({n},) for input {x.shape}")
    return einsum(
        f"{labs},{red},{wl}->{labs}",
        x,
        ms,
        weight,
        join=lambda v, q, w: v * (q + eps) ** -0.5 * w,
        agg=None,
    )


def layer_norm(
    x: Tensor,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
    axis: int = -1,
) -> Tensor:
    """Layer normalisation over the last axis (mean 0, variance 1, then `eps` guarded)."""
    x = _tensor(x, "layer_norm")
    labs, red = _last_axis(x, axis, "layer_norm")
    ax = _axes(x, axis, "layer_norm")[0]
    n = x.shape[ax]
    mu = einsum(f"{labs}->{red}", x, join=lambda v: v * (1.0 / n))
    xc = einsum(f"{labs},{red}->{labs}", x, mu, join=lambda v, m: v - m, agg=None)
    var_ = einsum(f"{labs}->{red}", xc, join=lambda v: v * v * (1.0 / n))
    y = einsum(f"{labs},{red}->{labs}", xc, var_, join=lambda v, q: v * (q + eps) ** -0.5, agg=None)
    wl = labs[ax]
    for p, fn in ((weight, lambda v, w: v * w), (bias, lambda v, b: v + b)):
        if p is not None:
            if p.shape != (n,):
                raise ShapeError(f"layer_norm: parameter shape {p.shape} != ({n},)")
            y = einsum(f"{labs},{wl}->{labs}", y, p, join=fn, agg=None)
    return y


def cross_entropy(logits: Tensor, targets: Tensor, axis: int = -1) -> Tensor:
    """Mean over the other axes of -sum(targets * log_softmax(logits)).

    `targets` has the logits' shape: one-hot rows or class probabilities.
    """
    logits, targets = _tensor(logits, "cross_entropy"), _tensor(targets, "cross_entropy")
    if logits.shape != targets.shape:
        raise ShapeError(
            f"cross_entropy: targets shape {targets.shape} != logits shape {logits.shape}; "
            "targets are one-hot rows or class probabilities"
        )
    lp = log_softmax(logits, axis)
    labs = _L[: logits.ndim]
    rows = logits.size // logits.shape[_axes(logits, axis, "cross_entropy")[0]]
    return einsum(f"{labs},{labs}->", lp, targets, join=lambda a, t: -a * t * (1.0 / rows))


def mse(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over all elements."""
    pred, target = _tensor(pred, "mse"), _tensor(target, "mse")
    if pred.shape != target.shape:
        raise ShapeError(f"mse: shapes {pred.shape} and {target.shape} differ")
    labs = _L[: pred.ndim]
    return einsum(
        f"{labs},{labs}->", pred, target, join=lambda a, b: (a - b) * (a - b) * (1.0 / pred.size)
    )
