"""numpy vs torch (CPU) per kernel kind, at the block sizes 2-4 devices get on this machine.

Kinds: contraction (GEMM block), elementwise join (x+y, memory-bound; silu(x+y), transcendental),
reduction (sum over the last axis) and copy (a block moved or assembled). Three columns:
"einrel" = einrel's own numpy kernel path (`einrel.kernels.einsum`, numpy copies), "numpy" =
the plain numpy call (np.matmul, ufuncs), "torch" = the torch call on zero-copy tensors. All get
the thread count a device gets, `cores // ndev`; float32; the three are timed round-robin so
background load hits them alike; medians.

    .venv/bin/python benchmarks/kernels.py [--runs 9]

Writes benchmarks/results/kernels.json and kernels.png; prints the faster backend per kind.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from einrel import kernels
from einrel.devices import cores
from einrel.ir import scalar as S
from einrel.ir.einsum import make_einsum

RESULTS = Path(__file__).resolve().parent / "results"
BACKENDS = ("einrel", "numpy", "torch")
UNITS = {"contraction": "GFLOP/s", "elementwise": "Gelem/s", "reduction": "Gelem/s", "copy": "GB/s"}


@dataclass
class Case:
    kind: str
    block: str
    work: float  # FLOPs, elements or bytes per call
    fns: dict[str, Callable[[], Any]]


def cases(ndev: int) -> list[Case]:
    """Blocks of a 4096x2048 @ 2048x2048 layer and a 4096x4096 activation cut for ndev devices."""
    import torch

    rng = np.random.default_rng(0)
    f32 = np.float32
    out: list[Case] = []
    m, k, n = 4096 // ndev, 2048, 1024
    a = rng.standard_normal((m, k)).astype(f32)
    b = rng.standard_normal((k, n)).astype(f32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    mm = make_einsum("mk,kn->mn", [a.shape, b.shape])
    out.append(
        Case(
            "contraction",
            f"{m}x{k}@{k}x{n}",
            2.0 * m * k * n,
            {
                "einrel": lambda: kernels.einsum(mm, [a, b], {}, "float32"),
                "numpy": lambda: np.matmul(a, b),
                "torch": lambda: torch.matmul(ta, tb),
            },
        )
    )
    rows, cols = 4096 // ndev, 2048
    x = rng.standard_normal((rows, cols)).astype(f32)
    y = rng.standard_normal((rows, cols)).astype(f32)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    add = make_einsum("ij,ij->ij", [x.shape, y.shape], join=lambda p, q: p + q, agg=None)
    silu = make_einsum(
        "ij,ij->ij", [x.shape, y.shape], join=lambda p, q: S.silu(S.as_expr(p + q)), agg=None
    )
    for name, op in (("x+y", add), ("silu(x+y)", silu)):
        nfn = S.compile_numpy(op.join, 2)
        tfn = S.compile_torch(op.join, 2)
        out.append(
            Case(
                "elementwise",
                f"{name} {rows}x{cols}",
                float(x.size),
                {
                    "einrel": lambda op=op: kernels.einsum(op, [x, y], {}, "float32"),
                    "numpy": lambda nfn=nfn: nfn(x, y, {}),
                    "torch": lambda tfn=tfn: tfn(tx, ty, {}),
                },
            )
        )
    red = make_einsum("ij->i", [x.shape])
    out.append(
        Case(
            "reduction",
            f"sum_j {rows}x{cols}",
            float(x.size),
            {
                "einrel": lambda: kernels.einsum(red, [x], {}, "float32"),
                "numpy": lambda: x.sum(axis=1),
                "torch": lambda: torch.sum(tx, dim=1),
            },
        )
    )
    out.append(
        Case(
            "copy",
            f"{rows}x{cols} ({x.nbytes >> 20} MiB)",
            float(x.nbytes),
            {
                "einrel": lambda: np.array(x, copy=True),  # what a move does
                "numpy": lambda: np.copyto(np.empty_like(x), x),
                "torch": lambda: tx.clone(),
            },
        )
    )
    return out


def timed(fns: dict[str, Callable[[], Any]], runs: int) -> dict[str, float]:
    """Median seconds per backend; backends alternate call by call after two warm-ups each."""
    for fn in fns.values():
        fn()
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def measure(runs: int) -> list[dict[str, Any]]:
    import torch
    from threadpoolctl import threadpool_limits

    rows = []
    for ndev in (2, 4):
        threads = max(1, cores() // ndev)
        torch.set_num_threads(threads)
        with threadpool_limits(limits=threads, user_api="blas"):
            for case in cases(ndev):
                secs = timed(case.fns, runs)
                row: dict[str, Any] = {
                    "kind": case.kind,
                    "ndev": ndev,
                    "threads": threads,
                    "block": case.block,
                    "unit": UNITS[case.kind],
                }
                for b in BACKENDS:
                    row[b] = case.work / secs[b] / 1e9
                    row[f"{b}_s"] = secs[b]
                row["faster"] = "einrel" if secs["einrel"] <= secs["torch"] else "torch"
                row["torch_over_einrel"] = secs["einrel"] / secs["torch"]
                rows.append(row)
                print(
                    f"ndev={ndev} {case.kind:11s} {case.block:24s} "
                    + " ".join(f"{b} {row[b]:7.2f}" for b in BACKENDS)
                    + f" {row['unit']}"
                )
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(rows))
    colors = {"einrel": "#1f77b4", "numpy": "#9ecae1", "torch": "#d62728"}
    for k, b in enumerate(BACKENDS):
        # throughput relative to einrel's path, so kinds with different units share one axis
        rel = [r[b] / r["einrel"] for r in rows]
        ax.bar(x + (k - 1) * 0.27, rel, 0.27, label=b, color=colors[b])
    ax.set_xticks(x)
    ax.set_xticklabels(
        [
            f"{r['block'].split(' ')[0] if r['kind'] == 'elementwise' else r['kind']}"
            f"\nndev={r['ndev']}\n{r['einrel']:.3g} {r['unit']}"
            for r in rows
        ],
        fontsize="x-small",
    )
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_ylabel("throughput relative to einrel's numpy kernel")
    ax.set_title("Block kernels on CPU: float32, cores // ndev threads, median", loc="left")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=9)
    args = ap.parse_args()
    rows = measure(max(5, args.runs))
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary = {}
    for kind in UNITS:
        mine = [r for r in rows if r["kind"] == kind]
        ratio = statistics.geometric_mean(r["torch_over_einrel"] for r in mine)
        summary[kind] = {"torch_over_einrel": ratio, "faster": "torch" if ratio > 1 else "einrel"}
        print(f"{kind}: torch / einrel-numpy throughput x{ratio:.2f} (geometric mean)")
    meta = {"cores": cores(), "load_avg": os.getloadavg()}
    doc = {"meta": meta, "summary": summary, "rows": rows}
    (RESULTS / "kernels.json").write_text(json.dumps(doc, indent=2))
    plot(rows, RESULTS / "kernels.png")
    print(f"wrote {RESULTS / 'kernels.json'} and kernels.png")


if __name__ == "__main__":
    main()
