"""Run placed task graphs: a scheduling core shared by a local threaded engine and a simulator."""

from .core import PRIORITIES, Core, Event, Plan, make_plan, remaining_path
from .costmodel import CostModel, calibrate, calibrate_and_save, default_path
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
