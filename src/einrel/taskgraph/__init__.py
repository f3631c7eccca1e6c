"""The block-level task graph: its IR (`ir`), how a decomposed graph becomes tasks (`build`), how
tasks get devices (`place`), the block interpreter (`interpret`) and the cost model of a task's
duration (`cost`)."""

from .build import build_tasks, check_decomposition, output_partition
from .interpret import assemble_outputs, interpret_tasks, run_task
from .ir import KINDS, Piece, Task, TaskGraph
from .place import place_tasks

__all__ = [
    "KINDS",
    "Piece",
    "Task",
    "TaskGraph",
    "assemble_outputs",
    "build_tasks",
    "check_decomposition",
    "interpret_tasks",
    "output_partition",
    "place_tasks",
    "run_task",
]
