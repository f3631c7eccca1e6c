"""Random programs over sparse relations, built twice: as einrel graphs and as torch code on
the dense equivalent with absent entries masked. The differential tests compare the two
(values and gradients) and every compiled level against the reference interpreter.

A program starts from one relation (one to three keys, any density from empty to full,
power-law rows, optional value dims) and dense feature tables per key, then applies random
steps: SDDMM-like joins, elementwise maps, reductions that keep some keys (dense results with
identities for empty keys), SpMM-like aggregations, segment softmax over a key, and products
of relations on one support. The loss sums what the steps made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st

import einrel as er

KEYS = "uvw"
D = 2  # the dense feature label d
UNARY = {
    "tanh": (lambda x: er.tanh(x), "tanh"),
    "sigmoid": (lambda x: er.sigmoid(x), "sigmoid"),
    "square": (lambda x: x * x, "square"),
    "exp_tanh": (lambda x: er.exp(er.tanh(x)), "exp_tanh"),
}
STEPS = ("sddmm", "unary", "reduce", "spmm", "softmax", "product")


@dataclass(frozen=True)
class RelCase:
    """One random program: the relation's shape and tuples, and the steps."""

    sizes: tuple[int, ...]
    indices: np.ndarray = field(repr=False, compare=False)
    slack: int
    values: int  # 0: a scalar per tuple, else the size of the value label f
    steps: tuple[tuple[Any, ...], ...]
    seed: int

    @property
    def nnz(self) -> int:
        return int(self.indices.shape[1])

    def __repr__(self) -> str:
        return (
            f"RelCase(sizes={self.sizes}, nnz={self.nnz}, slack={self.slack}, "
            f"values={self.values}, steps={self.steps}, seed={self.seed})"
        )


@st.composite
def relation_cases(draw: st.DrawFn) -> RelCase:
    """A random relation and a few random steps over it."""
    nkeys = draw(st.integers(1, 3))
    sizes = tuple(draw(st.integers(1, 5)) for _ in range(nkeys))
    total = math.prod(sizes)
    density = draw(st.sampled_from([0.0, 0.1, 0.3, 0.6, 1.0]))
    nnz = round(density * total)
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if draw(st.booleans()):  # power-law: a few rows hold most tuples
        weight = (np.arange(total) // max(1, total // sizes[0]) + 1.0) ** -1.5
        flat = rng.choice(total, nnz, replace=False, p=weight / weight.sum())
    else:
        flat = rng.choice(total, nnz, replace=False)
    indices = np.stack(np.unravel_index(np.sort(flat), sizes)).astype(np.int64)
    indices = indices[:, rng.permutation(nnz)]  # tuple order is the feed's, not sorted
    steps = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(STEPS))
        key = draw(st.integers(0, nkeys - 1))
        other = draw(st.integers(0, nkeys - 1))
        keep = tuple(k for k in range(nkeys) if draw(st.booleans()))
        unary = draw(st.sampled_from(sorted(UNARY)))
        steps.append((kind, key, other, keep, unary))
    return RelCase(
        sizes, indices, draw(st.integers(0, 3)), draw(st.sampled_from([0, 2])), tuple(steps), seed
    )


@dataclass
class Built:
    """A case built in einrel: its loss, the gradient targets and the feeds."""

    loss: er.Tensor
    outputs: list[er.Tensor]
    targets: list[er.Tensor]
    feeds: dict[str, Any]


