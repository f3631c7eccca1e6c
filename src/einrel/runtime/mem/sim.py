"""A simulated clock for the memory engine: the same ready queues, priorities, resources, group
locks and memory books as `MemEngine`, driven by modelled durations instead of threads.

Kernels take what the cost model says, host transfers `nbytes / bandwidth` stretched by the
engine's jitter (an evicted input block costs nothing: its host copy is the caller's array),
markers nothing. It predicts how a priority or the fixed order fares on a memory graph without
noise from the machine, and it checks that a schedule can always finish.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ...memory import MemGraph
from ...taskgraph.cost import CostModel
from ..sim import run_clock
from ..transfer import check_jitter, host_links, parse_bandwidth
from .core import MemCore
from .schedule import MemEvent, make_schedule, node_seconds


@dataclass
class MemSimResult:
    makespan_s: float
    peak_bytes: dict[int, int]
    busy_s: dict[int, float]
    bytes_offloaded: int
    events: list[MemEvent] = field(default_factory=list)
    order: list[int] = field(default_factory=list)


def simulate_memory(
    mg: MemGraph,
    priority: str | Sequence[float] = "given",
    ndev: int | None = None,
    workers_per_device: int = 1,
    transfer_bandwidth: float | str | None = None,
    jitter: float = 0.0,
    seed: int | None = None,
    cost_model: CostModel | None = None,
    max_running: int | None = None,
    durations: Callable[[int], float] | None = None,
) -> MemSimResult:
    """Simulate one run of `mg`; `durations(i)` overrides the modelled time of node i. The
    arguments mean what they mean for `MemEngine`, whose core and links this runs."""
    ndev = ndev or mg.ndev
    model = cost_model or CostModel.default()
    bandwidth, jitter = parse_bandwidth(transfer_bandwidth), check_jitter(jitter)
    sched = make_schedule(mg, ndev, priority, model, bandwidth)
    rng = random.Random(seed)  # drawn in the engine's order: random keys, then link streams
    core = MemCore(sched, workers_per_device, max_running, rng, record=True)
    links = host_links(ndev, bandwidth, jitter, rng.randrange(2**62))
    n = len(mg.nodes)
    secs = node_seconds(mg, model, None)
    tasks = mg.taskgraph.tasks

    def seconds(i: int, slot: int) -> float:
        if durations is not None:
            return float(durations(i))
        link = links.get(core.slot_res[slot])
        if i >= n:
            f = sched.fetch[i - n]
            return link.seconds(tasks[f.block].nbytes) if link else 0.0
        node = mg.nodes[i]
        if link is not None and bandwidth is not None:
            if node.kind == "evict" and tasks[node.block].kind == "input":
                return 0.0
            return link.seconds(tasks[node.block].nbytes)
        return secs[i]

    now = run_clock(core, seconds)
    return MemSimResult(
        makespan_s=now,
        peak_bytes=dict(enumerate(core.peak)),
        busy_s=dict(enumerate(core.busy)),
        bytes_offloaded=core.offloaded,
        events=core.events or [],
        order=core.order,
    )
