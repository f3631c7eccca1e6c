"""How long a block task takes: one cost model shared by the simulator and the critical-path
priority, so planning and running rank tasks the same way.

Throughputs are per device (one device = one worker with `cores // ndev` BLAS threads):
- contractions (BLAS-backed applies) in FLOP/s, FLOPs as `Einsum.flops()` counts them;
- other applies in join-space elements/s for a one-operation join (a join of k scalar
  operations costs k elements' worth, i.e. `Einsum.flops()` elements);
- aggregations in combined elements/s; assemble / reshape / input / fill in bytes/s;
- every task pays a fixed engine overhead; a move pays latency + bytes / link bandwidth.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..taskgraph import Task

ENV_VAR = "EINREL_CALIBRATION"


def default_path() -> Path:
    """Where calibrations live: `$EINREL_CALIBRATION`, else ~/.cache/einrel/calibration.json."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else Path.home() / ".cache" / "einrel" / "calibration.json"


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class CostModel:
    """Per-kernel-kind throughputs of one device and the costs of moving data between two."""

    contraction_flops_per_s: float
    elementwise_elems_per_s: float
    agg_elems_per_s: float
    copy_bytes_per_s: float
    task_overhead_s: float
    link_bytes_per_s: float
    link_latency_s: float
    ndev: int = 1

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(f"cost model field {f.name} must be a positive number, got {v!r}")

    # --- costs ---------------------------------------------------------------------------------
    def task_seconds(self, task: Task) -> float:
        """Modelled duration of one task on its device (moves: on their link)."""
        kind = task.kind
        if kind == "move":
            return self.move_seconds(task.nbytes)
        if kind == "apply":
            op = task.op
            if op.agg_labels and op.arity >= 2 and _factored(op):
                # the kernel maps each operand elementwise, then runs one GEMM
                gemm = 2.0 * math.prod(op.join_shape) / self.contraction_flops_per_s
                maps = sum(math.prod(s) for s in op.input_shapes) * (not op.is_contraction)
                work = gemm + maps / self.elementwise_elems_per_s
            else:
                work = op.flops() / self.elementwise_elems_per_s
        elif kind == "agg":
            work = math.prod(task.shape) * max(1, len(task.inputs) - 1) / self.agg_elems_per_s
        else:  # input, fill, assemble, reshape: bytes written
            work = task.nbytes / self.copy_bytes_per_s
        return self.task_overhead_s + work

    def move_seconds(self, nbytes: int) -> float:
        return self.link_latency_s + nbytes / self.link_bytes_per_s

    # --- persistence ---------------------------------------------------------------------------
    @staticmethod
    def default() -> CostModel:
        """Round numbers from `calibrate(2)` on a 2-core AVX-512 machine (float32 OpenBLAS, one
        BLAS thread per device); good enough to rank tasks when no calibration exists."""
        return CostModel(
            contraction_flops_per_s=7.0e10,
            elementwise_elems_per_s=6.0e8,
            agg_elems_per_s=9.0e8,
            copy_bytes_per_s=1.2e10,
            task_overhead_s=2.0e-5,
            link_bytes_per_s=1.2e10,
            link_latency_s=1.5e-5,
            ndev=2,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> CostModel:
        names = {f.name for f in fields(CostModel)}
        unknown = sorted(set(d) - names - {"meta"})
        if unknown:
            raise ValueError(f"unknown cost model fields {unknown}; expected {sorted(names)}")
        return CostModel(**{k: v for k, v in d.items() if k in names})

    def save(self, path: str | Path | None = None) -> Path:
        p = Path(path) if path is not None else default_path()
        p.parent.mkdir(parents=True, exist_ok=True)
        meta = {"cores": cores(), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        p.write_text(json.dumps({**self.to_dict(), "meta": meta}, indent=2) + "\n")
        return p

    @staticmethod
    def load(path: str | Path | None = None) -> CostModel:
        p = Path(path) if path is not None else default_path()
        return CostModel.from_dict(json.loads(p.read_text()))

    @staticmethod
    def load_or_default(path: str | Path | None = None) -> CostModel:
        """The saved calibration if there is a readable one, else `default()`."""
        try:
            return CostModel.load(path)
        except (OSError, ValueError, TypeError):
            return CostModel.default()

    def with_(self, **changes: Any) -> CostModel:
        return replace(self, **changes)


# ---------------------------------------------------------------------------------------------
# Calibration: time the real numpy kernels at the thread count a device gets
# ---------------------------------------------------------------------------------------------


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
    from ..einsum import make_einsum

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


def _factored(op: Any) -> bool:
    """A join of the form c * prod_i f_i(x_i) with sum aggregation runs as a GEMM."""
    from ..scalar import product_factors

    return op.agg in (None, "sum") and not math.isnan(product_factors(op.join)[0])
