"""Run placed task graphs: a scheduling core shared by a local threaded engine and a simulator."""

from ..taskgraph.cost import CostModel, default_path
from .calibrate import calibrate, calibrate_and_save
from .core import TASK_PRIORITIES, Core, Event, TaskSchedule, make_task_schedule, remaining_path
from .engine import Engine, RunResult
from .local import LocalEngine
from .sim import SimEngine, SimResult
from .trace import chrome_trace, write_chrome_trace, write_gantt

__all__ = [
    "TASK_PRIORITIES",
    "Core",
    "CostModel",
    "Engine",
    "Event",
    "LocalEngine",
    "RunResult",
    "SimEngine",
    "SimResult",
    "TaskSchedule",
    "calibrate",
    "calibrate_and_save",
    "chrome_trace",
    "default_path",
    "make_task_schedule",
    "remaining_path",
    "write_chrome_trace",
    "write_gantt",
]
