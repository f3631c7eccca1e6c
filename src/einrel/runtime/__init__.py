"""Run placed task graphs: a scheduling core shared by a local threaded engine and a simulator."""

from ..taskgraph.cost import CostModel, default_path
from .calibrate import calibrate, calibrate_and_save
from .core import PRIORITIES, Core, Event, Plan, make_plan, remaining_path
from .local import LocalEngine, RunResult
from .sim import SimEngine, SimResult
from .trace import chrome_trace, write_chrome_trace, write_gantt

__all__ = [
    "PRIORITIES",
    "Core",
    "CostModel",
    "Event",
    "LocalEngine",
    "Plan",
    "RunResult",
    "SimEngine",
    "SimResult",
    "calibrate",
    "calibrate_and_save",
    "chrome_trace",
    "default_path",
    "make_plan",
    "remaining_path",
    "write_chrome_trace",
    "write_gantt",
]
