"""Calibration: time the real numpy kernels and the engine at the thread count a
device gets, and store the result as a cost model (`einrel calibrate`)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..devices import cores
from ..taskgraph.cost import CostModel


def _best(fn: Any, budget_s: float = 0.25, min_reps: int = 3) -> float:
    """Fastest of repeated calls (after one warm-up) within a small time budget."""
    fn()
    best = math.inf
    t_end = time.perf_counter() + budget_s
    reps = 0
    while reps < min_reps or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        reps += 1
    return best


def _handoff_latency(rounds: int = 300) -> float:
    """One-way thread-to-thread wake-up latency: what a move hand-off costs beyond the copy."""
    import threading

    ping, pong = threading.Event(), threading.Event()

    def echo() -> None:
        for _ in range(rounds):
            ping.wait()
            ping.clear()
            pong.set()

    th = threading.Thread(target=echo, daemon=True)
    th.start()
    t0 = time.perf_counter()
    for _ in range(rounds):
        ping.set()
        pong.wait()
        pong.clear()
    dt = time.perf_counter() - t0
    th.join()
    return dt / (2 * rounds)


def _engine_overhead(n: int = 2000) -> float:
    """Per-task engine overhead of the local engine on a chain of tiny tasks."""
    from .local import LocalEngine
    from .synthetic import chain_taskgraph, kernel_seconds

    tg, inputs = chain_taskgraph(n, ndev=1)
    eng = LocalEngine(1)
    walls = []
    for _ in range(3):
        walls.append(eng.run(tg, inputs, {}).wall_time_s)
    return max(1e-6, (min(walls) - kernel_seconds(tg, inputs)) / len(tg))


def calibrate(ndev: int = 2, dtype: str = "float32") -> CostModel:
    """Measure a cost model for `ndev` devices sharing this machine (a few seconds)."""
    from threadpoolctl import threadpool_limits

    from .. import kernels
    from ..ir.einsum import make_einsum

    threads = max(1, cores() // ndev)
    rng = np.random.default_rng(0)
    sdt = kernels.storage_dtype(dtype)
    with threadpool_limits(limits=threads, user_api="blas"):
        n = 512
        a = rng.standard_normal((n, n)).astype(sdt)
        b = rng.standard_normal((n, n)).astype(sdt)
        mm = make_einsum("ij,jk->ik", [a.shape, b.shape])
        t = _best(lambda: kernels.einsum(mm, [a, b], {}, dtype))
        contraction = mm.flops() / t

        m = 1 << 20
        x = rng.standard_normal((1024, m // 1024)).astype(sdt)
        y = rng.standard_normal(x.shape).astype(sdt)
        add = make_einsum("ij,ij->ij", [x.shape, y.shape], join=lambda p, q: p + q, agg=None)
        t = _best(lambda: kernels.einsum(add, [x, y], {}, dtype))
        elementwise = add.flops() / t

        t = _best(lambda: kernels.combine("sum", x, y))
        agg = x.size / t

        out = np.empty_like(x)
        t = _best(lambda: np.copyto(out, x))
        copy = x.nbytes / t
        t = _best(lambda: np.array(x, copy=True))
        link = x.nbytes / t
    return CostModel(
        contraction_flops_per_s=float(contraction),
        elementwise_elems_per_s=float(elementwise),
        agg_elems_per_s=float(agg),
        copy_bytes_per_s=float(copy),
        task_overhead_s=float(_engine_overhead()),
        link_bytes_per_s=float(link),
        link_latency_s=float(max(1e-6, _handoff_latency())),
        ndev=ndev,
    )


def calibrate_and_save(path: str | Path | None = None, ndev: int = 2) -> CostModel:
    """Calibrate on this machine and store the result (see `default_path`)."""
    cm = calibrate(ndev)
    cm.save(path)
    return cm
