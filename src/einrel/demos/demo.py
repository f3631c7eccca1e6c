"""`einrel demo`: the whole pipeline on one LLaMA-block training step.

The step (forward, MSE loss, every weight's gradient, an SGD update) is built as one einrel graph,
decomposed by EinDecomp for `er.cpu(4)`, placed, and run on the local engine. Every output is
checked against the reference interpreter (`er.evaluate`, whole tensors, no decomposition); the
plan is explained; the run's Chrome trace and Gantt chart are written; and the step is timed next
to the same step in plain torch (autograd) in one process. A wrong result exits non-zero.

The float64 gradient check against torch.autograd (`run_demo`, `einrel demo --check-grads`) runs
as part of the demo at size "small", through the same compiled pipeline.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from ..frontend.reference import evaluate
from ..workloads import Workload, llama_block, max_rel_error, node_kinds

# Gradient check against torch.autograd: different kernels, different summation orders.
TOLERANCE = {"float64": 1e-8, "float32": 1e-3}

# The pipeline check compares einrel with its own reference interpreter: the same kernels on
# blocks instead of whole tensors, so results differ only where a sum is split (partial sums
# aggregated in another order) or BLAS blocks it differently. The rounding error of a sum of K
# terms grows like sqrt(K) * eps; each output may differ by SUM_ERROR_FACTOR times that, K the
# longest sum it depends on (weight gradients at the demo size: 4096 terms, 3e-5 in float32;
# the loss: a mean over 1M terms, 5e-4).
SUM_ERROR_FACTOR = 4.0

# Named demo shapes: a llama_block size with the batch and sequence the demo uses.
SIZES: dict[str, tuple[str, int | None, int | None]] = {
    "tiny": ("tiny", None, None),
    "small": ("small", None, None),
    "medium": ("medium", None, None),
    "demo": ("medium", 8, 512),
}


def pipeline_tolerances(wl: Workload, dtype: str) -> dict[str, tuple[float, int]]:
    """Per output name: (tolerance, K) with tolerance `SUM_ERROR_FACTOR * sqrt(K) * eps`, K the
    longest sum (terms of one aggregated output element) among the nodes the output depends on."""
    graph = wl.graph()
    longest: dict[int, int] = {}
    for n in graph.nodes:  # topological order
        k = max((longest[i] for i in n.inputs), default=1)
        if n.op == "einsum" and n.einsum.agg is not None:
            size = n.einsum.size
            k = max(k, math.prod(size[lab] for lab in n.einsum.agg_labels))
        longest[n.id] = k
    eps = float(np.finfo(np.float32 if dtype == "float32" else np.float64).eps)
    out = {}
    for name, i in zip(wl.output_names, graph.outputs):
        out[name] = (SUM_ERROR_FACTOR * math.sqrt(longest[i]) * eps, longest[i])
    return out


@dataclass
class DemoResult:
    """The gradient check: errors per output name, (einrel, torch) loss, timings in s."""

    workload: Workload
    errors: dict[str, float]
    shapes: dict[str, tuple[int, ...]]
    nodes: dict[str, int]
    loss: tuple[float, float]
    timings: dict[str, float] = field(default_factory=dict)
    tolerance: float = 1e-8

    @property
    def max_error(self) -> float:
        return max(self.errors.values())

    @property
    def passed(self) -> bool:
        return all(np.isfinite(e) and e <= self.tolerance for e in self.errors.values())


def run_demo(
    size: str = "small", dtype: str = "float64", seed: int = 0, devices: int | None = None
) -> DemoResult:
    """The gradient check: one training step against torch.autograd; print nothing.

    `devices=None` uses the reference interpreter, an int the compiled pipeline on
    `er.cpu(devices)`."""
    from .. import compile as er_compile
    from ..devices import cpu

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    wl = llama_block(size, dtype, mode="train", with_grads=True)
    graph = wl.graph()
    timings["build"] = time.perf_counter() - t0
    feeds = wl.make_feeds(seed)
    t0 = time.perf_counter()
    if devices is None:
        got = evaluate(wl.outputs, feeds)
    else:
        prog = er_compile(wl.outputs, devices=cpu(devices))
        got = prog.run(feeds)
        prog.close()
    timings["einrel"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    want = wl.torch_reference(feeds)
    timings["torch"] = time.perf_counter() - t0
    errors = {n: max_rel_error(a, b) for n, a, b in zip(wl.output_names, got, want)}
    shapes = {n: tuple(np.shape(a)) for n, a in zip(wl.output_names, want)}
    loss = (float(got[0]), float(want[0]))
    return DemoResult(wl, errors, shapes, node_kinds(graph), loss, timings, TOLERANCE[dtype])


def _fmt(err: float, tol: float) -> str:
    style = "green" if err <= tol else "bold red"
    return f"[{style}]{err:.1e}[/]"


def _shape_line(wl: Workload) -> str:
    z = wl.meta["shape"]
    return (
        f"batch {z.batch}, seq {z.seq}, d {z.d}, {z.heads} heads × {z.head_dim}, "
        f"hidden {z.hidden}, {wl.meta['dtype']}"
    )


def print_demo(res: DemoResult, console: Console | None = None, where: str = "") -> None:
    """The gradient check: the graph, the error of every output and the verdict."""
    console = console or Console()
    wl, tol = res.workload, res.tolerance
    console.print(
        f"[bold]gradient check[/]{where}: LLaMA block training step, size "
        f"[cyan]{wl.meta['size']}[/] ({_shape_line(wl)}) against torch.autograd"
    )
    console.print(
        "graph: "
        + ", ".join(f"{k} {v}" for k, v in res.nodes.items())
        + f"  (total {sum(res.nodes.values())} nodes)"
    )
    t = res.timings
    console.print(
        f"flops {wl.flops / 1e6:.1f} M   build {t['build'] * 1e3:.0f} ms   "
        f"einrel {t['einrel'] * 1e3:.0f} ms   torch {t['torch'] * 1e3:.0f} ms"
    )
    table = Table(title=f"max relative error vs torch.autograd (tolerance {tol:g})")
    table.add_column("tensor")
    table.add_column("shape")
    table.add_column("gradient", justify="right")
    table.add_column("after SGD step", justify="right")
    for k in wl.meta["weights"]:
        table.add_row(
            k,
            str(res.shapes[f"new_{k}"]),
            _fmt(res.errors[f"grad_{k}"], tol),
            _fmt(res.errors[f"new_{k}"], tol),
        )
    console.print(table)
    console.print(
        f"loss {res.loss[0]:.12g} (einrel) vs {res.loss[1]:.12g} (torch): "
        f"relative error {_fmt(res.errors['loss'], tol)}"
    )
    verdict = "[bold green]PASS[/]" if res.passed else "[bold red]FAIL[/]"
    n = len(res.errors)
    console.print(f"{verdict}  max relative error {res.max_error:.2e} over {n} outputs")


@dataclass
class PipelineResult:
    """What the pipeline demo did: the program, per-output errors against the reference
    interpreter, the timings (s) and the files written."""

    workload: Workload
    program: Any
    errors: dict[str, float]
    tolerances: dict[str, tuple[float, int]]
    einrel_s: list[float]
    torch_s: list[float]
    timings: dict[str, float] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    grads: DemoResult | None = None

    @property
    def max_error(self) -> float:
        return max(self.errors.values())

    @property
    def passed(self) -> bool:
        ok = all(np.isfinite(e) and e <= self.tolerances[k][0] for k, e in self.errors.items())
        return ok and (self.grads is None or self.grads.passed)

    @property
    def speedup(self) -> float:
        """Median torch time over median einrel time (> 1: einrel is faster)."""
        return statistics.median(self.torch_s) / statistics.median(self.einrel_s)


def run_pipeline(
    size: str = "demo",
    *,
    devices: int = 4,
    partitioner: str = "eindecomp",
    placer: str = "critical-path",
    dtype: str = "float32",
    runs: int = 3,
    trace: str | Path | None = "out/demo_trace.json",
    seed: int = 0,
    check_grads: bool = True,
    console: Console | None = None,
) -> PipelineResult:
    """Compile, run, check, explain and time the training step; progress goes to `console`."""
    from .. import compile as er_compile
    from ..devices import cpu

    say = console.print if console is not None else (lambda *a, **k: None)
    base, batch, seq = SIZES[size]
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    wl = llama_block(base, dtype, mode="train", with_grads=True, batch=batch, seq=seq)
    feeds = wl.make_feeds(seed)
    timings["build"] = time.perf_counter() - t0
    say(
        f"[bold]einrel demo[/]: LLaMA block training step ({_shape_line(wl)}); "
        f"{wl.flops / 1e9:.2f} GFLOP; {len(wl.outputs)} outputs (loss, 9 gradients, 9 updated "
        f"weights)"
    )
    prog = er_compile(
        wl.outputs, devices=cpu(devices), partitioner=partitioner, placer=placer, seed=seed
    )
    timings["compile"] = prog.plan.compile_time_s
    stats = prog.plan.tasks.stats()
    say(
        f"compiled for er.cpu({devices}) in {prog.plan.compile_time_s:.2f} s: "
        f"{len(prog.plan.graph)} nodes -> {stats['tasks']} tasks, "
        f"{stats['bytes_moved'] / 2**20:.1f} MiB moved between devices "
        f"(partitioner {partitioner}, placer {placer})"
    )
    files: list[Path] = []
    t0 = time.perf_counter()
    got = prog.run(feeds, trace=str(trace) if trace is not None else None)
    timings["first_run"] = time.perf_counter() - t0
    if trace is not None:
        files = [Path(trace), Path(str(trace).removesuffix(".json") + ".png")]
    einrel_s: list[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        prog.run(feeds)
        einrel_s.append(time.perf_counter() - t0)
    say(f"einrel runs: {', '.join(f'{t:.3f}' for t in einrel_s)} s")
    t0 = time.perf_counter()
    want = evaluate(wl.outputs, feeds)
    timings["reference"] = time.perf_counter() - t0
    errors = {n: max_rel_error(a, b) for n, a, b in zip(wl.output_names, got, want)}
    tols = pipeline_tolerances(wl, dtype)
    torch_s: list[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        wl.torch_reference(feeds)
        torch_s.append(time.perf_counter() - t0)
    say(f"torch runs:  {', '.join(f'{t:.3f}' for t in torch_s)} s")
    grads = run_demo("small", "float64", seed, devices=devices) if check_grads else None
    return PipelineResult(wl, prog, errors, tols, einrel_s, torch_s, timings, files, grads)


def print_pipeline(res: PipelineResult, console: Console | None = None) -> None:
    """The check against the reference interpreter, explain(), the files and the timing."""
    console = console or Console()
    console.print(
        f"check: every output against the reference interpreter: max |einrel - ref| / max |ref| "
        f"<= {SUM_ERROR_FACTOR:g}·sqrt(K)·eps, K the longest sum the output depends on"
    )
    table = Table(title="relative error vs the reference interpreter")
    for col in ("output", "shape", "K", "tolerance", "error"):
        table.add_column(col, justify="left" if col in ("output", "shape") else "right")
    for name, t in zip(res.workload.output_names, res.workload.outputs):
        tol, k = res.tolerances[name]
        table.add_row(name, str(t.shape), str(k), f"{tol:.1e}", _fmt(res.errors[name], tol))
    console.print(table)
    res.program.explain(console)
    for f in res.files:
        console.print(f"wrote {f}")
    einrel_s, torch_s = statistics.median(res.einrel_s), statistics.median(res.torch_s)
    faster = "faster" if res.speedup >= 1 else "slower"
    console.print(
        f"step time (median of {len(res.einrel_s)}): einrel {einrel_s:.3f} s on "
        f"er.cpu({res.program.device_set.n}), torch {torch_s:.3f} s in one process "
        f"-> einrel is {max(res.speedup, 1 / res.speedup):.2f}x {faster} "
        f"(speed relative to torch: {res.speedup:.2f})"
    )
    if res.grads is not None:
        print_demo(res.grads, console, where=f" (compiled, er.cpu({res.program.device_set.n}))")
    verdict = "[bold green]PASS[/]" if res.passed else "[bold red]FAIL[/]"
    worst = max(res.errors, key=lambda k: res.errors[k] / max(res.tolerances[k][0], 1e-300))
    console.print(
        f"{verdict}  {len(res.errors)} outputs within tolerance"
        if res.passed
        else f"{verdict}  {worst}: error {res.errors[worst]:.2e} > {res.tolerances[worst][0]:.1e}"
    )
    console.print(
        f"max relative error {res.max_error:.2e}; closest to its tolerance: {worst} "
        f"({res.errors[worst]:.2e} of {res.tolerances[worst][0]:.1e})"
    )


def demo(
    size: str = "demo",
    *,
    devices: int = 4,
    partitioner: str = "eindecomp",
    placer: str = "critical-path",
    dtype: str = "float32",
    runs: int = 3,
    trace: str | None = "out/demo_trace.json",
    seed: int = 0,
    check_grads: bool = True,
) -> int:
    """Run and print the pipeline demo; return the process exit code (0 on PASS)."""
    console = Console()
    res = run_pipeline(
        size,
        devices=devices,
        partitioner=partitioner,
        placer=placer,
        dtype=dtype,
        runs=runs,
        trace=trace,
        seed=seed,
        check_grads=check_grads,
        console=console,
    )
    try:
        print_pipeline(res, console)
    finally:
        res.program.close()
    return 0 if res.passed else 1


def grad_check(size: str = "small", dtype: str = "float64", seed: int = 0) -> int:
    """`einrel demo --check-grads`: the gradient check alone, reference interpreter and the
    compiled pipeline on er.cpu(2); return the exit code."""
    console = Console()
    ok = True
    for devices in (None, 2):
        res = run_demo(size, dtype, seed, devices=devices)
        where = " (reference interpreter)" if devices is None else f" (compiled, er.cpu({devices}))"
        print_demo(res, console, where=where)
        ok = ok and res.passed
    return 0 if ok else 1
