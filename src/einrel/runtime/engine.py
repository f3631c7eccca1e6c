"""What every engine is: the `Engine` protocol `er.compile` builds and `Program` drives, and
the result of one run.

An engine runs the work compile planned for it: a placed `TaskGraph` (local, Ray and simulated
engines) or a `MemGraph` (memory and GPU engines). `run` returns a `RunResult` whose `values`
are the output blocks (`taskgraph.assemble_outputs` tiles them, but for the outputs in
`assembled`, whose blocks were computed in place); `close` lets go of what the
engine holds (threads end with each run; Ray actors and arenas live until then).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass
class RunResult:
    """What one run produced and cost. `values` holds the output blocks listed in the plan;
    `events` (task, device, worker or lane, start, end) is empty unless traced."""

    values: dict[int, np.ndarray]
    wall_time_s: float
    peak_bytes: dict[int, int]
    bytes_moved: int
    bytes_offloaded: int = 0
    busy_s: dict[int, float] = field(default_factory=dict)
    events: list[Any] = field(default_factory=list)
    assembled: dict[int, np.ndarray] = field(default_factory=dict)  # output k, already whole


class Engine(Protocol):
    """An engine: runs planned work on inputs (whole arrays by graph node id)."""

    def run(
        self,
        work: Any,
        inputs: Mapping[int, np.ndarray],
        variables: Mapping[str, float] | None = None,
        trace: bool = False,
    ) -> RunResult: ...

    def close(self) -> None: ...
