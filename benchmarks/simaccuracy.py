"""How well `prog.simulate()` predicts the measured makespan, on the workloads at 2 and 4 devices.

For each workload, device count and cost model, the program is compiled once, run (one warm-up,
then the median of the runs' `report.wall_time_s`), and simulated. Reported: the ratio
simulated / measured (1.0 is a perfect prediction; < 1 the simulator is optimistic). Two cost
models: the built-in default (`CostModel.default()`, or the saved calibration when there is one)
and one calibrated in this run on this machine for that device count (`calibrate(ndev)`).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
        .venv/bin/python benchmarks/simaccuracy.py [--quick]

Writes benchmarks/results/simaccuracy.json and simaccuracy.png (`--quick`: simaccuracy_quick.*;
`--no-fuse`: *_nofuse.*).
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import numpy as np

import common
import einrel as er
from einrel.runtime import CostModel, calibrate
from einrel.workloads import get_workload

# (label, workload, size, options): mid-sized steps whose kernels outweigh the engine overhead.
CASES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("matmul_chain S=1000", "matmul_chain", "medium", {}),
    (
        "ffnn_train b1024 512-2048-512",
        "ffnn_train",
        "bench",
        {"batch": 1024, "widths": (512, 2048, 512)},
    ),
    (
        "llama_block train b4 s256",
        "llama_block",
        "medium",
        {"mode": "train", "batch": 4, "seq": 256},
    ),
]
QUICK: list[tuple[str, str, str, dict[str, Any]]] = [
    ("matmul_chain S=500", "matmul_chain", "medium", {"s": 500}),
    (
        "ffnn_train b512 256-1024-256",
        "ffnn_train",
        "bench",
        {"batch": 512, "widths": (256, 1024, 256)},
    ),
    ("llama_block train b2 s128", "llama_block", "medium", {"mode": "train"}),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller steps and 3 runs")
    ap.add_argument("--runs", type=int, default=None, help="timed runs (default 5, quick 3)")
    ap.add_argument("--devices", default="2,4", help="comma-separated device counts")
    ap.add_argument("--no-calibrate", action="store_true", help="only the default cost model")
    ap.add_argument("--no-fuse", action="store_true", help="compile with fuse=False")
    args = ap.parse_args()
    common.warn_env()
    runs = args.runs or (3 if args.quick else 5)
    ndevs = [int(d) for d in args.devices.split(",")]
    threads = common.cores()
    meta = common.machine(threads)
    print(f"simulated vs measured makespan; {threads} cores; load {meta['load_avg_start']}")
    models: dict[int, dict[str, CostModel]] = {}
    for nd in ndevs:
        models[nd] = {"default": CostModel.default()}
        if not args.no_calibrate:
            models[nd]["calibrated"] = calibrate(nd)
    rows: list[dict[str, Any]] = []
    for label, name, size, opts in QUICK if args.quick else CASES:
        wl = get_workload(name, size, "float32", **opts)
        feeds = wl.make_feeds(0)
        for nd in ndevs:
            for mname, model in models[nd].items():
                prog = er.compile(
                    wl.outputs, devices=er.cpu(nd), cost_model=model, fuse=not args.no_fuse
                )
                prog.run(feeds)
                walls = []
                for _ in range(runs):
                    prog.run(feeds)
                    walls.append(prog.report.wall_time_s)
                sim = prog.simulate()
                measured = statistics.median(walls)
                row = {
                    "workload": label,
                    "devices": nd,
                    "cost_model": mname,
                    "simulated_s": sim,
                    "measured_s": measured,
                    "measured_runs_s": walls,
                    "ratio": sim / measured,
                    "tasks": len(prog.plan.tasks.tasks),
                    "gflop": wl.flops / 1e9,
                }
                rows.append(row)
                print(
                    f"{label:>32} ndev={nd} {mname:>10}: simulated {sim * 1e3:9.1f} ms, "
                    f"measured {measured * 1e3:9.1f} ms, ratio {row['ratio']:.2f}"
                )
                prog.close()
    ratios = {
        m: float(np.exp(np.mean([np.log(r["ratio"]) for r in rows if r["cost_model"] == m])))
        for m in {r["cost_model"] for r in rows}
    }
    for m, g in ratios.items():
        print(f"geometric mean ratio ({m} cost model): {g:.2f}")
    doc = {
        "benchmark": "simulated / measured makespan",
        "runs": runs,
        "quick": args.quick,
        "fuse": not args.no_fuse,
        "machine": meta,
        "cost_models": {
            str(nd): {k: v.to_dict() for k, v in ms.items()} for nd, ms in models.items()
        },
        "rows": rows,
        "geomean_ratio": ratios,
    }
    stem = ("simaccuracy_quick" if args.quick else "simaccuracy") + (
        "_nofuse" if args.no_fuse else ""
    )
    path = common.write(stem, doc)
    plot(rows, common.RESULTS / f"{stem}.png", runs)
    print(f"wrote {path} and {stem}.png")
    return 0


def plot(rows: list[dict[str, Any]], path: Any, runs: int) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    keys = list(dict.fromkeys((r["workload"], r["devices"]) for r in rows))
    models = list(dict.fromkeys(r["cost_model"] for r in rows))
    fig = Figure(figsize=(max(7.0, 1.6 * len(keys) + 2), 4.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(keys))
    width = 0.8 / len(models)
    colors = {"default": "#9e9e9e", "calibrated": "#1f77b4"}
    for k, m in enumerate(models):
        vals = [
            next(
                (
                    r["ratio"]
                    for r in rows
                    if (r["workload"], r["devices"]) == key and r["cost_model"] == m
                ),
                np.nan,
            )
            for key in keys
        ]
        ax.bar(x + (k - (len(models) - 1) / 2) * width, vals, width, label=m, color=colors.get(m))
        for i, v in enumerate(vals):
            ax.text(
                x[i] + (k - (len(models) - 1) / 2) * width,
                v,
                f"{v:.2f}",
                ha="center",
                va="bottom",
                fontsize="x-small",
            )
    ax.axhline(1.0, color="#d62728", lw=1.0, ls="--")
    ax.set_yscale("log")
    ax.set_xticks(x)
    ax.set_xticklabels([f"{w}\ncpu({d})" for w, d in keys], fontsize="x-small")
    ax.set_ylabel("simulated / measured makespan (log)")
    ax.set_title(f"prog.simulate() vs measured wall time (median of {runs} runs)", loc="left")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())
