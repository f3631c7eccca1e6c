"""LLaMA-block training step in float16 on one GPU under a memory budget (TURNIP on CUDA).

Three ways to run one SGD step of a LLaMA block (7B shapes: d 4096, 32 heads x 128, MLP 11008;
batch 1, sequence `--seq`), every one starting from host (numpy / pinned) inputs and ending
with the loss and new weights on host:

- einrel: `er.compile(..., devices=er.gpu(1, memory=budget))` with the budget `--fraction`
  (default 25 %) of the unconstrained peak of einrel's own plan; the memory engine runs the
  memory graph on one preallocated arena, evictions and loads on their own CUDA streams into
  pinned host buffers, the order of ready work picked at run time;
- torch, unconstrained: everything on the GPU, autograd, no memory limit;
- torch, layer-wise offload as users write it: weights live in pinned host memory; before each
  sublayer (attention, MLP) its weights are copied in and after it copied out, its input is
  saved to host; the backward pass copies weights and the saved input back, recomputes the
  sublayer and sends new weights out; synchronous copies, no overlap (see benchmarks/offload.py).

Also einrel with a budget of twice its peak (nothing needs evicting), to separate the engine's
own cost from the cost of offload. Peaks: einrel's exact arena accounting; torch's
`max_memory_allocated`. Results are checked against the unconstrained torch step.

    python benchmarks/gpu_offload.py [--seq 4096] [--fraction 0.25] [--out results.json]
    python benchmarks/gpu_offload.py --device cpu --quick      # smoke test on CPU tensors

Finishes in well under 5 minutes on one H100 (it stops repeating once 4 minutes have passed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import einrel as er
from einrel import frontend as F
from einrel.memory import plan_memory
from einrel.runtime.transfer import Link
from einrel.workloads import max_rel_error
from einrel.workloads.base import train_outputs
from einrel.workloads.llama import SIZES, WEIGHTS, LlamaSize, block, weight_shapes
from offload import Mover, layerwise_saved_step, layerwise_step, llama_layers

RESULTS = Path(__file__).resolve().parent / "results"
TIME_LIMIT_S = 240.0
QUICK = LlamaSize(1, 16, 32, 2, 16, 64)


def build(z: LlamaSize, dtype: str) -> tuple[list[er.Tensor], list[str]]:
    x = F.input("x", (z.batch, z.seq, z.d), dtype)
    ws = {k: F.input(k, s, dtype) for k, s in weight_shapes(z).items()}
    target = F.input("target", (z.batch, z.seq, z.d), dtype)
    return train_outputs(F.mse(block(x, ws), target), ws, False)


def make_feeds(z: LlamaSize, dtype: str, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    np_dt = np.dtype(dtype)
    shapes = weight_shapes(z)
    feeds: dict[str, Any] = {"x": rng.standard_normal((z.batch, z.seq, z.d)).astype(np_dt)}
    for k in WEIGHTS:
        if k.endswith("norm"):
            feeds[k] = (1 + 0.1 * rng.standard_normal(shapes[k])).astype(np_dt)
        else:
            fan_in = z.d if k in ("wq", "wk", "wv", "w1", "w3") else math.prod(shapes[k][:-1])
            feeds[k] = (rng.standard_normal(shapes[k]) * fan_in**-0.5).astype(np_dt)
    feeds["target"] = rng.standard_normal((z.batch, z.seq, z.d)).astype(np_dt)
    feeds["lr"] = np.float64(0.01)
    return feeds


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


def peak(dev: torch.device) -> int | None:
    return int(torch.cuda.max_memory_allocated(dev)) if dev.type == "cuda" else None


def torch_unconstrained(feeds: dict[str, Any], dev: torch.device) -> tuple[float, list[np.ndarray]]:
    pin = dev.type == "cuda"
    host = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feeds.items() if k != "lr"}
    if pin:
        host = {k: v.pin_memory() for k, v in host.items()}
    layers = llama_layers()
    sync(dev)
    t0 = time.perf_counter()
    t = {k: v.to(dev, non_blocking=pin) for k, v in host.items()}
    w = {k: t[k].requires_grad_() for k in WEIGHTS}
    a = t["x"]
    for fn, names in layers:
        a = fn(a, {n: w[n] for n in names})
    loss = torch.nn.functional.mse_loss(a, t["target"])
    grads = torch.autograd.grad(loss, [w[k] for k in WEIGHTS])
    lr = float(feeds["lr"])
    with torch.no_grad():
        new = [(w[k] - lr * g).to("cpu") for k, g in zip(WEIGHTS, grads)]
    loss_v = loss.detach().to("cpu", torch.float64)
    sync(dev)
    wall = time.perf_counter() - t0
    return wall, [loss_v.numpy(), *(n.numpy() for n in new)]


def torch_layerwise(
    feeds: dict[str, Any], dev: torch.device, mover: Mover, variant: str
) -> tuple[float, list[np.ndarray]]:
    pin = dev.type == "cuda"
    weights = {k: torch.from_numpy(np.ascontiguousarray(feeds[k])) for k in WEIGHTS}
    x = torch.from_numpy(np.ascontiguousarray(feeds["x"]))
    tgt = torch.from_numpy(np.ascontiguousarray(feeds["target"]))
    if pin:
        weights = {k: v.pin_memory() for k, v in weights.items()}
        x, tgt = x.pin_memory(), tgt.pin_memory()
    sync(dev)
    t0 = time.perf_counter()
    step = layerwise_step if variant == "recompute" else layerwise_saved_step
    loss, new = step(llama_layers(), weights, x, tgt, float(feeds["lr"]), mover)
    sync(dev)
    wall = time.perf_counter() - t0
    return wall, [np.array(loss), *(new[k].numpy() for k in WEIGHTS)]


def err_vs(got: list[np.ndarray], want: list[np.ndarray]) -> float:
    return max(max_rel_error(a, b) for a, b in zip(got, want, strict=True))


def summary(ts: list[float]) -> dict[str, Any]:
    return {
        "median_s": statistics.median(ts),
        "min_s": min(ts),
        "runs_s": [round(t, 5) for t in ts],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--quick", action="store_true", help="tiny shapes (the CPU smoke test)")
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--size", default="7b", choices=sorted(SIZES))
    ap.add_argument("--fraction", type=float, default=0.25)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--priority", default="critical-path")
    ap.add_argument("--dtype", default="float16")
    ap.add_argument("--out", default=str(RESULTS / "gpu_offload.json"))
    args = ap.parse_args(argv)
    start = time.perf_counter()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device is visible; use --device cpu for the smoke test")
    dev = torch.device("cuda", 0) if args.device == "cuda" else torch.device("cpu")
    z = QUICK if args.quick else replace(SIZES[args.size], batch=1, seq=args.seq)
    repeats = args.repeats or (1 if args.quick else 3)
    dtype = args.dtype
    outs, _names = build(z, dtype)
    feeds = make_feeds(z, dtype)
    print(f"LLaMA block {z} {dtype} on {dev}", flush=True)

    def over_time() -> bool:
        return time.perf_counter() - start > TIME_LIMIT_S

    # torch, unconstrained (also the reference for the others)
    reset_peak(dev)
    torch_unconstrained(feeds, dev)  # warm-up
    ts, want = [], None
    for _ in range(repeats):
        wall, got = torch_unconstrained(feeds, dev)
        ts.append(wall)
        want = got if want is None else want
        if over_time():
            break
    assert want is not None
    t_free = {**summary(ts), "peak_bytes": peak(dev)}
    print(f"torch unconstrained: {t_free['median_s']:.4f}s peak {t_free['peak_bytes']}", flush=True)

    # torch, layer-wise offload, both ways users write it
    t_lw: dict[str, Any] = {}
    for variant in ("recompute", "saved"):
        reset_peak(dev)
        mover = Mover(str(dev), Link(None))
        torch_layerwise(feeds, dev, mover, variant)
        ts, errs = [], []
        for _ in range(repeats):
            wall, got = torch_layerwise(feeds, dev, mover, variant)
            ts.append(wall)
            errs.append(err_vs(got, want))
            if over_time():
                break
        moved = (mover.h2d_bytes + mover.d2h_bytes) // (len(ts) + 1)
        t_lw[variant] = {**summary(ts), "peak_bytes": peak(dev), "bytes_transferred": moved}
        t_lw[variant]["max_rel_error_vs_torch"] = max(errs)
        print(f"torch layer-wise ({variant}): {t_lw[variant]['median_s']:.4f}s", flush=True)
        del mover
    reset_peak(dev)
    best_lw = min(v["median_s"] for v in t_lw.values())

    # einrel
    t0 = time.perf_counter()
    free_plan = er.compile(outs, devices=er.cpu(1))
    unconstrained_peak = plan_memory(free_plan.plan.tasks, None).stats.peak_bytes[0]
    budget = int(unconstrained_peak * args.fraction)
    eng_opts = {"device": args.device, "seed": 0}

    def run_einrel(memory: int) -> dict[str, Any]:
        c0 = time.perf_counter()
        prog = er.compile(
            outs, devices=er.gpu(1, memory=memory), priority=args.priority, engine_options=eng_opts
        )
        ctime = time.perf_counter() - c0
        mg = prog.plan.memgraph
        prog.engine.prepare(mg)
        prog.run(feeds)  # warm-up
        ts, errs, peaks = [], [], []
        for _ in range(repeats):
            got = prog.run(feeds)
            ts.append(prog.report.wall_time_s)
            peaks.append(prog.report.peak_bytes[0])
            errs.append(err_vs(got, want))
            if over_time():
                break
        out = {
            **summary(ts),
            "budget_bytes": memory,
            "peak_bytes": max(peaks),
            "bytes_offloaded": prog.report.bytes_offloaded,
            "bytes_loaded": sum(mg.stats.loaded_bytes),
            "evictions": mg.stats.evictions,
            "tasks": len(prog.plan.tasks),
            "memory_nodes": len(mg),
            "compile_s": round(ctime, 3),
            "max_rel_error_vs_torch": max(errs),
        }
        prog.close()
        del prog
        reset_peak(dev)
        return out

    e_budget = run_einrel(budget)
    print(f"einrel @{args.fraction:.0%}: {e_budget['median_s']:.4f}s {e_budget}", flush=True)
    e_free = run_einrel(2 * unconstrained_peak) if not over_time() else None
    if e_free is not None:
        print(f"einrel unconstrained: {e_free['median_s']:.4f}s", flush=True)

    report = {
        "benchmark": "gpu_offload",
        "device": args.device,
        "device_name": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else platform.processor(),
        "quick": args.quick,
        "dtype": dtype,
        "shape": {
            "batch": z.batch,
            "seq": z.seq,
            "d": z.d,
            "heads": z.heads,
            "head_dim": z.head_dim,
            "hidden": z.hidden,
        },
        "fraction": args.fraction,
        "priority": args.priority,
        "repeats": repeats,
        "unconstrained_peak_bytes": unconstrained_peak,
        "budget_bytes": budget,
        "einrel": e_budget,
        "einrel_unconstrained": e_free,
        "torch_unconstrained": t_free,
        "torch_layerwise": t_lw,
        "einrel_over_torch_unconstrained": round(e_budget["median_s"] / t_free["median_s"], 3),
        "torch_layerwise_over_einrel": round(best_lw / e_budget["median_s"], 3),
        "torch_layerwise_within_budget": {
            v: (r["peak_bytes"] <= budget if r["peak_bytes"] is not None else None)
            for v, r in t_lw.items()
        },
        "einrel_compile_s": round(time.perf_counter() - t0, 2),
        "torch": torch.__version__,
        "loadavg": list(os.getloadavg()),
        "wall_s": round(time.perf_counter() - start, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out} in {report['wall_s']}s", flush=True)


if __name__ == "__main__":
    main()
