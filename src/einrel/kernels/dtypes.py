"""How einrel dtypes are stored and computed on numpy blocks, and the aggregation
ufuncs. Low-precision dtypes (float16, bfloat16) compute in float32 and round each
node's result to their precision; bfloat16 values travel as float32 arrays holding
bfloat16-representable values."""

from __future__ import annotations

import math

import numpy as np

AGG_UFUNC = {"sum": np.add, "prod": np.multiply, "max": np.maximum, "min": np.minimum}


_STORAGE = {
    "float32": np.float32,
    "float64": np.float64,
    "float16": np.float16,
    "bfloat16": np.float32,
}


def storage_dtype(dtype: str) -> np.dtype:
    """The numpy dtype that holds a tensor of einrel dtype `dtype`."""
    return np.dtype(_STORAGE[dtype])


def compute_dtype(dtype: str) -> np.dtype:
    return np.dtype(np.float64 if dtype == "float64" else np.float32)


def finish(x: np.ndarray, dtype: str) -> np.ndarray:
    """Round a float32/float64 result to `dtype` and store it in its storage dtype.

    The result is always a writable array: kernels may produce read-only broadcast views.
    """
    if dtype == "bfloat16":
        import torch

        x = np.asarray(x, dtype=np.float32, order="C")
        t = torch.from_numpy(x if x.flags.writeable else x.copy())
        return t.to(torch.bfloat16).to(torch.float32).numpy()
    with np.errstate(over="ignore"):  # rounding past float16's range gives inf, as it must
        out = np.asarray(x, dtype=_STORAGE[dtype])
    return out if out.flags.writeable else out.copy()


def combine(agg: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Combine two partial aggregates (the group-by step of a split aggregated label)."""
    return AGG_UFUNC[agg](a, b)


def agg_identity(agg: str) -> float:
    return {"sum": 0.0, "prod": 1.0, "max": -math.inf, "min": math.inf}[agg]
