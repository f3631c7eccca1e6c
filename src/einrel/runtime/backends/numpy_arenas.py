"""The numpy arena backend of the memory engine: one uint8 numpy buffer per device, blocks as
typed views at their planned offsets, host copies in a pool of numpy buffers, numpy kernels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ...errors import CompileError
from ...kernels.dtypes import storage_dtype
from ...kernels.ops import NUMPY
from ...memory import MemGraph
from .arenas import Arenas


class NumpyArenas(Arenas):
    """Arenas as numpy uint8 buffers (every page touched when allocated, not in a timed run)."""

    name = "numpy"
    ops = NUMPY

    def _buffer(self, nbytes: int, device: int | None) -> np.ndarray:
        return np.zeros(nbytes, np.uint8)

    def _typed(self, raw: np.ndarray, dtype: str, shape: Sequence[int]) -> np.ndarray:
        return raw.view(storage_dtype(dtype)).reshape(tuple(shape))

    def _transfer(self, dst: np.ndarray, src: np.ndarray) -> None:
        np.copyto(dst, src, casting="unsafe")

    def _check(self, mg: MemGraph) -> None:
        if any(t.dtype == "bfloat16" for t in mg.taskgraph.tasks):
            raise CompileError(
                "the numpy memory engine keeps blocks in their storage dtype and cannot hold "
                "bfloat16 blocks in an arena; use float16/float32/float64 or the torch backend"
            )

    def threads(self, n: int) -> Any:
        from threadpoolctl import ThreadpoolController

        return ThreadpoolController().limit(limits=n, user_api="blas")
