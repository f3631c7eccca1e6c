"""Decomposition benchmark: modelled elements moved and planning time of every partitioner.

Workloads: the matmul chain, one FFNN training step, and the LLaMA block forward and training
step, at 2, 4 and 8 devices; plus planning time on a ~10,000-node stack of LLaMA blocks.
Partitioners: EinDecomp (as run by default, and its DP alone: `seeds=()`), data-parallel,
model-parallel, largest-dim, none.

Next to the cost, `speedup_bound` says how parallel a plan is: Σ flops / Σ_v flops_v /
min(blocks_v, n), the speed-up if every node's blocks were spread perfectly and nodes ran one
after another. A plan can move fewer elements simply by leaving work in one block ("none" moves
the least and has bound 1), so the costs compare fairly only between plans of similar bound;
`in_space` says whether a plan lies in EinDecomp's candidate space.

Writes benchmarks/results/decompose.json and decompose.png (`--replot`: only the PNG, from the
JSON already there).
Usage: python benchmarks/decompose.py [--size small] [--big-layers 320] [--devices 2,4,8]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import einrel as er
from einrel.decompose import get_partitioner, plan_cost
from einrel.decompose.candidates import candidate_parts
from einrel.frontend.tensor import build_graph
from einrel.ir.graph import Graph
from einrel.workloads import get_workload
from einrel.workloads.llama import SIZES as LLAMA_SIZES
from einrel.workloads.llama import WEIGHTS, block, weight_shapes

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
PARTITIONERS: dict[str, tuple[str, dict[str, Any]]] = {
    "eindecomp": ("eindecomp", {}),
    "eindecomp-dp-only": ("eindecomp", {"seeds": ()}),
    "data-parallel": ("data-parallel", {}),
    "model-parallel": ("model-parallel", {}),
    "largest-dim": ("largest-dim", {}),
    "none": ("none", {}),
}
BASELINES = ("data-parallel", "model-parallel", "largest-dim")


def workloads(size: str) -> dict[str, Graph]:
    batch = {"batch": 8}
    return {
        "matmul_chain": get_workload("matmul_chain", size=size).graph(),
        "ffnn_train": get_workload("ffnn_train", size=size).graph(),
        "llama_forward": get_workload("llama_block", size=size, **batch).graph(),
        "llama_train": get_workload("llama_block", size=size, mode="train", **batch).graph(),
        "llama7b_forward_b1": get_workload("llama_block", size="7b").graph(),
    }


def llama_stack(layers: int) -> Graph:
    """`layers` LLaMA blocks in sequence, each with its own weights."""
    z = LLAMA_SIZES["tiny"]
    x = er.input("x", (8, z.seq, z.d))
    shapes = weight_shapes(z)
    for i in range(layers):
        x = block(x, {k: er.input(f"{k}{i}", shapes[k]) for k in WEIGHTS})
    return build_graph([x])


def speedup_bound(graph: Graph, dec: dict, n: int) -> float:
    work = [(v.einsum.flops(), dec[v.id].nblocks) for v in graph.nodes if v.op == "einsum"]
    total = sum(f for f, _ in work)
    return total / sum(f / min(b, n) for f, b in work)


def in_space(graph: Graph, dec: dict, n: int) -> bool:
    return all(
        dec[v.id].grid in candidate_parts(graph, v.id, n, "contraction")
        for v in graph.nodes
        if v.op not in ("input", "fill")
    )


def run(size: str, devices: list[int]) -> list[dict[str, Any]]:
    rows = []
    for name, graph in workloads(size).items():
        for n in devices:
            for label, (partitioner, opts) in PARTITIONERS.items():
                t = time.perf_counter()
                dec = get_partitioner(partitioner, **opts)(graph, n)
                seconds = time.perf_counter() - t
                rows.append(
                    {
                        "workload": name,
                        "nodes": len(graph),
                        "ndev": n,
                        "partitioner": label,
                        "cost": plan_cost(graph, dec),
                        "plan_s": round(seconds, 4),
                        "speedup_bound": round(speedup_bound(graph, dec, n), 3),
                        "in_space": in_space(graph, dec, n),
                    }
                )
                print(
                    f"{name:>20} n={n} {label:>18}: {rows[-1]['cost']:.4g} elements, "
                    f"{seconds:.2f} s, bound {rows[-1]['speedup_bound']:.2f}"
                )
    return rows


def big(layers: int) -> dict[str, Any]:
    graph = llama_stack(layers)
    out: dict[str, Any] = {"nodes": len(graph), "ndev": 8}
    for label in ("eindecomp", "eindecomp-dp-only", "data-parallel"):
        partitioner, opts = PARTITIONERS[label]
        t = time.perf_counter()
        dec = get_partitioner(partitioner, **opts)(graph, 8)
        out[label] = {"plan_s": round(time.perf_counter() - t, 2), "cost": plan_cost(graph, dec)}
        print(f"{len(graph)}-node stack, {label}: {out[label]}")
    return out


def verdicts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (workload, n): EinDecomp's cost against every baseline's."""
    out = []
    keys = sorted({(r["workload"], r["ndev"]) for r in rows})
    for w, n in keys:
        here = {r["partitioner"]: r for r in rows if r["workload"] == w and r["ndev"] == n}
        ours = here["eindecomp"]["cost"]
        worse = [b for b in BASELINES if here[b]["cost"] < ours]
        out.append({"workload": w, "ndev": n, "eindecomp_not_best_against": worse})
    return out


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """One panel per workload: each partitioner's elements moved over EinDecomp's, per device
    count, on a log axis labelled in plain ratios (1×, 2×, ...); the last panel is the key."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    names = list(dict.fromkeys(r["workload"] for r in rows))
    labels = [p for p in PARTITIONERS if p != "none"]
    ndevs = sorted({r["ndev"] for r in rows})
    cols = 3
    nrows = -(-(len(names) + 1) // cols)  # one more panel for the key
    fig = Figure(figsize=(4.6 * cols, 3.6 * nrows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, cols, sharey=True, squeeze=False).ravel()
    width = 0.8 / len(labels)
    ratios = []
    for ax, name in zip(axes, names):
        for k, label in enumerate(labels):
            ys, serial = [], []
            for n in ndevs:
                r = {x["partitioner"]: x for x in rows if x["workload"] == name and x["ndev"] == n}
                ys.append(r[label]["cost"] / r["eindecomp"]["cost"])
                serial.append(r[label]["speedup_bound"] < n / 2)
            ratios += ys
            xs = [i + (k - (len(labels) - 1) / 2) * width for i in range(len(ndevs))]
            bars = ax.bar(xs, ys, width, color=f"C{k}")
            for bar, low in zip(bars, serial):
                if low:  # less than half the devices' worth of parallelism
                    bar.set_hatch("//")
                    bar.set_edgecolor("k")
        ax.set_xticks(range(len(ndevs)))
        ax.set_xticklabels([f"{n} devices" for n in ndevs])
        ax.set_title(name.replace("_", " "))
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_yscale("log")
    lo, hi = min(ratios), max(ratios)
    ticks = [
        t for t in (0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8, 12, 16) if lo / 1.5 <= t <= hi * 1.5
    ]
    for ax in axes[: len(names)]:
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
        ax.set_ylim(lo / 1.3, hi * 1.3)
    for ax in axes[::cols][: -(-len(names) // cols)]:
        ax.set_ylabel("elements moved / EinDecomp's")
    key = axes[len(names)]
    key.axis("off")
    handles = [Patch(color=f"C{k}", label=label) for k, label in enumerate(labels)]
    handles.append(
        Patch(facecolor="white", edgecolor="k", hatch="//", label="speed-up bound < n/2")
    )
    key.legend(handles=handles, loc="upper left", frameon=False, title="partitioner")
    key.text(
        0.0,
        0.02,
        "Lower is better; 1× is EinDecomp.\nHatched: work left in few blocks, so the\n"
        "plan moves little but runs nearly serially.",
        transform=key.transAxes,
        va="bottom",
    )
    for ax in axes[len(names) + 1 :]:
        ax.axis("off")
    fig.suptitle("Tensor elements moved by each partitioner, relative to EinDecomp's plan")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _replot() -> None:
    """Redraw the PNG from the JSON already written."""
    plot(json.loads((OUT / "decompose.json").read_text())["rows"], OUT / "decompose.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="small")
    ap.add_argument("--devices", default="2,4,8")
    ap.add_argument("--big-layers", type=int, default=320)
    ap.add_argument("--replot", action="store_true", help="redraw the PNG from the JSON only")
    args = ap.parse_args()
    if args.replot:
        _replot()
        return
    devices = [int(x) for x in args.devices.split(",")]
    rows = run(args.size, devices)
    result = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "size": args.size,
        "unit": "tensor elements moved (the EinDecomp paper's cost model, exact repartition)",
        "rows": rows,
        "verdicts": verdicts(rows),
        "big_graph": big(args.big_layers) if args.big_layers else None,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "decompose.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(rows, OUT / "decompose.png")
    for v in result["verdicts"]:
        if v["eindecomp_not_best_against"]:
            print(
                f"EinDecomp is not the cheapest on {v['workload']} at n={v['ndev']}: "
                f"{v['eindecomp_not_best_against']}"
            )
    assert math.isfinite(sum(r["cost"] for r in rows))


if __name__ == "__main__":
    main()
