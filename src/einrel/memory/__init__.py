"""Memory planning with offload (TURNIP): a dependency graph whose order is chosen at run time.

`plan_memory(tg, budget)` turns a placed task graph into a `MemGraph`: `alloc`, `free`, `evict`
(device -> host), `load` (host -> device) and compute nodes over one byte arena per device.
Edges are data dependencies plus memory dependencies: an `alloc` depends on the `free`/`evict`
nodes that released the range it reuses, and a `free`/`evict` depends on every node that used
the block while it was resident. Any linear extension of that DAG is therefore memory-safe under
the budget, so an engine may run whatever node is ready.

Construction simulates one legal order (task id order) with a future-use oracle: when a device
runs out of room, Belady's rule evicts the resident blocks whose next use is furthest away
(never the operands of the current step), and an evicted block is loaded back before its next
use. The allocator places blocks at real offsets in [0, budget) and prefers the range freed
earliest (lowest dependency), so reuse adds as few ordering constraints as possible.

Aggregations are split into grouped accumulations: an `agg` task with k partials becomes k
`touch` nodes (one partial each, into the output block) and a `done` marker. The touches of one
group have no edges between them, so partials are combined in arrival order, but an engine must
never run two of them at once (`MemGraph.groups` are its locks); the first touch to run copies,
later ones accumulate. This lets each partial be freed as soon as it is added and lowers the
working set of an aggregation from all partials + output to one partial + output. Low-precision
accumulators are rounded at every touch, so float16 sums may differ from the block interpreter
in the last bits; float32 and float64 match up to reassociation.

Other choices: a `reshape` block is a copy, not an alias, so every block owns one region; a
`move` is one compute node on its destination device that reads a region on its source device.
All devices offload to one host store; a load consumes the host copy (as in TURNIP), so a block
evicted twice is copied twice. Graph outputs are never freed: at the end each is resident or on
host, as `MemGraph.outputs` says. Offsets are fixed at plan time, so even a budget equal to the
unconstrained peak can force a few evictions through fragmentation; `strategy="first-fit"`
packs tighter at the price of more memory edges.

Engines use `mg.device_nodes(d)`, `node.deps` / `mg.successors(i)` (or a `Frontier`), run any
ready node (evict/load as asynchronous transfers, `node.is_transfer`), hold `mg.groups[g]` as a
lock around touches, and compute values with the block executor (`taskgraph.execute`);
`mg.fixed_order()` is the planning order for the fixed-order baseline.

`interpret_memory(mg, feeds, order)` executes a MemGraph on raw uint8 arenas in any given order
and checks every memory rule on the way (overlapping live blocks, use of freed or evicted
regions, reads of unwritten data, allocations beyond the budget).
"""

from .allocator import ALIGNMENT, Allocator, aligned
from .graph import (
    KINDS,
    Frontier,
    MemGraph,
    MemNode,
    MemStats,
    OutputPlace,
    Region,
    random_linear_extension,
)
from .interpret import ArenaMachine, MemorySafetyError, interpret_memory, run_memory
from .plan import STRATEGIES, Step, min_budget, plan_memory, planning_steps

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
    "interpret_memory",
    "min_budget",
    "plan_memory",
    "planning_steps",
    "random_linear_extension",
    "run_memory",
]
