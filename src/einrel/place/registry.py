"""Placers for einrel's own task graphs: one name space for `er.compile(..., placer=NAME)`.

`round-robin` and `eindecomp-greedy` work on the task graph directly. Every other placer works on
a `PlaceGraph`: the unplaced task graph's non-leaf tasks with their modelled compute seconds and
the seconds to ship their output (leaves — graph inputs and fills — are free on every device, as
in the Doppler papers), and its assignment is mapped back to tasks.
"""

from __future__ import annotations

from typing import Any

from ..errors import CompileError
from ..taskgraph.ir import TaskGraph
from .dag import PlaceGraph
from .heuristics import OPTIONAL_PLACERS, PLACERS, get_placer
from .locate import eindecomp_greedy, round_robin

TASK_PLACERS = {"round-robin": round_robin, "eindecomp-greedy": eindecomp_greedy}
LEAVES = ("input", "fill")


def placer_names() -> list[str]:
    return sorted({*TASK_PLACERS, *PLACERS, *OPTIONAL_PLACERS})


def to_place_graph(tg: TaskGraph, cost_model: Any) -> tuple[PlaceGraph, list[int]]:
    """The placement view of an unplaced task graph, and the task id of each operation."""
    ops = [t.id for t in tg.tasks if t.kind not in LEAVES]
    index = {t: i for i, t in enumerate(ops)}
    comp = [cost_model.task_seconds(tg.tasks[t]) for t in ops]
    comm = [cost_model.move_seconds(tg.tasks[t].nbytes) for t in ops]
    edges = [
        (index[i], index[t]) for t in ops for i in dict.fromkeys(tg.tasks[t].inputs) if i in index
    ]
    return PlaceGraph(tuple(comp), tuple(comm), tuple(edges), name="taskgraph"), ops


def place(
    name: str, tg: TaskGraph, ndev: int, cost_model: Any, seed: int = 0, **options: Any
) -> list[int]:
    """A device per task of the unplaced `tg` (leaves get -1: they live wherever needed)."""
    if not isinstance(ndev, int) or ndev < 1:
        raise CompileError(f"need at least one device, got {ndev!r}")
    if name in TASK_PLACERS:
        return list(TASK_PLACERS[name](tg, ndev, seed=seed, **options))
    placer = get_placer(name, **options)
    pg, ops = to_place_graph(tg, cost_model)
    assignment = placer(pg, ndev, seed)
    devices = [-1] * len(tg.tasks)
    for i, t in enumerate(ops):
        devices[t] = int(assignment[i])
    return devices
