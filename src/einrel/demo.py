"""`einrel demo`: one LLaMA-block training step, checked end to end against torch.autograd.

It builds the block's forward pass, MSE loss, every weight's gradient and an SGD update as one
einrel graph, runs it with the reference interpreter and compares each output with the same step
written in plain torch. A failing comparison makes the command exit non-zero.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from rich.console import Console
from rich.table import Table

from .reference import evaluate
from .workloads import Workload, llama_block, max_rel_error, node_kinds

TOLERANCE = {"float64": 1e-8, "float32": 1e-3}


@dataclass
class DemoResult:
    """What the demo measured: errors per output name, (einrel, torch) loss, timings in s."""

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


def run_demo(size: str = "small", dtype: str = "float64", seed: int = 0) -> DemoResult:
    """Build, evaluate and check the training step; print nothing."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    wl = llama_block(size, dtype, mode="train", with_grads=True)
    graph = wl.graph()
    timings["build"] = time.perf_counter() - t0
    feeds = wl.make_feeds(seed)
    t0 = time.perf_counter()
    got = evaluate(wl.outputs, feeds)
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


def print_demo(res: DemoResult, console: Console | None = None) -> None:
    """A short summary: the graph, the cost, the error of every output and the verdict."""
    console = console or Console()
    wl, tol = res.workload, res.tolerance
    z = wl.meta["shape"]
    console.print(
        f"[bold]einrel demo[/]: LLaMA block training step, size [cyan]{wl.meta['size']}[/] "
        f"(batch {z.batch}, seq {z.seq}, d {z.d}, {z.heads} heads × {z.head_dim}, "
        f"hidden {z.hidden}), {wl.meta['dtype']}"
    )
    console.print(
        "graph: "
        + ", ".join(f"{k} {v}" for k, v in res.nodes.items())
        + f"  (total {sum(res.nodes.values())} nodes)"
    )
    t = res.timings
    console.print(
        f"flops {wl.flops / 1e6:.1f} M   build {t['build'] * 1e3:.0f} ms   "
        f"einrel reference {t['einrel'] * 1e3:.0f} ms   torch {t['torch'] * 1e3:.0f} ms"
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


def demo(size: str = "small", dtype: str = "float64", seed: int = 0) -> int:
    """Run and print the demo; return the process exit code (0 on PASS)."""
    res = run_demo(size, dtype, seed)
    print_demo(res)
    return 0 if res.passed else 1
