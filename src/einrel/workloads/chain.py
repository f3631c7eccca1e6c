"""Y = C·(D·E) + A·B: the matmul chain of the EinDecomp experiments.

With skewed shapes (A S×S/10, B S/10×S, C S×S/10, D S/10×10S, E 10S×S) the best partition
differs from node to node, which is what makes the chain a test for a decomposer. The papers
use S = 1000·ds; the sizes here scale that down so the chain runs anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .. import frontend as F
from ..errors import EinrelError
from .base import Feeds, Workload, check_dtype, graph_flops, normal, pick_size, to_numpy, to_torch

SIZES: dict[str, int] = {"tiny": 20, "small": 200, "medium": 1000}
SHAPES = ("skewed", "square")


def chain_shapes(s: int, shape: str = "skewed") -> dict[str, tuple[int, int]]:
    """Shapes of A..E for side S."""
    if shape == "square":
        return {k: (s, s) for k in "ABCDE"}
    if shape != "skewed":
        raise EinrelError(f"matmul_chain: shape {shape!r} is not one of {SHAPES}")
    if s % 10:
        raise EinrelError(f"matmul_chain: skewed shapes need S divisible by 10, got S={s}")
    t, w = s // 10, 10 * s
    return {"A": (s, t), "B": (t, s), "C": (s, t), "D": (t, w), "E": (w, s)}


def matmul_chain(
    size: str = "tiny", dtype: str = "float32", *, s: int | None = None, shape: str = "skewed"
) -> Workload:
    """The chain at a named size (or an explicit side `s`), skewed or all square."""
    dtype = check_dtype(dtype, "matmul_chain")
    side = int(s) if s is not None else pick_size(SIZES, size, "matmul_chain")
    shapes = chain_shapes(side, shape)
    A, B, C, D, E = (F.input(k, shapes[k], dtype) for k in "ABCDE")
    de = F.einsum("ij,jk->ik", D, E)
    y = F.einsum("ij,jk->ik", C, de) + F.einsum("ij,jk->ik", A, B)

    def make_feeds(seed: int) -> Feeds:
        rng = np.random.default_rng(seed)
        # Right-hand factors scaled by 1/sqrt(inner dim), so every product stays O(1).
        scale = {"A": 1.0, "B": shapes["B"][0] ** -0.5, "C": shapes["C"][1] ** -0.5, "D": 1.0}
        scale["E"] = shapes["E"][0] ** -0.5
        return {k: normal(rng, shapes[k], dtype, scale[k]) for k in "ABCDE"}

    def torch_reference(feeds: Mapping[str, Any]) -> list[np.ndarray]:
        t = to_torch(feeds, "ABCDE")
        with torch.no_grad():
            return to_numpy([t["C"] @ (t["D"] @ t["E"]) + t["A"] @ t["B"]])

    return Workload(
        name="matmul_chain",
        outputs=[y],
        output_names=["Y"],
        make_feeds=make_feeds,
        flops=graph_flops([y]),
        torch_reference=torch_reference,
        meta={
            "size": size if s is None else f"S={side}",
            "S": side,
            "shape": shape,
            "dtype": dtype,
            "shapes": shapes,
        },
    )
