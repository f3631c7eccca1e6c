"""Stage III's cost oracle: einrel's own task graphs run on the local engine, wall time measured.

A `RealTarget` is a workload decomposed for `ndev` devices: its unplaced task graph, the
placement view of it (`einrel.place.placers.to_place_graph` under the cost model, the graph the
policies see) and bound feeds. `run(assignment)` maps the assignment back to tasks, inserts the
moves (`einrel.taskgraph.place_tasks`), runs it on `LocalEngine(ndev)` and returns the wall time.
`einrel.workloads.targets` builds one from a workload's name.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from typing import Any

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
