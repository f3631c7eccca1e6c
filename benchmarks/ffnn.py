"""One FFNN training step, einrel on er.cpu(2) next to numpy, torch and dask.array.

The step: forward through relu(x·w0)·w1, mean squared error against y, the gradient of both
weights by hand, one SGD update (`ffnn_train` size "bench": batch 4096, d 1024, hidden 4096,
float32). numpy, torch and dask.array run the same step written by hand; einrel runs the
workload's graph compiled for `er.cpu(2)` (EinDecomp, critical-path placement by default). Every
system gets the machine's cores: numpy and torch as one process with that many threads, dask's
threaded scheduler with that many workers (BLAS threads = cores // row chunks, chunks of
1024 / 2048 / 4096 rows, the best one reported). All outputs are checked against einrel's.

Reported: median of the interleaved runs (min and max too), GFLOP/s of the five GEMMs, and the
sgemm peak measured in the same run (one big np.matmul with the same thread count).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/ffnn.py [--quick]

Writes benchmarks/results/ffnn.json and ffnn.png (`--quick`: ffnn_quick.*); `--replot` redraws
the PNG from the JSON already there, without running anything.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

import common  # benchmarks/common.py: the script's own directory is on sys.path
import einrel as er
from einrel.workloads import get_workload

DASK_CHUNKS = (1024, 2048, 4096)
TOLERANCE = 2e-4  # float32 results of differently ordered sums: max |a-b| / max |b|


def gemm_flops(batch: int, widths: tuple[int, ...]) -> float:
    """Forward x·w per layer, backward w-gradient per layer and input-gradient per layer but the
    first: 2·batch·a·b FLOPs each."""
    pairs = list(zip(widths, widths[1:]))
    per = [2.0 * batch * a * b for a, b in pairs]
    return 3 * sum(per) - per[0]


def numpy_step(f: dict[str, Any]) -> list[Any]:
    x, y, w0, w1 = f["x"], f["y"], f["w0"], f["w1"]
    lr = np.float32(f["lr"])
    h = x @ w0
    np.maximum(h, 0, out=h)
    d = h @ w1
    d -= y
    loss = np.float32(np.vdot(d, d) / d.size)
    d *= np.float32(2.0 / d.size)
    gw1 = h.T @ d
    dh = d @ w1.T
    np.multiply(dh, h > 0, out=dh)
    gw0 = x.T @ dh
    gw0 *= -lr
    gw0 += w0
    gw1 *= -lr
    gw1 += w1
    return [loss, gw0, gw1]


def torch_step(t: dict[str, Any], lr: float) -> list[Any]:
    import torch

    x, y, w0, w1 = t["x"], t["y"], t["w0"], t["w1"]
    with torch.no_grad():
        h = torch.relu(x @ w0)
        d = h @ w1
        d -= y
        loss = (d * d).mean()
        d *= 2.0 / d.numel()
        gw1 = h.T @ d
        dh = (d @ w1.T) * (h > 0)
        gw0 = x.T @ dh
        return [loss, w0 - lr * gw0, w1 - lr * gw1]


def dask_step(f: dict[str, Any], rows: int, workers: int) -> list[Any]:
    import dask
    import dask.array as da

    x = da.from_array(f["x"], chunks=(rows, -1))
    y = da.from_array(f["y"], chunks=(rows, -1))
    w0 = da.from_array(f["w0"], chunks=-1)
    w1 = da.from_array(f["w1"], chunks=-1)
    lr = np.float32(f["lr"])
    h = da.maximum(x @ w0, 0)
    d = h @ w1 - y
    loss = (d * d).mean()
    g = d * np.float32(2.0 / (d.shape[0] * d.shape[1]))
    gw1 = h.T @ g
    dh = (g @ w1.T) * (h > 0)
    gw0 = x.T @ dh
    return list(
        dask.compute(loss, w0 - lr * gw0, w1 - lr * gw1, scheduler="threads", num_workers=workers)
    )


def plot(doc: dict[str, Any], path: Path) -> None:
    """Each system's median GFLOP/s next to the faster of numpy and torch, with the target
    (0.85x that) and the sgemm peak drawn across; thin lines are interquartile ranges."""
    flops = doc["gemm_gflop"] * 1e9
    res, v = doc["results"], doc["verdict"]
    rows = [(name, [flops / t / 1e9 for t in r["runs_s"]]) for name, r in res.items()]
    ref = v["faster_of_numpy_torch"]
    peak = doc["sgemm_peak"]["gflops"]
    target = 0.85 * flops / res[ref]["median_s"] / 1e9
    wl = doc["workload"]
    versus = f"einrel = {v['einrel_over_faster_of_numpy_torch']:.2f}× {ref} (target ≥ 0.85×)"
    if v.get("best_dask"):
        versus += f", {v['einrel_over_best_dask']:.2f}× the best dask"
    versus += f", {v['einrel_fraction_of_sgemm_peak']:.0%} of the sgemm peak"
    common.compare_plot(
        path,
        f"FFNN training step (batch {wl['batch']}, widths {tuple(wl['widths'])}, "
        f"{wl['dtype']}), {doc['machine']['threads']} cores\n{versus}\n"
        f"bars: median of {doc['runs']} interleaved runs; black lines: interquartile range",
        rows,
        "GFLOP/s (GEMM FLOPs / step time; higher is better)",
        ref,
        [(peak, f"sgemm peak {peak:.0f}"), (target, f"target 0.85× {ref}")],
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smaller step and 3 runs")
    ap.add_argument("--runs", type=int, default=None, help="rounds (default 7, quick 3)")
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--partitioner", default="eindecomp")
    ap.add_argument("--placer", default="critical-path")
    ap.add_argument(
        "--plans",
        default="",
        help="extra einrel rows, comma-separated partitioner/placer pairs "
        "(e.g. data-parallel/eindecomp-greedy)",
    )
    ap.add_argument("--no-dask", action="store_true")
    ap.add_argument("--replot", action="store_true", help="redraw the PNG from the JSON only")
    args = ap.parse_args()
    stem = "ffnn_quick" if args.quick else "ffnn"
    if args.replot:
        plot(
            json.loads((common.RESULTS / f"{stem}.json").read_text()),
            common.RESULTS / f"{stem}.png",
        )
        return 0
    common.warn_env()
    runs = args.runs or (3 if args.quick else 7)
    threads = common.cores()
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    if args.quick:
        wl = get_workload("ffnn_train", "bench", batch=1024, widths=(512, 2048, 512))
    else:
        wl = get_workload("ffnn_train", "bench")
    batch, widths = wl.meta["batch"], tuple(wl.meta["widths"])
    flops = gemm_flops(batch, widths)
    feeds = wl.make_feeds(0)
    tfeeds = {k: torch.from_numpy(feeds[k]) for k in ("x", "y", "w0", "w1")}
    lr = float(feeds["lr"])
    meta = common.machine(threads)
    print(
        f"FFNN step: batch {batch}, widths {widths}, {wl.meta['loss']}, {wl.meta['dtype']}; "
        f"{flops / 1e9:.1f} GFLOP in GEMMs; {threads} cores; load {meta['load_avg_start']}"
    )

    plans = [(args.partitioner, args.placer)]
    for pair in filter(None, args.plans.split(",")):
        p, _, q = pair.partition("/")
        plans.append((p, q or args.placer))
    progs: dict[str, Any] = {}
    for p, q in plans:
        prog = er.compile(wl.outputs, devices=er.cpu(args.devices), partitioner=p, placer=q)
        name = "einrel" if (p, q) == plans[0] else f"einrel {p}/{q}"
        progs[name] = prog
        print(f"{name}: compiled in {prog.plan.compile_time_s:.2f} s")
        print("  " + str(prog.plan).replace("\n", "\n  "))

    def numpy_run() -> list[Any]:
        with threadpool_limits(limits=threads, user_api="blas"):
            return numpy_step(feeds)

    fns: dict[str, Any] = {name: (lambda p=p: p.run(feeds)) for name, p in progs.items()}
    fns["numpy"] = numpy_run
    fns["torch"] = lambda: torch_step(tfeeds, lr)
    if not args.no_dask:
        for rows in DASK_CHUNKS:
            if rows <= batch:
                blas = max(1, threads // max(1, batch // rows))

                def dask_run(rows: int = rows, blas: int = blas) -> list[Any]:
                    with threadpool_limits(limits=blas, user_api="blas"):
                        return dask_step(feeds, rows, threads)

                fns[f"dask rows={rows}"] = dask_run

    # correctness first: every system against einrel (and einrel against torch.autograd)
    ref = [np.asarray(a) for a in fns["einrel"]()]
    errors: dict[str, float] = {}
    for name, fn in fns.items():
        out = fn()
        got = [o.numpy() if hasattr(o, "numpy") else np.asarray(o) for o in out]
        errors[name] = max(common.max_rel_error(g, r) for g, r in zip(got, ref))
    auto = wl.torch_reference(feeds)
    errors["torch.autograd"] = max(common.max_rel_error(r, a) for r, a in zip(ref, auto))
    bad = {k: v for k, v in errors.items() if not v <= TOLERANCE}
    for k, v in errors.items():
        print(f"  check {k:>24}: max relative error vs einrel {v:.1e}")

    peak_before = common.sgemm_peak(threads, runs=3 if args.quick else 5)
    times = common.interleaved(fns, runs)
    peak_after = common.sgemm_peak(threads, runs=3 if args.quick else 5)
    peak = max(peak_before["median_gflops"], peak_after["median_gflops"])

    rows_out: dict[str, Any] = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        rows_out[name] = {
            **common.summary(ts),
            "gflops": flops / med / 1e9,
            "steps_per_s": 1.0 / med,
            "max_rel_error_vs_einrel": errors[name],
        }
    verdict = common.verdict(rows_out, peak, not bad)
    prog = progs["einrel"]
    doc = {
        "benchmark": "ffnn training step",
        "workload": {k: v for k, v in wl.meta.items() if k != "weights"},
        "gemm_gflop": flops / 1e9,
        "devices": args.devices,
        "runs": runs,
        "quick": args.quick,
        "machine": meta,
        "sgemm_peak": {"before": peak_before, "after": peak_after, "gflops": peak},
        "plan": {
            "partitioner": prog.plan.partitioner,
            "placer": prog.plan.placer,
            "partitions": prog.plan.partitions,
            "tasks": prog.plan.tasks.stats()["kinds"],
            "bytes_moved": prog.plan.tasks.stats()["bytes_moved"],
            "simulated_s": prog.simulate(),
        },
        "results": rows_out,
        "errors": errors,
        "verdict": verdict,
    }
    print(f"\n{'system':>26} {'median s':>9} {'min':>7} {'max':>7} {'GFLOP/s':>8}")
    for name, r in rows_out.items():
        print(
            f"{name:>26} {r['median_s']:9.3f} {r['min_s']:7.3f} {r['max_s']:7.3f} "
            f"{r['gflops']:8.1f}"
        )
    print(
        f"sgemm peak ({threads} threads, n={peak_before['n']}): {peak:.1f} GFLOP/s; einrel at "
        f"{verdict['einrel_fraction_of_sgemm_peak']:.0%} of it"
    )
    print(common.verdict_line(verdict))
    path = common.write(stem, doc)
    plot(doc, common.RESULTS / f"{stem}.png")
    print(f"wrote {path} and {stem}.png")
    for p in progs.values():
        p.close()
    if bad:
        print(f"FAILED checks: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
