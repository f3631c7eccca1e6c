"""The Ray engine next to the local engine and next to plain Ray.

1. FFNN training step (`ffnn_train`, size "bench": batch 4096, d 1024, hidden 4096, float32, MSE)
   compiled for `er.ray(2)` and for `er.cpu(2)` with the same partitioner and placer (the plans
   are checked to be the same task graph); runs alternate between the two engines so both see
   the same background load. Reported: median wall time per step, the ratio ray / cpu (target
   <= 1.3), bytes moved between actors next to the plan's modelled bytes (they must be equal),
   and the largest relative difference between the two engines' outputs.
2. Per-task overhead on tiny one-element tasks: einrel's Ray engine running a chain and a wide
   graph on one actor (scheduling inside the actor) and a ping-pong chain that alternates two
   actors (every task followed by a cross-actor move), next to plain Ray doing the same with
   remote tasks (chain: each task takes the previous ObjectRef; wide: independent tasks) and
   actor method calls passing ObjectRefs between two actors.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/ray_overhead.py \
        [--quick] [--runs 5] [--tasks 2000]

`--quick` uses a small FFNN (batch 1024, widths 256-1024-256) and fewer tiny tasks. Ray starts
locally with as many logical CPUs as cores. Writes benchmarks/results/ray_overhead.json and
ray_overhead.png (or ray_overhead_quick.*) with the machine's load average before and after;
`--replot` redraws the PNG from the JSON already there, without starting Ray.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import ray

import einrel as er
from einrel.devices import cores
from einrel.frontend.tensor import build_graph
from einrel.runtime.ray.engine import RayEngine
from einrel.runtime.synthetic import chain_taskgraph, kernel_seconds, wide_taskgraph
from einrel.taskgraph.ir import Task, TaskGraph
from einrel.workloads import get_workload, max_rel_error

RESULTS = Path(__file__).resolve().parent / "results"


def ffnn(quick: bool, runs: int) -> dict[str, Any]:
    opts: dict[str, Any] = {"batch": 1024, "widths": (256, 1024, 256)} if quick else {}
    wl = get_workload("ffnn_train", size="bench", **opts)
    feeds = wl.make_feeds(0)
    cpu = er.compile(wl.outputs, devices=er.cpu(2))
    rayp = er.compile(wl.outputs, devices=er.ray(2))
    tc, tr = cpu.plan.tasks, rayp.plan.tasks
    same = [(t.kind, t.device, t.shape, t.inputs) for t in tc.tasks] == [
        (t.kind, t.device, t.shape, t.inputs) for t in tr.tasks
    ]
    modelled = sum(t.nbytes for t in tr.tasks if t.kind == "move")
    out_c = cpu.run(feeds)  # warm-up both (BLAS pools, plan shipping, object store)
    out_r = rayp.run(feeds)
    walls: dict[str, list[float]] = {"cpu": [], "ray": []}
    moved = []
    for _ in range(runs):
        cpu.run(feeds)
        walls["cpu"].append(cpu.report.wall_time_s)
        out_r = rayp.run(feeds)
        walls["ray"].append(rayp.report.wall_time_s)
        moved.append(rayp.report.bytes_moved)
    err = max(max_rel_error(a, b) for a, b in zip(out_r, out_c))
    info = rayp.engine.info
    rayp.close()
    med = {k: statistics.median(v) for k, v in walls.items()}
    row = {
        "workload": "ffnn_train",
        "batch": wl.meta["batch"],
        "widths": list(wl.meta["widths"]),
        "flops": wl.flops,
        "tasks": len(tr.tasks),
        "moves": sum(t.kind == "move" for t in tr.tasks),
        "same_plan": same,
        "runs": runs,
        "cpu_wall_s": walls["cpu"],
        "ray_wall_s": walls["ray"],
        "cpu_median_s": med["cpu"],
        "ray_median_s": med["ray"],
        "ratio_ray_over_cpu": med["ray"] / med["cpu"],
        "bytes_moved": moved,
        "modelled_bytes": modelled,
        "bytes_equal": all(m == modelled for m in moved),
        "max_rel_diff_ray_vs_cpu": err,
        "actor_blas_threads": [i.get("blas_threads") for i in info],
        "cpu_peak_bytes": cpu.report.peak_bytes,
    }
    print(
        f"ffnn step: cpu(2) {med['cpu'] * 1e3:.0f} ms, ray(2) {med['ray'] * 1e3:.0f} ms, "
        f"ratio {row['ratio_ray_over_cpu']:.3f}; moved {moved[-1]} B, modelled {modelled} B; "
        f"max rel diff {err:.1e}; same plan {same}"
    )
    return row


def pingpong_taskgraph(n: int) -> tuple[TaskGraph, dict[int, np.ndarray]]:
    """An input and a chain of one-element relus alternating devices 0 and 1, with a move before
    every relu after the first: n relus, n - 1 cross-device moves."""
    x = er.input("x", (1,), "float64")
    graph = build_graph([er.relu(x)])
    node = graph[graph.outputs[0]]
    tasks = [Task(0, "input", 0, (), (1,), "float64", 0, None, (0,))]
    prev = 0
    for i in range(n):
        d = i % 2
        if tasks[prev].device != d:
            tasks.append(Task(len(tasks), "move", node.id, (prev,), (1,), "float64", d))
            prev = len(tasks) - 1
        tasks.append(Task(len(tasks), "apply", node.id, (prev,), (1,), "float64", d, node.einsum))
        prev = len(tasks) - 1
    tg = TaskGraph(graph, tuple(tasks), (((prev, (0,)),),), 2)
    tg.validate()
    return tg, {0: np.ones(1)}


def _median_wall(fn: Callable[[], float], runs: int) -> float:
    fn()
    return statistics.median(fn() for _ in range(runs))


def einrel_overhead(ntasks: int, runs: int) -> list[dict[str, Any]]:
    rows = []
    eng = RayEngine(2)
    try:
        for name, (tg, inputs) in (
            ("chain", chain_taskgraph(ntasks, 2)),
            ("wide", wide_taskgraph(ntasks, 2)),
            ("pingpong", pingpong_taskgraph(ntasks // 4)),
        ):
            kern = kernel_seconds(tg, inputs)
            wall = _median_wall(lambda tg=tg, inputs=inputs: eng.run(tg, inputs).wall_time_s, runs)
            n = len(tg.tasks)
            hops = sum(t.kind == "move" for t in tg.tasks)
            rows.append(
                {
                    "engine": "einrel-ray",
                    "graph": name,
                    "tasks": n,
                    "moves": hops,
                    "median_wall_s": wall,
                    "us_per_task": wall / n * 1e6,
                    "overhead_us_per_task": (wall - kern) / n * 1e6,
                }
            )
            if hops:
                rows[-1]["us_per_hop"] = wall / hops * 1e6
            print(f"einrel-ray {name:8s} {n:5d} tasks {wall / n * 1e6:8.1f} us/task")
    finally:
        eng.close()
    return rows


@ray.remote(num_cpus=1)
def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


@ray.remote(num_cpus=0)
class _Hop:
    def relu(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0)


def plain_ray_overhead(ntasks: int, runs: int) -> list[dict[str, Any]]:
    x = np.ones(1)

    def chain() -> float:
        t0 = time.perf_counter()
        ref = ray.put(x)
        for _ in range(ntasks):
            ref = _relu.remote(ref)
        ray.get(ref)
        return time.perf_counter() - t0

    def wide() -> float:
        t0 = time.perf_counter()
        ray.get([_relu.remote(x) for _ in range(ntasks)])
        return time.perf_counter() - t0

    actors = [_Hop.remote(), _Hop.remote()]
    ray.get([a.relu.remote(x) for a in actors])

    def pingpong() -> float:
        t0 = time.perf_counter()
        ref = ray.put(x)
        for i in range(ntasks // 4):
            ref = actors[i % 2].relu.remote(ref)
        ray.get(ref)
        return time.perf_counter() - t0

    rows = []
    for name, fn, n in (
        ("chain", chain, ntasks),
        ("wide", wide, ntasks),
        ("pingpong", pingpong, ntasks // 4),
    ):
        wall = _median_wall(fn, runs)
        rows.append(
            {
                "engine": "plain-ray",
                "graph": name,
                "tasks": n,
                "median_wall_s": wall,
                "us_per_task": wall / n * 1e6,
            }
        )
        print(f"plain-ray  {name:8s} {n:5d} tasks {wall / n * 1e6:8.1f} us/task")
    for a in actors:
        ray.kill(a)
    return rows


def plot(doc: dict[str, Any], path: Path) -> None:
    """Left: the FFNN step's wall time on each engine (median, interquartile line). Right: wall
    time per one-element relu, einrel's Ray engine next to plain Ray, per graph shape (log
    scale); einrel's ping-pong graph also counts its moves as tasks, so the chart divides by the
    relus alone to compare like with like."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig = Figure(figsize=(13, 4.8))
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2]})
    step = doc["ffnn"]
    engine_names = ("er.cpu(2)", "er.ray(2)")
    for i, key in enumerate(("cpu_wall_s", "ray_wall_s")):
        q1, med, q3 = np.percentile(np.asarray(step[key]) * 1e3, [25, 50, 75])
        left.bar(i, med, 0.6, color=("#9e9e9e", "#1f77b4")[i])
        left.vlines(i, q1, q3, color="black", lw=1.6)
        left.text(i, med / 2, f"{med:.0f} ms", ha="center", color="white", fontweight="bold")
    left.set_xticks([0, 1])
    left.set_xticklabels(engine_names)
    left.set_ylabel("wall time per step (ms, lower is better)")
    left.set_ylim(0, left.get_ylim()[1] * 1.15)
    left.set_title(
        f"FFNN step, batch {step['batch']}, widths {tuple(step['widths'])}\n"
        f"ray / cpu = {step['ratio_ray_over_cpu']:.2f} (target ≤ 1.3)",
        loc="left",
        fontsize="medium",
    )
    graphs = list(dict.fromkeys(r["graph"] for r in doc["overhead"]))
    engines = (
        ("einrel-ray", "einrel Ray engine", "#1f77b4"),
        ("plain-ray", "plain Ray", "#9e9e9e"),
    )
    for k, (engine, label, color) in enumerate(engines):
        rows = {r["graph"]: r for r in doc["overhead"] if r["engine"] == engine}
        xs = np.arange(len(graphs)) + (k - 0.5) * 0.38
        us = [
            rows[g]["median_wall_s"] / (rows[g]["tasks"] - rows[g].get("moves", 0)) * 1e6
            for g in graphs
        ]
        right.bar(xs, us, 0.38, color=color, label=label)
        for x, u in zip(xs, us):
            right.text(x, u * 1.06, f"{u:.0f}", ha="center", va="bottom", fontsize="small")
    described = {
        "chain": "chain\n(each task needs the last)",
        "wide": "wide\n(independent tasks)",
        "pingpong": "ping-pong\n(each relu on the other actor)",
    }
    right.set_xticks(np.arange(len(graphs)))
    right.set_xticklabels([described.get(g, g) for g in graphs])
    right.set_yscale("log")
    right.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    right.yaxis.set_major_locator(LogLocator(subs=(1.0, 3.0)))
    right.yaxis.set_minor_formatter(NullFormatter())
    low, high = right.get_ylim()
    right.set_ylim(low / 3, high * 2.5)
    right.set_ylabel("µs per relu (log scale, lower is better)")
    right.set_title(
        "Per-task overhead on tiny tasks (median wall time / relus)",
        loc="left",
        fontsize="medium",
    )
    right.legend(loc="upper left")
    meta = doc["meta"]
    fig.suptitle(
        f"Ray engine overhead: {meta['cores']} cores, Ray {meta['ray']}, load average "
        f"{meta['load_avg_before'][0]:.1f} before, {meta['load_avg_after'][0]:.1f} after; "
        f"FFNN bytes moved {'=' if step['bytes_equal'] else '≠'} the plan's modelled bytes; "
        "medians, black lines: interquartile range",
        x=0.01,
        ha="left",
        fontsize="small",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small FFNN, fewer tiny tasks")
    ap.add_argument("--runs", type=int, default=None, help="timed runs per measurement")
    ap.add_argument("--tasks", type=int, default=None, help="tiny tasks per overhead graph")
    ap.add_argument("--replot", action="store_true", help="redraw the PNG from the JSON only")
    args = ap.parse_args()
    out = RESULTS / ("ray_overhead_quick.json" if args.quick else "ray_overhead.json")
    if args.replot:
        plot(json.loads(out.read_text()), out.with_suffix(".png"))
        return
    runs = args.runs or (3 if args.quick else 5)
    ntasks = args.tasks or (400 if args.quick else 2000)
    load_before = os.getloadavg()
    ray.init(num_cpus=cores(), include_dashboard=False, log_to_driver=False)
    try:
        step = ffnn(args.quick, runs)
        overhead = einrel_overhead(ntasks, runs) + plain_ray_overhead(ntasks, runs)
    finally:
        ray.shutdown()
    meta = {
        "cores": cores(),
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(),
        "ray": ray.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "quick": args.quick,
        "command": "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python "
        "benchmarks/ray_overhead.py" + (" --quick" if args.quick else ""),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {"meta": meta, "ffnn": step, "overhead": overhead}
    out.write_text(json.dumps(doc, indent=2))
    plot(doc, out.with_suffix(".png"))
    print(
        f"load average before {load_before}, after {meta['load_avg_after']}; wrote {out} and "
        f"{out.with_suffix('.png').name}"
    )


if __name__ == "__main__":
    main()
