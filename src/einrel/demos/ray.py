"""`einrel demo --engine ray`: the demo's main job (one LLaMA-block training step) compiled for
`er.ray(n)` and run by one pinned Ray actor per device, checked against the reference
interpreter.

Without an address (and no `RAY_ADDRESS` in the environment) a local Ray cluster is started for
the run; with `RAY_ADDRESS=auto` (after `ray start --head` on this machine and `ray start
--address=HEAD_IP:6379` on the others) the actors spread over the cluster's nodes.
"""

from __future__ import annotations

import math
import statistics
import time

import numpy as np
from rich.console import Console
from rich.table import Table

# The demo's named shapes: a llama_block size with the batch and sequence the demo uses.
SIZES: dict[str, tuple[str, int | None, int | None]] = {
    "tiny": ("tiny", None, None),
    "small": ("small", None, None),
    "medium": ("medium", None, None),
    "demo": ("medium", 8, 512),
}

# Blocks are summed in another order than whole tensors are: allow SUM_ERROR_FACTOR * sqrt(K) *
# eps of relative error, K the longest sum in the graph (as the local demo does).
SUM_ERROR_FACTOR = 4.0


def ray_demo(
    size: str = "demo",
    *,
    devices: int = 2,
    address: str | None = None,
    partitioner: str = "eindecomp",
    placer: str = "critical-path",
    dtype: str = "float32",
    runs: int = 3,
    seed: int = 0,
    console: Console | None = None,
) -> int:
    """Compile, run, check and time the step on `er.ray(devices, address)`; return the exit
    code (0 when every output matches the reference interpreter)."""
    import einrel as er

    from ..workloads import llama_block, max_rel_error

    console = console or Console()
    base, batch, seq = SIZES[size]
    wl = llama_block(base, dtype, mode="train", with_grads=True, batch=batch, seq=seq)
    feeds = wl.make_feeds(seed)
    z = wl.meta["shape"]
    console.print(
        f"[bold]einrel demo[/] on Ray: LLaMA block training step (batch {z.batch}, seq {z.seq}, "
        f"d {z.d}, {z.heads} heads × {z.head_dim}, hidden {z.hidden}, {dtype}); "
        f"{wl.flops / 1e9:.2f} GFLOP"
    )
    t0 = time.perf_counter()
    prog = er.compile(
        wl.outputs,
        devices=er.ray(devices, address=address),
        partitioner=partitioner,
        placer=placer,
        seed=seed,
    )
    try:
        eng = prog.engine
        stats = prog.plan.tasks.stats()
        nodes = sorted({i.get("node_id", "?") for i in eng.info})
        console.print(
            f"compiled for er.ray({devices}) in {time.perf_counter() - t0:.2f} s (actors "
            f"included): {stats['tasks']} tasks; {devices} actors on {len(nodes)} node(s), "
            f"BLAS threads {[i.get('blas_threads') for i in eng.info]}"
        )
        got = prog.run(feeds)
        walls = []
        for _ in range(runs):
            prog.run(feeds)
            walls.append(prog.report.wall_time_s)
        want = er.evaluate(wl.outputs, feeds)
        errors = {n: max_rel_error(a, b) for n, a, b in zip(wl.output_names, got, want)}
        tol = _tolerance(wl, dtype)
        rep = prog.report
        table = Table(title="per device")
        for col in ("device", "node", "peak MiB", "busy s"):
            table.add_column(col, justify="right")
        for d in range(devices):
            table.add_row(
                str(d),
                str(eng.info[d].get("node_id", "?"))[:12],
                f"{rep.peak_bytes.get(d, 0) / 2**20:.1f}",
                f"{rep.busy_s.get(d, 0.0):.3f}",
            )
        console.print(table)
        modelled = stats["bytes_moved"]
        console.print(
            f"step time (median of {len(walls)}): {statistics.median(walls):.3f} s; moved "
            f"between actors {rep.bytes_moved / 2**20:.2f} MiB (plan: {modelled / 2**20:.2f} MiB)"
        )
        worst = max(errors, key=lambda k: errors[k])
        ok = all(np.isfinite(e) and e <= tol for e in errors.values()) and (
            rep.bytes_moved == modelled
        )
        verdict = "[bold green]PASS[/]" if ok else "[bold red]FAIL[/]"
        console.print(
            f"{verdict}  max relative error vs the reference interpreter {errors[worst]:.2e} "
            f"({worst}) over {len(errors)} outputs (tolerance {tol:.1e})"
        )
        return 0 if ok else 1
    finally:
        prog.close()


def _tolerance(wl: object, dtype: str) -> float:
    graph = wl.graph()  # type: ignore[attr-defined]
    k = 1
    for n in graph.nodes:
        if n.op == "einsum" and n.einsum.agg is not None:
            k = max(k, math.prod(n.einsum.size[lab] for lab in n.einsum.agg_labels))
    eps = float(np.finfo(np.float32 if dtype == "float32" else np.float64).eps)
    return SUM_ERROR_FACTOR * math.sqrt(k) * eps
