"""Memory planning with offload (TURNIP): the pipeline stage between placement and engines.

The implementation lives in `einrel.memory` (graph, allocator, plan, interpret); this module is
the stable import path: `plan_memory` builds a `MemGraph`, `interpret_memory` runs one.
"""

from .memory import (
    ALIGNMENT,
    KINDS,
    STRATEGIES,
    Allocator,
    ArenaMachine,
    Frontier,
    MemGraph,
    MemNode,
    MemorySafetyError,
    MemStats,
    OutputPlace,
    Region,
    Step,
    aligned,
    compute_block,
    interpret_memory,
    min_budget,
    plan_memory,
    planning_steps,
    random_linear_extension,
    run_memory,
)

__all__ = [
    "ALIGNMENT",
    "KINDS",
    "STRATEGIES",
    "Allocator",
    "ArenaMachine",
    "Frontier",
    "MemGraph",
    "MemNode",
    "MemStats",
    "MemorySafetyError",
    "OutputPlace",
    "Region",
    "Step",
    "aligned",
    "compute_block",
    "interpret_memory",
    "min_budget",
    "plan_memory",
    "planning_steps",
    "random_linear_extension",
    "run_memory",
]
