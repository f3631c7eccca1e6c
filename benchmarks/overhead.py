"""Per-task overhead of the local engine next to dask's threaded scheduler.

Two graphs of 10,000 tiny tasks: "wide" (independent one-element relus) and "deep" (a chain of
them). Both schedulers run the very same task callables: einrel's `run_task` on one-element
blocks ("relu" kernel) and a no-op returning its input ("null" kernel, pure scheduling cost).
Reported per graph, kernel and device count: median wall time over >= 5 runs divided by the
task count, and the overhead = (wall - sequential kernel time) / tasks.

    .venv/bin/python benchmarks/overhead.py [--tasks 10000] [--runs 7]

Writes benchmarks/results/overhead.json and overhead.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from einrel.devices import cores
from einrel.runtime import LocalEngine
from einrel.runtime.synthetic import chain_taskgraph, wide_taskgraph
from einrel.taskgraph.interpret import Runner, run_task
from einrel.taskgraph.ir import Task, TaskGraph

RESULTS = Path(__file__).resolve().parent / "results"
Kernel = Runner


def null_kernel(
    t: Task,
    args: Sequence[Any],
    inputs: Mapping[int, np.ndarray],
    v: Mapping[str, float],
    out: np.ndarray | None = None,
) -> Any:
    return args[0] if args else inputs[t.node]


KERNELS: dict[str, Kernel] = {"relu": run_task, "null": null_kernel}


def sequential_seconds(tg: TaskGraph, inputs: dict[int, np.ndarray], kernel: Kernel) -> float:
    """Best of three plain loops over the tasks: the kernel time with no scheduler at all."""
    best = float("inf")
    for _ in range(3):
        values: list[Any] = [None] * len(tg.tasks)
        t0 = time.perf_counter()
        for t in tg.tasks:
            values[t.id] = kernel(t, [values[i] for i in t.inputs], inputs, {})
        best = min(best, time.perf_counter() - t0)
    return best


def einrel_seconds(
    tg: TaskGraph, inputs: dict[int, np.ndarray], kernel: Kernel, ndev: int, runs: int
) -> list[float]:
    eng = LocalEngine(ndev, runner=kernel, priority="given")
    eng.run(tg, inputs)  # warm-up: plan, thread pool of BLAS, caches
    return [eng.run(tg, inputs).wall_time_s for _ in range(runs)]


def dask_seconds(
    tg: TaskGraph, inputs: dict[int, np.ndarray], kernel: Kernel, ndev: int, runs: int
) -> list[float]:
    from dask.threaded import get

    tasks = tg.tasks

    def call(i: int, *args: Any) -> Any:
        return kernel(tasks[i], args, inputs, {})

    dsk: dict[Any, Any] = {("t", t.id): (call, t.id, *[("t", i) for i in t.inputs]) for t in tasks}
    keys = [("t", t) for blocks in tg.outputs for t, _ in blocks]
    get(dsk, keys, num_workers=ndev)
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        get(dsk, keys, num_workers=ndev)
        out.append(time.perf_counter() - t0)
    return out


def measure(ntasks: int, runs: int) -> list[dict[str, Any]]:
    rows = []
    for shape, build in (("wide", wide_taskgraph), ("deep", chain_taskgraph)):
        for ndev in (1, 2):
            tg, inputs = build(ntasks, ndev)
            n = len(tg.tasks)
            for kname, kernel in KERNELS.items():
                seq = sequential_seconds(tg, inputs, kernel)
                for engine, fn in (("einrel", einrel_seconds), ("dask", dask_seconds)):
                    walls = fn(tg, inputs, kernel, ndev, runs)
                    med = statistics.median(walls)
                    rows.append(
                        {
                            "graph": shape,
                            "kernel": kname,
                            "ndev": ndev,
                            "engine": engine,
                            "tasks": n,
                            "runs": runs,
                            "median_wall_s": med,
                            "us_per_task": med / n * 1e6,
                            "kernel_us_per_task": seq / n * 1e6,
                            "overhead_us_per_task": (med - seq) / n * 1e6,
                        }
                    )
                    r = rows[-1]
                    print(
                        f"{shape:5s} {kname:5s} ndev={ndev} {engine:7s} "
                        f"{r['us_per_task']:7.1f} us/task "
                        f"(kernel {r['kernel_us_per_task']:5.1f}, "
                        f"overhead {r['overhead_us_per_task']:6.1f})"
                    )
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups = sorted({(r["graph"], r["kernel"], r["ndev"]) for r in rows})
    fig = Figure(figsize=(10, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(groups))
    for k, (engine, color) in enumerate((("einrel", "#1f77b4"), ("dask", "#ff7f0e"))):
        vals = [
            next(
                r["overhead_us_per_task"]
                for r in rows
                if (r["graph"], r["kernel"], r["ndev"]) == g and r["engine"] == engine
            )
            for g in groups
        ]
        ax.bar(x + (k - 0.5) * 0.4, vals, 0.4, label=engine, color=color)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{g}\n{k} ndev={d}" for g, k, d in groups], fontsize="small")
    ax.set_ylabel("engine overhead (us / task)")
    ax.axhline(100, color="grey", lw=0.8, ls="--")
    ax.set_title("Scheduling overhead per task, 10k tiny tasks (median)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    rows = measure(args.tasks, max(5, args.runs))
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {
        "cores": cores(),
        "load_avg": os.getloadavg(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    (RESULTS / "overhead.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    plot(rows, RESULTS / "overhead.png")
    print(f"wrote {RESULTS / 'overhead.json'} and overhead.png")


if __name__ == "__main__":
    main()
