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

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ..devices import Devices
from ..memory import MemGraph
from ..taskgraph.cost import CostModel
from ..taskgraph.ir import TaskGraph
from .backends.torch_arenas import TorchArenas, cuda_available
from .mem.engine import MemEngine, MemRunResult


def default_budget(devices: Devices, fraction: float = 0.9) -> int | None:
    """A budget for GPUs given none: `fraction` of the smallest device's free memory now
    (None when no CUDA device is visible)."""
    if not cuda_available():
        return None
    ids = devices.ids or tuple(range(devices.n))
    free = [torch.cuda.mem_get_info(i)[0] for i in ids]
    return int(min(free) * fraction)


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

    def run(
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
