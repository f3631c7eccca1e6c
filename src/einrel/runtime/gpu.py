"""GPU devices: the memory engine over torch arenas, with CUDA streams and pinned host memory.

`TorchArenas` keeps one uint8 torch buffer per device (the arena) and reads and writes blocks
through typed views of it at their planned offsets; evicted blocks and outputs go to a pool of
pinned host buffers allocated once per memory graph. Every worker and channel of the engine
is a thread with its own CUDA stream (compute workers, host-to-device, device-to-host, peer):
a node is launched on the thread's stream and the thread waits for that stream, so transfers
overlap compute on the copy engines while the run-time order is still picked by the engine's
ready queues. With `device="cpu"` the very same code runs on CPU tensors (no streams, no
pinning), which is how the GPU path is tested on machines without one.

`GpuEngine(er.gpu(...))` is what `er.compile` builds for GPU devices; `GpuEngine(2,
device="cpu")` stands in for two GPUs on the CPU.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch

from ..devices import Devices
from ..errors import CompileError
from ..memory import MemGraph, MemNode, Region
from ..taskgraph import TaskGraph
from .costmodel import CostModel
from .memengine import Fetch, MemEngine, MemRunResult
from .memtorch import TORCH_DTYPES, run_into, touch_into
from .transfer import Link


def cuda_available() -> bool:
    return torch.cuda.is_available() and torch.cuda.device_count() > 0


def default_budget(devices: Devices, fraction: float = 0.9) -> int | None:
    """A budget for GPUs given none: `fraction` of the smallest device's free memory now
    (None when no CUDA device is visible)."""
    if not cuda_available():
        return None
    ids = devices.ids or tuple(range(devices.n))
    free = [torch.cuda.mem_get_info(i)[0] for i in ids]
    return int(min(free) * fraction)


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


class GpuEngine(MemEngine):
    """The memory engine on torch arenas: CUDA devices, or CPU tensors with `device="cpu"`.

    Defaults differ from the CPU engine where GPUs differ: two compute streams per device and
    no cap on running kernels from the host's core count.
    """

    def __init__(
        self,
        devices: Devices | int = 1,
        device: str | None = None,
        priority: str | Sequence[float] = "given",
        workers_per_device: int = 2,
        transfer_bandwidth: float | str | None = None,
        jitter: float = 0.0,
        seed: int | None = None,
        cost_model: CostModel | None = None,
        max_running: int | None = None,
        threads_per_worker: int | None = None,
    ) -> None:
        if isinstance(devices, Devices):
            ndev, ids = devices.n, devices.ids
        else:
            ndev, ids = int(devices), None
        kind = device if device is not None else ("cuda" if cuda_available() else "cpu")
        backend = TorchArenas(kind, ids)
        if max_running is None and kind == "cuda":
            max_running = ndev * workers_per_device
        super().__init__(
            ndev,
            priority=priority,
            workers_per_device=workers_per_device,
            transfer_bandwidth=transfer_bandwidth,
            jitter=jitter,
            seed=seed,
            cost_model=cost_model,
            max_running=max_running,
            backend=backend,
            threads_per_worker=threads_per_worker,
        )
        self.device = kind
        self._planned: tuple[TaskGraph, MemGraph] | None = None

    def run(  # type: ignore[override]
        self,
        mg: MemGraph | TaskGraph,
        inputs: Mapping[int, np.ndarray],
        variables: Mapping[str, float] | None = None,
        trace: bool = False,
        priority: str | Sequence[float] | None = None,
    ) -> MemRunResult:
        """Run a memory graph (a placed task graph is planned first, with no budget)."""
        if isinstance(mg, TaskGraph):
            from ..memory import plan_memory

            if self._planned is None or self._planned[0] is not mg:
                self._planned = (mg, plan_memory(mg, None))
            mg = self._planned[1]
        return super().run(mg, inputs, variables, trace=trace, priority=priority)
