"""The matmul chain Y = C·(D·E) + A·B, einrel on er.cpu(2) next to numpy, torch and dask.array.

Skewed shapes as in the EinDecomp experiments (A S×S/10, B S/10×S, C S×S/10, D S/10×10S,
E 10S×S; `matmul_chain(s=S)`), float32. numpy and torch run the chain as one process with all
cores as threads; dask.array with its threaded scheduler (as many workers as cores, one BLAS
thread each when there are several blocks) at block sizes S/2, S and 5S/2 (the best one is
reported); einrel compiles the workload's graph for `er.cpu(2)`. Every result is checked
against einrel's.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/chain.py [--quick]

Writes benchmarks/results/chain.json and chain.png (`--quick`: chain_quick.*).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

import numpy as np

import common
import einrel as er
from einrel.workloads import get_workload

TOLERANCE = 2e-4


def numpy_chain(f: dict[str, Any]) -> np.ndarray:
    y = f["C"] @ (f["D"] @ f["E"])
    y += f["A"] @ f["B"]
    return y


def torch_chain(t: dict[str, Any]) -> Any:
    import torch

    with torch.no_grad():
        return torch.addmm(t["C"] @ (t["D"] @ t["E"]), t["A"], t["B"])


def dask_chain(f: dict[str, Any], block: int, workers: int) -> np.ndarray:
    import dask.array as da

    a = {k: da.from_array(f[k], chunks=block) for k in "ABCDE"}
    y = a["C"] @ (a["D"] @ a["E"]) + a["A"] @ a["B"]
    return y.compute(scheduler="threads", num_workers=workers)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="S=1000 and 3 runs")
    ap.add_argument("--s", type=int, default=None, help="side S (default 2000, quick 1000)")
    ap.add_argument("--runs", type=int, default=None, help="rounds (default 7, quick 3)")
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--partitioner", default="eindecomp")
    ap.add_argument("--placer", default="critical-path")
    ap.add_argument(
        "--plans", default="", help="extra einrel rows: comma-separated partitioner/placer pairs"
    )
    ap.add_argument("--no-dask", action="store_true")
    args = ap.parse_args()
    common.warn_env()
    runs = args.runs or (3 if args.quick else 7)
    s = args.s or (1000 if args.quick else 2000)
    threads = common.cores()
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    wl = get_workload("matmul_chain", dtype="float32", s=s)
    feeds = wl.make_feeds(0)
    tfeeds = {k: torch.from_numpy(feeds[k]) for k in "ABCDE"}
    meta = common.machine(threads)
    print(
        f"matmul chain S={s}: shapes {wl.meta['shapes']}; {wl.flops / 1e9:.1f} GFLOP; "
        f"{threads} cores; load {meta['load_avg_start']}"
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

    def numpy_run() -> np.ndarray:
        with threadpool_limits(limits=threads, user_api="blas"):
            return numpy_chain(feeds)

    fns: dict[str, Any] = {name: (lambda p=p: p.run(feeds)[0]) for name, p in progs.items()}
    fns["numpy"] = numpy_run
    fns["torch"] = lambda: torch_chain(tfeeds)
    if not args.no_dask:
        biggest = max(max(sh) for sh in wl.meta["shapes"].values())
        for block in (s // 2, s, 5 * s // 2):
            blas = threads if block >= biggest else 1

            def dask_run(block: int = block, blas: int = blas) -> np.ndarray:
                with threadpool_limits(limits=blas, user_api="blas"):
                    return dask_chain(feeds, block, threads)

            fns[f"dask block={block}"] = dask_run

    ref = np.asarray(fns["einrel"]())
    errors = {}
    for name, fn in fns.items():
        out = fn()
        got = out.numpy() if hasattr(out, "numpy") else np.asarray(out)
        errors[name] = common.max_rel_error(got, ref)
    errors["workload torch_reference"] = common.max_rel_error(wl.torch_reference(feeds)[0], ref)
    for k, v in errors.items():
        print(f"  check {k:>26}: max relative error vs einrel {v:.1e}")
    bad = {k: v for k, v in errors.items() if not v <= TOLERANCE}

    peak_before = common.sgemm_peak(threads, runs=3 if args.quick else 5)
    times = common.interleaved(fns, runs)
    peak_after = common.sgemm_peak(threads, runs=3 if args.quick else 5)
    peak = max(peak_before["median_gflops"], peak_after["median_gflops"])
    flops = wl.flops
    rows: dict[str, Any] = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        rows[name] = {
            **common.summary(ts),
            "gflops": flops / med / 1e9,
            "max_rel_error_vs_einrel": errors[name],
        }
    verdict = common.verdict(rows, peak, not bad)
    prog = progs["einrel"]
    doc = {
        "benchmark": "matmul chain Y = C(DE) + AB",
        "workload": wl.meta,
        "gflop": flops / 1e9,
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
        "results": rows,
        "errors": errors,
        "verdict": verdict,
    }
    print(f"\n{'system':>26} {'median s':>9} {'min':>7} {'max':>7} {'GFLOP/s':>8}")
    for name, r in rows.items():
        print(
            f"{name:>26} {r['median_s']:9.3f} {r['min_s']:7.3f} {r['max_s']:7.3f} "
            f"{r['gflops']:8.1f}"
        )
    print(
        f"sgemm peak ({threads} threads): {peak:.1f} GFLOP/s; einrel at "
        f"{verdict['einrel_fraction_of_sgemm_peak']:.0%} of it"
    )
    print(common.verdict_line(verdict))
    stem = "chain_quick" if args.quick else "chain"
    path = common.write(stem, doc)
    common.bar_plot(
        common.RESULTS / f"{stem}.png",
        f"matmul chain S={s} (float32), {threads} cores\nmedian of {runs} interleaved runs, "
        "whiskers min-max",
        [
            (n, r["gflops"], flops / r["max_s"] / 1e9, flops / r["min_s"] / 1e9)
            for n, r in rows.items()
        ],
        "GFLOP/s",
        hline=(peak, f"sgemm peak {peak:.0f}"),
    )
    print(f"wrote {path} and {stem}.png")
    for p in progs.values():
        p.close()
    if bad:
        print(f"FAILED checks: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
