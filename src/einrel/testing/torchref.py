"""einrel's public functions written again in plain torch, for differential tests.

`TorchRef(variables)` has the names a `Case`'s lines use (`er.einsum`, `er.softmax`, ...), so
the same lines run on torch tensors and torch autograd gives the gradients to compare with
`er.grad`. It follows einrel's documented conventions where torch has others: a tie of
`maximum`/`minimum` goes to the first operand (to a constant operand when there is one), `abs`
is `max(x, -x)`, and max/min aggregations split the gradient equally among tied elements (as
`torch.amax` does). The extended einsum broadcasts every operand over the join space, applies
the join elementwise and aggregates, with none of einrel's kernels involved.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

Value = Any  # a torch tensor or a Python number


def _dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


def _is_tensor(x: Any) -> bool:
    return isinstance(x, torch.Tensor)


def _leaf(x: torch.Tensor) -> torch.Tensor:
    """A constant that can still be asked for its gradient (as einrel allows for any node)."""
    return x.detach().requires_grad_()


class TorchRef:
    """The einrel namespace on torch tensors: `input(name, ...)` is `feeds[name]` as a leaf
    that requires grad, `var(name)` is `feeds[name]` as a float."""

    def __init__(self, feeds: dict[str, Any]) -> None:
        self.feeds = feeds

    def input(self, name: str, shape: Sequence[int], dtype: str = "float32") -> Value:
        if name not in self.feeds:  # declared but never read: only differentiated for
            return _leaf(torch.zeros(tuple(shape), dtype=_dtype(dtype)))
        x = torch.as_tensor(self.feeds[name]).to(_dtype(dtype))
        assert tuple(x.shape) == tuple(shape)
        return _leaf(x)

    # --- scalars and elementwise ----------------------------------------------------------
    def var(self, name: str) -> float:
        return float(self.feeds[name])

    exp = staticmethod(torch.exp)
    log = staticmethod(torch.log)
    sqrt = staticmethod(torch.sqrt)
    tanh = staticmethod(torch.tanh)
    sigmoid = staticmethod(torch.sigmoid)
    relu = staticmethod(torch.relu)
    silu = staticmethod(F.silu)

    @staticmethod
    def gelu(x: Value) -> Value:
        return F.gelu(x, approximate="tanh")

    def abs(self, x: Value) -> Value:
        return self.maximum(x, -x)

    @staticmethod
    def _extremum(a: Value, b: Value, gt: Callable, ge: Callable) -> Value:
        if not _is_tensor(a) and not _is_tensor(b):
            return max(a, b) if gt is torch.gt else min(a, b)
        if not _is_tensor(b):  # a constant side wins ties (its derivative is 0)
            return torch.where(gt(a, b), a, torch.as_tensor(b, dtype=a.dtype))
        if not _is_tensor(a):
            return torch.where(ge(torch.as_tensor(a, dtype=b.dtype), b), a, b)
        return torch.where(ge(a, b), a, b)

    def maximum(self, a: Value, b: Value) -> Value:
        return self._extremum(a, b, torch.gt, torch.ge)

    def minimum(self, a: Value, b: Value) -> Value:
        return self._extremum(a, b, torch.lt, torch.le)

    @staticmethod
    def where(cond: Any, then: Value, other: Value) -> Value:
        like = next(x for x in (cond, then, other) if _is_tensor(x))
        as_t = [x if _is_tensor(x) else torch.as_tensor(x, dtype=like.dtype) for x in (then, other)]
        return torch.where(cond, *as_t)

    # --- leaves ---------------------------------------------------------------------------
    @staticmethod
    def fill(shape: Sequence[int], value: float, dtype: str = "float32") -> Value:
        return _leaf(torch.full(tuple(shape), float(value), dtype=_dtype(dtype)))

    def zeros(self, shape: Sequence[int], dtype: str = "float32") -> Value:
        return self.fill(shape, 0.0, dtype)

    def ones(self, shape: Sequence[int], dtype: str = "float32") -> Value:
        return self.fill(shape, 1.0, dtype)

    @staticmethod
    def causal_mask(shape: Sequence[int], dtype: str = "float32") -> Value:
        full = torch.full(tuple(shape), -math.inf, dtype=_dtype(dtype))
        return torch.triu(full, diagonal=1)

    # --- the extended einsum --------------------------------------------------------------
    @staticmethod
    def einsum(
        spec: str,
        *operands: Value,
        join: Callable[..., Any] | None = None,
        agg: str | None = "sum",
        sizes: dict[str, int] | None = None,
        dtype: str | None = None,
    ) -> Value:
        lhs, out = spec.replace(" ", "").split("->")
        specs = lhs.split(",")
        like = next((x for x in operands if _is_tensor(x)), None)
        work = like.dtype if like is not None else _dtype(dtype or "float32")
        ops = [x if _is_tensor(x) else torch.as_tensor(float(x), dtype=work) for x in operands]
        size = dict(sizes or {})
        for labs, x in zip(specs, ops):
            size.update(zip(labs, x.shape))
        labels = out + "".join(dict.fromkeys(c for labs in specs for c in labs if c not in out))
        views = []
        for labs, x in zip(specs, ops):
            perm = sorted(range(len(labs)), key=lambda d: labels.index(labs[d]))
            shape = [size[c] if c in labs else 1 for c in labels]
            views.append(x.permute(perm).reshape(shape))
        if join is None:
            val = views[0]
            for v in views[1:]:
                val = val * v
        else:
            val = join(*views)
            if not _is_tensor(val):
                val = torch.as_tensor(float(val), dtype=work)
        if not val.requires_grad:  # constants only
            val = _leaf(val)
        val = val.expand([size[c] for c in labels])
        dims = list(range(len(out), len(labels)))
        if dims:
            if agg == "sum":
                val = val.sum(dim=dims)
            elif agg == "max":
                val = val.amax(dim=dims)
            elif agg == "min":
                val = val.amin(dim=dims)
            else:
                for d in reversed(dims):
                    val = val.prod(dim=d)
        return val.to(_dtype(dtype)) if dtype else val

    # --- reductions and layers ------------------------------------------------------------
    @staticmethod
    def _dims(x: Value, axis: int | Sequence[int] | None) -> list[int]:
        if axis is None:
            return list(range(x.ndim))
        return [axis] if isinstance(axis, int | numbers.Integral) else list(axis)

    def sum(self, x: Value, axis: Any = None, keepdims: bool = False) -> Value:
        dims = self._dims(x, axis)
        return x.sum(dim=dims, keepdim=keepdims) if dims else x

    def mean(self, x: Value, axis: Any = None, keepdims: bool = False) -> Value:
        dims = self._dims(x, axis)
        return x.mean(dim=dims, keepdim=keepdims) if dims else x

    @staticmethod
    def softmax(x: Value, axis: int = -1) -> Value:
        return torch.softmax(x, dim=axis)

    @staticmethod
    def log_softmax(x: Value, axis: int = -1) -> Value:
        return torch.log_softmax(x, dim=axis)

    @staticmethod
    def layer_norm(
        x: Value, weight: Value = None, bias: Value = None, eps: float = 1e-5, axis: int = -1
    ) -> Value:
        assert axis == -1
        return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)

    @staticmethod
    def rms_norm(x: Value, weight: Value = None, eps: float = 1e-6, axis: int = -1) -> Value:
        assert axis == -1
        return F.rms_norm(x, (x.shape[-1],), weight, eps)

    @staticmethod
    def cross_entropy(logits: Value, targets: Value, axis: int = -1) -> Value:
        rows = logits.numel() // logits.shape[axis]
        return -(targets * torch.log_softmax(logits, dim=axis)).sum() / rows

    @staticmethod
    def mse(pred: Value, target: Value) -> Value:
        return ((pred - target) ** 2).mean()

    # --- layout ---------------------------------------------------------------------------
    @staticmethod
    def matmul(a: Value, b: Value) -> Value:
        return a @ b

    @staticmethod
    def concat(tensors: Sequence[Value], axis: int = 0) -> Value:
        return torch.cat(list(tensors), dim=axis)

    # A slice of everything and a reshape to the same shape are the tensor itself in einrel
    # (no new node), which matters for a gradient taken with respect to them.
    @staticmethod
    def slice(x: Value, starts: Sequence[int], stops: Sequence[int]) -> Value:
        if not any(starts) and tuple(stops) == tuple(x.shape):
            return x
        return x[tuple(slice(a, b) for a, b in zip(starts, stops))]

    @staticmethod
    def reshape(x: Value, shape: Sequence[int]) -> Value:
        return x if tuple(shape) == tuple(x.shape) else x.reshape(tuple(shape))

    @staticmethod
    def transpose(x: Value, axes: Sequence[int] | None = None) -> Value:
        return x.permute(tuple(axes) if axes is not None else tuple(range(x.ndim))[::-1])

    @staticmethod
    def astype(x: Value, dtype: str) -> Value:
        return x.to(_dtype(dtype))

    @staticmethod
    def stop_gradient(x: Value) -> Value:
        return _leaf(x)

    @staticmethod
    def grad(y: Value, wrt: Sequence[Value]) -> list[Value]:
        """Gradients by torch autograd (zeros for a tensor `y` does not depend on)."""
        live = [t for t in wrt if t.requires_grad]
        gs = torch.autograd.grad(y, live, allow_unused=True) if live else []
        by_id = {id(t): g for t, g in zip(live, gs)}
        out = []
        for t in wrt:
            g = by_id.get(id(t))
            out.append(torch.zeros_like(t) if g is None else g)
        return out
