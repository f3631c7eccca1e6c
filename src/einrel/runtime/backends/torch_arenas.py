"""The torch arena backend: one uint8 torch buffer per device (CUDA, or CPU tensors
standing in for it), blocks as typed views, torch kernels, one CUDA stream per engine
thread and pinned host buffers."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch

from ...errors import CompileError
from ...kernels.torch_dense import TORCH_DTYPES, run_into, touch_into
from ...memory import MemGraph, MemNode, Region
from ..mem.schedule import Fetch
from ..transfer import Link


def cuda_available() -> bool:
    return torch.cuda.is_available() and torch.cuda.device_count() > 0


class TorchArenas:
    """Arenas as one uint8 torch tensor per device, blocks as typed views, torch kernels."""

    name = "torch"

    def __init__(
        self, device: str = "cuda", ids: Sequence[int] | None = None, pin_memory: bool | None = None
    ) -> None:
        if device not in ("cuda", "cpu"):
            raise CompileError(f"TorchArenas: device must be 'cuda' or 'cpu', got {device!r}")
        if device == "cuda" and not cuda_available():
            raise CompileError("TorchArenas: no CUDA device is visible (use device='cpu')")
        self.kind = device
        self.ids = tuple(ids) if ids else None
        self.pin = (device == "cuda") if pin_memory is None else pin_memory
        self.mg: MemGraph | None = None
        self.arenas: list[torch.Tensor] = []
        self.host: dict[int, torch.Tensor] = {}
        self._local = threading.local()
        self._threads = 1

    def torch_device(self, d: int) -> torch.device:
        if self.kind == "cpu":
            return torch.device("cpu")
        return torch.device("cuda", self.ids[d] if self.ids else d)

    # --- setup -------------------------------------------------------------------------------
    def prepare(self, mg: MemGraph, host_blocks: Sequence[int]) -> None:
        if self.mg is mg:
            return
        tasks = mg.taskgraph.tasks
        arenas = []
        for d in range(mg.ndev):
            size = mg.arena_size(d)
            old = self.arenas[d] if d < len(self.arenas) else None
            if old is not None and old.numel() >= size:
                arenas.append(old)
            else:
                self.arenas = self.arenas[:d]  # let the old buffer go before allocating anew
                a = torch.empty(size, dtype=torch.uint8, device=self.torch_device(d))
                a.zero_()
                arenas.append(a)
        host = {}
        for b in host_blocks:
            buf = torch.empty(tasks[b].nbytes, dtype=torch.uint8, pin_memory=self.pin)
            buf.zero_()
            host[b] = buf
        if self.kind == "cuda":
            torch.cuda.synchronize()
        self.arenas, self.host, self.mg = arenas, host, mg

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

    def _sync(self) -> None:
        s = getattr(self._local, "stream", None)
        if s is not None:
            s.synchronize()

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

    # --- data --------------------------------------------------------------------------------
    def view(self, block: int, r: Region) -> torch.Tensor:
        assert self.mg is not None
        t = self.mg.taskgraph.tasks[block]
        raw = self.arenas[r.device][r.offset : r.offset + t.nbytes]
        return raw.view(TORCH_DTYPES[t.dtype]).view(t.shape)

    def host_view(self, block: int) -> torch.Tensor:
        assert self.mg is not None
        t = self.mg.taskgraph.tasks[block]
        return self.host[block].view(TORCH_DTYPES[t.dtype]).view(t.shape)

    def output(
        self, block: int, region: Region | None, inputs: Mapping[int, np.ndarray]
    ) -> np.ndarray:
        if region is None and self.mg is not None:
            t = self.mg.taskgraph.tasks[block]
            if t.kind == "input":  # evicted without a copy: the caller's array holds it
                return np.asarray(
                    inputs[t.node][tuple(slice(o, o + s) for o, s in zip(t.offset, t.shape))]
                )
        h = self.host_view(block)
        if h.dtype == torch.bfloat16:
            return h.to(torch.float32).numpy()
        return h.numpy()

    # --- node kinds --------------------------------------------------------------------------
    def compute(
        self,
        n: MemNode,
        first: bool,
        inputs: Mapping[int, np.ndarray],
        variables: Mapping[str, float],
        link: Link | None,
    ) -> None:
        mg = self.mg
        assert mg is not None and n.region is not None
        t = mg.taskgraph.tasks[n.block]
        out = self.view(n.block, n.region)
        args = [self.view(b, r) for b, r in zip(n.sources, n.reads)]
        if n.kind == "touch":
            touch_into(t.op, first, out, args[0])
            self._sync()
        elif t.kind == "input":
            assert link is not None

            def copy() -> None:
                run_into(t, args, out, inputs, variables)
                self._sync()

            link.transfer(copy, t.nbytes)
        else:
            run_into(t, args, out, inputs, variables)
            self._sync()

    def _copy(self, dst: torch.Tensor, src: torch.Tensor, link: Link, nbytes: int) -> None:
        def copy() -> None:
            dst.copy_(src, non_blocking=self.kind == "cuda")
            self._sync()

        link.transfer(copy, nbytes)

    def evict(self, n: MemNode, link: Link, inputs: Mapping[int, np.ndarray]) -> None:
        assert n.region is not None and self.mg is not None
        if self.mg.taskgraph.tasks[n.block].kind == "input":
            return  # the caller's input array is its host copy already
        nbytes = self.mg.block_bytes(n.block)
        self._copy(self.host_view(n.block), self.view(n.block, n.region), link, nbytes)

    def load(self, n: MemNode, link: Link, inputs: Mapping[int, np.ndarray]) -> None:
        assert n.region is not None and self.mg is not None
        t = self.mg.taskgraph.tasks[n.block]
        if t.kind == "input":
            out = self.view(n.block, n.region)

            def copy() -> None:
                run_into(t, [], out, inputs, {})
                self._sync()

            link.transfer(copy, t.nbytes)
            return
        nbytes = self.mg.block_bytes(n.block)
        self._copy(self.view(n.block, n.region), self.host_view(n.block), link, nbytes)

    def fetch(self, f: Fetch, link: Link) -> None:
        assert self.mg is not None
        nbytes = self.mg.block_bytes(f.block)
        self._copy(self.host_view(f.block), self.view(f.block, f.region), link, nbytes)
