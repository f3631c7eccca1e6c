"""The torch arena backend: one uint8 torch buffer per device (CUDA, or CPU tensors
standing in for it), blocks as typed views, torch kernels, one CUDA stream per engine
thread and pinned host buffers."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from ...errors import CompileError
from ...kernels.torch_dense import TORCH, TORCH_DTYPES
from ...memory import MemGraph
from .arenas import Arenas


def cuda_available() -> bool:
    return torch.cuda.is_available() and torch.cuda.device_count() > 0


class TorchArenas(Arenas):
    """Arenas as one uint8 torch tensor per device, blocks as typed views, torch kernels.

    Every engine thread has its own CUDA stream on its device (`lane_context`); a node runs on
    the thread's stream and the thread waits for it, so transfers overlap compute on the copy
    engines. Host buffers are pinned on CUDA. With `device="cpu"` the same code runs on CPU
    tensors (no streams, no pinning)."""

    name = "torch"
    ops = TORCH

    def __init__(
        self, device: str = "cuda", ids: Sequence[int] | None = None, pin_memory: bool | None = None
    ) -> None:
        if device not in ("cuda", "cpu"):
            raise CompileError(f"TorchArenas: device must be 'cuda' or 'cpu', got {device!r}")
        if device == "cuda" and not cuda_available():
            raise CompileError("TorchArenas: no CUDA device is visible (use device='cpu')")
        super().__init__()
        self.kind = device
        self.ids = tuple(ids) if ids else None
        self.pin = (device == "cuda") if pin_memory is None else pin_memory
        self._local = threading.local()
        self._threads = 1

    def torch_device(self, d: int) -> torch.device:
        if self.kind == "cpu":
            return torch.device("cpu")
        return torch.device("cuda", self.ids[d] if self.ids else d)

    # --- storage -------------------------------------------------------------------------------
    def _buffer(self, nbytes: int, device: int | None) -> torch.Tensor:
        if device is None:
            buf = torch.empty(nbytes, dtype=torch.uint8, pin_memory=self.pin)
        else:
            buf = torch.empty(nbytes, dtype=torch.uint8, device=self.torch_device(device))
        buf.zero_()
        return buf

    def _size(self, buf: torch.Tensor) -> int:
        return int(buf.numel())

    def prepare(self, mg: MemGraph, host_blocks: Sequence[int]) -> None:
        super().prepare(mg, host_blocks)
        if self.kind == "cuda":
            torch.cuda.synchronize()

    def _check(self, mg: MemGraph) -> None:
        if any(t.support is not None for t in mg.taskgraph.tasks):
            raise CompileError(
                "relations run on the numpy memory engine (er.cpu(n, memory=...)); the torch "
                "arena backend and GPU devices do not hold relation blocks yet"
            )

    def _typed(self, raw: torch.Tensor, dtype: str, shape: Sequence[int]) -> torch.Tensor:
        return raw.view(TORCH_DTYPES[dtype]).view(tuple(shape))

    def _transfer(self, dst: torch.Tensor, src: torch.Tensor) -> None:
        dst.copy_(src, non_blocking=self.kind == "cuda")
        self._finish()

    def _finish(self) -> None:
        s = getattr(self._local, "stream", None)
        if s is not None:
            s.synchronize()

    def _to_numpy(self, a: torch.Tensor) -> np.ndarray:
        return a.to(torch.float32).numpy() if a.dtype == torch.bfloat16 else a.numpy()

    @contextlib.contextmanager
    def lane_context(self, device: int, lane: int) -> Iterator[None]:
        """Each engine thread gets its own stream on its device for its whole life."""
        if self.kind == "cpu":
            self._local.stream = None
            # torch's intra-op thread count is per calling thread: set it in every worker
            torch.set_num_threads(self._threads if lane == 0 else 1)
            yield
            return
        dev = self.torch_device(device)
        with torch.cuda.device(dev):
            stream = torch.cuda.Stream(dev)
            self._local.stream = stream
            with torch.cuda.stream(stream):
                yield

    @contextlib.contextmanager
    def threads(self, n: int) -> Iterator[None]:
        """torch intra-op threads per worker (CPU tensors) for the run; restored after."""
        old = torch.get_num_threads()
        self._threads = n
        if self.kind == "cpu":
            torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(old)
