"""`Program.explain()`: why the plan looks the way it does, as rich tables."""

from __future__ import annotations

from typing import Any


def explain(prog: Any, console: Any = None) -> None:
    """Per node: partition and modelled cost; per device: tasks, flops, bytes, busy time;
    projected (simulated) next to measured time when a run happened."""
    from rich.console import Console
    from rich.table import Table

    from .decompose import node_costs

    console = console or Console()
    plan = prog.plan
    costs = node_costs(plan.graph, plan.decomposition)
    nodes = Table(title=f"partitions ({plan.partitioner}), modelled cost {plan.cost:.4g} elements")
    for col in ("node", "op", "shape", "parts", "join", "agg", "repartition", "tasks"):
        nodes.add_column(
            col, justify="right" if col in ("join", "agg", "repartition", "tasks") else "left"
        )
    ntasks: dict[int, int] = {}
    for t in plan.tasks.tasks:
        ntasks[t.node] = ntasks.get(t.node, 0) + 1
    for n in plan.graph.nodes:
        c = costs.get(n.id)
        parts = " ".join(f"{k}{v}" for k, v in plan.partitions[n.name].items() if v > 1) or "whole"
        what = n.einsum.spec if n.op == "einsum" else n.op
        nodes.add_row(
            n.name,
            what,
            str(list(n.shape)),
            parts,
            *(f"{getattr(c, k, 0.0):.3g}" for k in ("join", "agg", "repartition")),
            str(ntasks.get(n.id, 0)),
        )
    console.print(nodes)
    stats = plan.tasks.stats()
    sim = prog.simulate()
    rep = prog.report
    devs = Table(
        title=f"devices: simulated makespan {sim * 1e3:.2f} ms"
        + (f", measured {rep.wall_time_s * 1e3:.2f} ms" if rep.wall_time_s else "")
    )
    for col in ("device", "tasks", "GFLOP", "MiB produced", "busy ms", "peak MiB"):
        devs.add_column(col, justify="right")
    for d, s in enumerate(stats["devices"]):
        devs.add_row(
            str(d),
            str(s["tasks"]),
            f"{s['flops'] / 1e9:.3g}",
            f"{s['bytes'] / 2**20:.3g}",
            f"{rep.busy_s.get(d, 0.0) * 1e3:.1f}",
            f"{rep.peak_bytes.get(d, 0) / 2**20:.3g}",
        )
    console.print(devs)
    console.print(
        f"bytes moved between devices: {stats['bytes_moved'] / 2**20:.3g} MiB "
        f"(plan), {rep.bytes_moved / 2**20:.3g} MiB (last run); offloaded "
        f"{rep.bytes_offloaded / 2**20:.3g} MiB"
    )
