"""`Program.explain()`: why the plan looks the way it does, as rich tables."""

from __future__ import annotations

from typing import Any


def wide_console() -> Any:
    """A rich console; piped output gets a wide page instead of rich's default 80 columns."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=160)


def explain(prog: Any, console: Any = None) -> None:
    """Per node: partition and modelled cost; per device: tasks, flops, bytes, busy time;
    projected (simulated) next to measured time when a run happened."""
    from rich.table import Table

    from .decompose import node_costs
    from .decompose.relations import dense_view

    console = console or wide_console()
    plan = prog.plan
    costs = node_costs(dense_view(plan.graph), plan.decomposition)
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
        parts = plan.parts_text(n.name)
        what = n.op
        if n.op in ("einsum", "sparse"):
            what = (n.einsum if n.op == "einsum" else n.attrs.einsum).spec
        nodes.add_row(
            n.name,
            what,
            str(list(n.shape)),
            parts,
            *(f"{getattr(c, k, 0.0):.3g}" for k in ("join", "agg", "repartition")),
            str(ntasks.get(n.id, 0)),
        )
    console.print(nodes)
    keys = any(n.op == "relation" for n in plan.graph.nodes)
    console.print(
        "parts: i×2 = einsum label i cut into 2 blocks; d0×2 = dimension 0 of a non-einsum node; "
        + ("u:key = a key of a relation (its tuples stay in one block); " if keys else "")
        + "join / agg / repartition: modelled elements per stage"
    )
    stats = plan.tasks.stats()
    sim = prog.simulate()
    rep = prog.report
    devs = Table(
        title=f"devices: simulated makespan {sim * 1e3:.2f} ms"
        + (f", measured {rep.wall_time_s * 1e3:.2f} ms" if rep.wall_time_s else "")
    )
    ran = bool(rep.wall_time_s)  # measured columns only once a run happened
    cols = ["device", "tasks", "GFLOP", "MiB produced"] + (["busy ms", "peak MiB"] if ran else [])
    for col in cols:
        devs.add_column(col, justify="right")
    for d, s in enumerate(stats["devices"]):
        busy, peak = rep.busy_s.get(d, 0.0), rep.peak_bytes.get(d, 0)
        measured = [f"{busy * 1e3:.1f}", f"{peak / 2**20:.3g}"]
        devs.add_row(
            str(d),
            str(s["tasks"]),
            f"{s['flops'] / 1e9:.3g}",
            f"{s['bytes'] / 2**20:.3g}",
            *(measured if ran else []),
        )
    console.print(devs)
    line = f"bytes moved between devices: {stats['bytes_moved'] / 2**20:.3g} MiB (plan)"
    if ran:
        line += (
            f", {rep.bytes_moved / 2**20:.3g} MiB (last run); offloaded "
            f"{rep.bytes_offloaded / 2**20:.3g} MiB"
        )
    console.print(line)
