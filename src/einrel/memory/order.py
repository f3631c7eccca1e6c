"""Planning orders for the memory planner.

`plan_memory` simulates the task graph in task id order, so the order of ids is the order whose
working set the plan is built around. Task ids come out of `build_tasks` node by node: every
block of one node, then every block of the next, so a node split into many blocks has all of
them live before any consumer runs. TURNIP plans in a depth-first topological order instead;
`depth_first(tg)` renumbers a placed task graph that way (a post-order walk from the outputs, each
task right after the inputs it needs), which keeps the blocks of one head, one row band, ... of
a split computation together and cuts evictions. The result is an equivalent task graph: the
same tasks, values and placement, ids in the new order.
"""

from __future__ import annotations

from ..taskgraph.ir import Task, TaskGraph

ORDERS = ("id", "depth-first")


def depth_first_order(tg: TaskGraph, latest_first: bool = True) -> list[int]:
    """Task ids in a post-order walk from the graph outputs (then any unreachable tasks).

    With `latest_first` the walk starts from the output block built last: in a training step
    that is the update of the last layer, so the backward pass finishes each layer (its
    gradient, then its update) while the layer's weights are still at hand."""
    n = len(tg.tasks)
    seen = [False] * n
    order: list[int] = []
    roots = list(dict.fromkeys(t for row in tg.outputs for t, _ in row))
    outs = set(roots)
    roots += [t.id for t in tg.tasks if not tg.consumers(t.id) and t.id not in outs]
    if latest_first:
        roots.sort(reverse=True)
    for root in roots:
        if seen[root]:
            continue
        stack: list[tuple[int, int]] = [(root, 0)]
        seen[root] = True
        while stack:
            t, k = stack[-1]
            ins = tg.tasks[t].inputs
            while k < len(ins) and seen[ins[k]]:
                k += 1
            if k < len(ins):
                stack[-1] = (t, k + 1)
                seen[ins[k]] = True
                stack.append((ins[k], 0))
            else:
                stack.pop()
                order.append(t)
    order += [t for t in range(n) if not seen[t]]
    return order


def renumber(tg: TaskGraph, order: list[int]) -> TaskGraph:
    """The same task graph with task `order[k]` as task k (order must be topological)."""
    new = {old: k for k, old in enumerate(order)}
    tasks = []
    for old in order:
        t = tg.tasks[old]
        tasks.append(
            Task(
                new[old],
                t.kind,
                t.node,
                tuple(new[i] for i in t.inputs),
                t.shape,
                t.dtype,
                t.device,
                t.op,
                t.offset,
                t.support,
            )
        )
    outputs = tuple(tuple((new[t], off) for t, off in row) for row in tg.outputs)
    out = TaskGraph(tg.graph, tuple(tasks), outputs, tg.ndev)
    out.validate()
    return out


def reorder(tg: TaskGraph, order: str = "depth-first") -> TaskGraph:
    """`tg` renumbered in planning order `order` ("id" leaves it as it is)."""
    if order == "id":
        return tg
    if order == "depth-first":
        return renumber(tg, depth_first_order(tg))
    from ..errors import CompileError

    raise CompileError(f"unknown planning order {order!r}; expected one of {ORDERS}")