class _Program:
    """Applies one case's steps to either backend: einrel tensors or masked torch tensors."""

    def __init__(self, case: RelCase, torch_side: bool) -> None:
        self.case = case
        self.torch = torch_side
        self.keys = KEYS[: len(case.sizes)]

    # each value is (tensor, labels); a relation's labels are its keys (then f)
    def run(self, rel: Any, tables: list[Any], mask: Any = None) -> tuple[Any, list[Any]]:
        self.mask = mask
        rels: list[tuple[Any, str]] = [(rel, self.keys + ("f" if self.case.values else ""))]
        dense: list[tuple[Any, str]] = []
        for kind, key, other, keep, unary in self.case.steps:
            r, labs = rels[-1]
            k, k2 = self.keys[key], self.keys[other]
            if kind == "sddmm":
                rels.append((self.join(f"{labs},{k}d->{self.keys}", r, tables[key]), self.keys))
            elif kind == "unary":
                rels.append((self.unary(unary, r, labs), labs))
            elif kind == "reduce":
                out = "".join(self.keys[i] for i in keep if i < len(self.keys))
                if len(out) < len(self.keys):
                    dense.append((self.agg(f"{labs}->{out}", r, labs, out), out))
            elif kind == "spmm" and k != k2:
                out = k2 + "d"
                dense.append((self.agg(f"{labs},{k}d->{out}", r, labs, out, tables[key]), out))
            elif kind == "softmax" and labs == self.keys:
                rels.append((self.softmax(r, k), self.keys))
            elif kind == "product" and len(rels) > 1 and rels[-2][1] == labs == self.keys:
                rels.append((self.product(rels[-2][0], r), self.keys))
        return rels, dense

    # --- the two backends --------------------------------------------------------------------
    def join(self, spec: str, *xs: Any) -> Any:
        if not self.torch:
            return er.einsum(spec, *xs)
        import torch

        return torch.einsum(spec, *xs) * self.mask

    def unary(self, name: str, r: Any, labs: str) -> Any:
        if not self.torch:
            return UNARY[name][0](r)
        import torch

        f = {
            "tanh": torch.tanh,
            "sigmoid": torch.sigmoid,
            "square": lambda x: x * x,
            "exp_tanh": lambda x: torch.exp(torch.tanh(x)),
        }[name]
        return f(r) * self._mask_for(labs)

    def agg(self, spec: str, r: Any, labs: str, out: str, *xs: Any) -> Any:
        if not self.torch:
            return er.einsum(spec, r, *xs)
        import torch

        return torch.einsum(spec, r * self._mask_for(labs), *xs)

    def softmax(self, r: Any, k: str) -> Any:
        keys = self.keys
        if not self.torch:
            m = er.einsum(f"{keys}->{k}", r, agg="max")
            p = er.einsum(f"{keys},{k}->{keys}", r, m, join=lambda s, mx: er.exp(s - mx))
            z = er.einsum(f"{keys}->{k}", p)
            return er.einsum(f"{keys},{k}->{keys}", p, z, join=lambda a, b: a / b)
        import torch

        dims = [i for i, c in enumerate(keys) if c != k]
        pos = keys.index(k)
        masked = torch.where(self.mask > 0, r, torch.full_like(r, -math.inf))
        top = masked.amax(dim=dims) if dims else masked
        top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
        shape = [1] * len(keys)
        shape[pos] = -1
        num = torch.exp(r - top.reshape(shape)) * self.mask
        den = num.sum(dim=dims) if dims else num
        den = torch.where(den > 0, den, torch.ones_like(den))
        return num / den.reshape(shape)

    def product(self, a: Any, b: Any) -> Any:
        if not self.torch:
            return er.einsum(
                f"{self.keys},{self.keys}->{self.keys}", a, b, join=lambda x, y: x * y + x
            )
        return (a * b + a) * self.mask

    def _mask_for(self, labs: str) -> Any:
        return self.mask.reshape(self.mask.shape + (1,) * (len(labs) - len(self.keys)))


def loss_of(rels: list[tuple[Any, str]], dense: list[tuple[Any, str]], torch_side: bool) -> Any:
    """Half the squared dense results plus the sum of every relation made after the first."""
    total: Any = 0.0
    for t, labs in dense:
        total = total + ((t * t).sum() if torch_side else er.einsum(f"{labs},{labs}->", t, t)) * 0.5
    for t, labs in rels[1:]:
        total = total + (t.sum() if torch_side else er.einsum(f"{labs}->", t))
    return total


def build(case: RelCase) -> Built:
    """The case in einrel, with its feeds (float64)."""
    rng = np.random.default_rng(case.seed + 1)
    shape = {k: n for k, n in zip(KEYS, case.sizes)}
    vals = {"f": case.values} if case.values else None
    R = er.relation("R", keys=shape, nnz=case.nnz + case.slack, values=vals, dtype="float64")
    tables = [er.input(f"X{k}", (n, D), "float64") for k, n in shape.items()]
    rels, dense = _Program(case, torch_side=False).run(R, tables)
    loss = loss_of(rels, dense, torch_side=False)
    if not isinstance(loss, er.Tensor):  # no step produced anything: the relation's sum
        loss = er.einsum(rels[0][1] + "->", R)
    value_shape = (case.nnz, case.values) if case.values else (case.nnz,)
    full = case.sizes + ((case.values,) if case.values else ())
    coo = er.coo(case.indices, rng.standard_normal(value_shape) / 2, shape=full)
    feeds: dict[str, Any] = {"R": coo}
    for k, n in shape.items():
        feeds[f"X{k}"] = rng.standard_normal((n, D)) / 2
    outputs = [loss, *(t for t, _ in dense), *(t for t, _ in rels[1:])]
    return Built(loss, outputs, [R, *tables], feeds)


def torch_loss_and_grads(case: RelCase, feeds: dict[str, Any]) -> tuple[float, list[np.ndarray]]:
    """The loss and its gradients (relation values at their tuples, then the tables) computed
    by torch autograd on the dense equivalent with absent entries masked."""
    import torch

    coo = feeds["R"]
    dense = torch.tensor(coo.to_dense(), requires_grad=True)
    mask = torch.zeros(case.sizes, dtype=torch.float64)
    mask[tuple(torch.from_numpy(np.array(coo.indices, dtype=np.int64)))] = 1.0
    tables = [torch.tensor(feeds[f"X{k}"], requires_grad=True) for k in KEYS[: len(case.sizes)]]
    prog = _Program(case, torch_side=True)
    rels, dn = prog.run(dense, tables, mask)
    loss = loss_of(rels, dn, torch_side=True)
    if not isinstance(loss, torch.Tensor):
        loss = (dense * prog._mask_for(rels[0][1])).sum()
    loss.backward()

    def grad(t: Any) -> np.ndarray:  # torch leaves no gradient where nothing depends on t
        return np.zeros(tuple(t.shape)) if t.grad is None else t.grad.numpy()

    grad_r = grad(dense)[tuple(coo.indices)]
    return float(loss.detach()), [grad_r, *(grad(t) for t in tables)]
