"""Stage III's cost oracle: einrel's own task graphs run on the local engine, wall time measured.

A `RealTarget` is a workload decomposed for `ndev` devices: its unplaced task graph, the
placement view of it (`einrel.place.placers.to_place_graph` under the cost model, the graph the
policies see) and bound feeds. `run(assignment)` maps the assignment back to tasks, inserts the
moves (`einrel.taskgraph.place_tasks`), runs it on `LocalEngine(ndev)` and returns the wall time.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from typing import Any

from ...errors import CompileError
from ..dag import PlaceGraph

SPEC = re.compile(r"^(?P<name>[a-z_]+)(?::(?P<size>[a-z0-9]+))?$")


@dataclass
class RealTarget:
    name: str
    ndev: int
    tasks: Any  # the unplaced TaskGraph
    graph: PlaceGraph
    ops: list[int]  # task id of each op of `graph`
    inputs: dict[int, Any]
    variables: dict[str, float]
    engine: Any

    def devices(self, assignment: list[int]) -> list[int]:
        """A device per task (-1 for leaves) from a device per op."""
        out = [-1] * len(self.tasks.tasks)
        for i, t in enumerate(self.ops):
            out[t] = int(assignment[i])
        return out

    def run(self, assignment: list[int], repeats: int = 1) -> float:
        """Median wall time in seconds of `repeats` runs of the placed task graph."""
        from ...taskgraph.place import place_tasks

        placed = place_tasks(self.tasks, self.devices(assignment), self.ndev)
        times = [
            self.engine.run(placed, self.inputs, self.variables).wall_time_s for _ in range(repeats)
        ]
        return statistics.median(times)


def is_workload_spec(text: str) -> bool:
    """True for `NAME[:SIZE]` naming one of einrel's workloads (e.g. `llama_block:medium`)."""
    from ...workloads import WORKLOADS

    m = SPEC.match(text)
    return m is not None and m.group("name") in WORKLOADS


def workload_target(
    spec: str,
    ndev: int,
    *,
    dtype: str = "float32",
    partitioner: str = "eindecomp",
    seed: int = 0,
) -> RealTarget:
    """Build `NAME[:SIZE]` (training step with gradients where the workload has one), fuse and
    decompose it for `ndev` devices with `partitioner` as `er.compile` does (so the placement
    graph, and its fingerprint, is the one `er.compile(..., placer="doppler")` sees), and bind
    its feeds for the local engine."""
    from ...decompose import get_partitioner
    from ...frontend.reference import bind_feeds
    from ...frontend.tensor import build_graph
    from ...ir.fuse import fuse_elementwise
    from ...runtime.local import LocalEngine
    from ...taskgraph.build import build_tasks
    from ...taskgraph.cost import CostModel
    from ...workloads import SIZES, get_workload
    from ..placers import to_place_graph

    m = SPEC.match(spec)
    if not m or not is_workload_spec(spec):
        raise CompileError(
            f"{spec!r} is not a workload; expected NAME[:SIZE] with NAME one of {sorted(SIZES)}"
        )
    name, size = m.group("name"), m.group("size") or "small"
    if size not in SIZES[name]:
        raise CompileError(f"workload {name}: unknown size {size!r}; sizes: {SIZES[name]}")
    options: dict[str, Any] = {}
    if name == "llama_block":
        options = {"mode": "train", "with_grads": True}
    elif name == "ffnn_train":
        options = {"with_grads": True}
    wl = get_workload(name, size, dtype, **options)
    graph = fuse_elementwise(build_graph(wl.outputs))  # as er.compile does by default
    decomposition = get_partitioner(partitioner)(graph, ndev)
    tg = build_tasks(graph, decomposition)
    model = CostModel.default()
    pg = to_place_graph(tg, model)
    ops = list(pg.origin[1])
    pg = PlaceGraph(pg.comp, pg.comm, pg.edges, name=f"{name}-{size}")
    inputs, variables = bind_feeds(graph, wl.make_feeds(seed))
    engine = LocalEngine(ndev, cost_model=model)
    return RealTarget(f"{name}-{size}", ndev, tg, pg, ops, inputs, variables, engine)
