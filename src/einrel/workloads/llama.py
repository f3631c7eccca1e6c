"""A LLaMA-style transformer block, written with heads as their own dimension.

x[b,s,d] -> RMSNorm -> q,k,v[b,s,h,e] -> causal softmax attention -> wo[h,e,d] -> residual ->
RMSNorm -> SwiGLU MLP (silu(x·w1) * (x·w3))·w2 -> residual. Keeping heads as a label (wq[d,h,e])
means no reshape ever appears, so every step is one einsum that decomposes along any label.

`mode="inference"` returns the block output; `mode="train"` adds an MSE loss against `target`,
the gradient of every weight and one SGD step with the run-time learning rate `lr`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from .. import frontend as F
from ..errors import EinrelError
from ..frontend.tensor import Tensor
from .base import (
    Feeds,
    Workload,
    check_dtype,
    graph_flops,
    normal,
    pick_size,
    to_numpy,
    to_torch,
    torch_train_step,
    train_outputs,
)

MODES = ("inference", "train")
WEIGHTS = ("attn_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w1", "w3", "w2")
EPS = 1e-6


@dataclass(frozen=True)
class LlamaSize:
    """Batch, sequence, model width d, heads h × head dim e (h·e = d) and MLP width f."""

    batch: int
    seq: int
    d: int
    heads: int
    head_dim: int
    hidden: int


SIZES: dict[str, LlamaSize] = {
    "tiny": LlamaSize(2, 8, 16, 2, 8, 32),
    "small": LlamaSize(2, 32, 64, 4, 16, 172),
    "medium": LlamaSize(2, 128, 256, 8, 32, 688),
    # The published shapes (head dim 128); sequence 1000 as in the EinDecomp benchmark.
    "7b": LlamaSize(1, 1000, 4096, 32, 128, 11008),
    "13b": LlamaSize(1, 1000, 5120, 40, 128, 13824),
    "30b": LlamaSize(1, 1000, 6656, 52, 128, 17920),
    "65b": LlamaSize(1, 1000, 8192, 64, 128, 22016),
}


def weight_shapes(z: LlamaSize) -> dict[str, tuple[int, ...]]:
    d, h, e, f = z.d, z.heads, z.head_dim, z.hidden
    return {
        "attn_norm": (d,),
        "wq": (d, h, e),
        "wk": (d, h, e),
        "wv": (d, h, e),
        "wo": (h, e, d),
        "ffn_norm": (d,),
        "w1": (d, f),
        "w3": (d, f),
        "w2": (f, d),
    }


def block(x: Tensor, w: Mapping[str, Tensor], eps: float = EPS) -> Tensor:
    """The block itself, on einrel tensors."""
    _, s, _ = x.shape
    e = w["wq"].shape[2]
    scale = 1.0 / math.sqrt(e)
    h = F.rms_norm(x, w["attn_norm"], eps)
    q = F.einsum("bsd,dhe->bshe", h, w["wq"])
    k = F.einsum("bsd,dhe->bshe", h, w["wk"])
    v = F.einsum("bsd,dhe->bshe", h, w["wv"])
    scores = F.einsum("bshe,bthe->bhst", q, k)
    mask = F.causal_mask((s, s), x.dtype)
    scores = F.einsum("bhst,st->bhst", scores, mask, join=lambda a, m: a * scale + m, agg=None)
    p = F.softmax(scores, axis=-1)
    o = F.einsum("bhst,bthe->bshe", p, v)
    x = x + F.einsum("bshe,hed->bsd", o, w["wo"])
    h = F.rms_norm(x, w["ffn_norm"], eps)
    a = F.einsum("bsd,df->bsf", h, w["w1"])
    g = F.einsum("bsd,df->bsf", h, w["w3"])
    m = F.einsum("bsf,bsf->bsf", a, g, join=lambda u, c: F.silu(u) * c, agg=None)
    return x + F.einsum("bsf,fd->bsd", m, w["w2"])


def torch_block(x: torch.Tensor, w: Mapping[str, torch.Tensor], eps: float = EPS) -> torch.Tensor:
    """The same block in plain torch (the peer for tests and benchmarks)."""

    def rms(v: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + eps) * g

    s, e = x.shape[1], w["wq"].shape[2]
    h = rms(x, w["attn_norm"])
    q = torch.einsum("bsd,dhe->bshe", h, w["wq"])
    k = torch.einsum("bsd,dhe->bshe", h, w["wk"])
    v = torch.einsum("bsd,dhe->bshe", h, w["wv"])
    scores = torch.einsum("bshe,bthe->bhst", q, k) / math.sqrt(e)
    mask = torch.triu(torch.full((s, s), -math.inf, dtype=x.dtype), diagonal=1)
    p = torch.softmax(scores + mask, dim=-1)
    o = torch.einsum("bhst,bthe->bshe", p, v)
    x = x + torch.einsum("bshe,hed->bsd", o, w["wo"])
    h = rms(x, w["ffn_norm"])
    m = torch.nn.functional.silu(h @ w["w1"]) * (h @ w["w3"])
    return x + m @ w["w2"]


def llama_block(
    size: str = "tiny",
    dtype: str = "float32",
    *,
    mode: str = "inference",
    batch: int | None = None,
    seq: int | None = None,
    lr: float = 0.01,
    with_grads: bool = False,
) -> Workload:
    """Inference: [out]. Train: [loss, *grads (with_grads), *new weights] in WEIGHTS order."""
    dt = check_dtype(dtype, "llama_block")
    if mode not in MODES:
        raise EinrelError(f"llama_block: mode {mode!r} is not one of {MODES}")
    z = pick_size(SIZES, size, "llama_block")
    z = replace(z, batch=batch or z.batch, seq=seq or z.seq)
    if z.heads * z.head_dim != z.d:
        raise EinrelError(f"llama_block: heads × head_dim = {z.heads * z.head_dim} != d = {z.d}")
    shapes = weight_shapes(z)
    xshape = (z.batch, z.seq, z.d)
    x = F.input("x", xshape, dt)
    weights = {k: F.input(k, shapes[k], dt) for k in WEIGHTS}
    out = block(x, weights)
    data = ["x"]
    if mode == "inference":
        outputs, names = [out], ["out"]
    else:
        target = F.input("target", xshape, dt)
        data.append("target")
        outputs, names = train_outputs(F.mse(out, target), weights, with_grads)

    def make_feeds(seed: int) -> Feeds:
        rng = np.random.default_rng(seed)
        feeds: Feeds = {"x": normal(rng, xshape, dt)}
        for k in WEIGHTS:
            shape = shapes[k]
            if k.endswith("norm"):
                feeds[k] = (1 + normal(rng, shape, dt, 0.1)).astype(dt)
            else:
                fan_in = z.d if k in ("wq", "wk", "wv", "w1", "w3") else math.prod(shape[:-1])
                feeds[k] = normal(rng, shape, dt, fan_in**-0.5)
        if mode == "train":
            feeds["target"] = normal(rng, xshape, dt)
            feeds["lr"] = np.float64(lr)
        return feeds

    def loss_fn(t: dict[str, torch.Tensor]) -> torch.Tensor:
        y = torch_block(t["x"], t)
        return torch.nn.functional.mse_loss(y, t["target"])

    def torch_reference(feeds: Mapping[str, Any]) -> list[np.ndarray]:
        if mode == "train":
            return torch_train_step(loss_fn, feeds, data, list(WEIGHTS), with_grads)
        t = to_torch(feeds, ["x", *WEIGHTS])
        with torch.no_grad():
            return to_numpy([torch_block(t["x"], t)])

    return Workload(
        name="llama_block",
        outputs=outputs,
        output_names=names,
        make_feeds=make_feeds,
        flops=graph_flops(outputs),
        torch_reference=torch_reference,
        meta={
            "size": size,
            "dtype": dt,
            "mode": mode,
            "shape": z,
            "weights": list(WEIGHTS),
            "lr": lr,
            "with_grads": with_grads,
        },
    )
