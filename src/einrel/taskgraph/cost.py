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

from ..devices import cores
from .ir import Task

ENV_VAR = "EINREL_CALIBRATION"


def default_path() -> Path:
    """Where calibrations live: `$EINREL_CALIBRATION`, else ~/.cache/einrel/calibration.json."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else Path.home() / ".cache" / "einrel" / "calibration.json"


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
            op = task.op.body  # an init operand costs one more pass over the output
            if op.agg_labels and op.arity >= 2 and _factored(op):
                # the kernel maps each operand elementwise, then runs one GEMM
                gemm = 2.0 * math.prod(op.join_shape) / self.contraction_flops_per_s
                maps = sum(math.prod(s) for s in op.input_shapes) * (not op.is_contraction)
                work = gemm + maps / self.elementwise_elems_per_s
            else:
                work = op.flops() / self.elementwise_elems_per_s
            if task.op.init:
                work += math.prod(op.out_shape) / self.elementwise_elems_per_s
        elif kind == "sparse":  # the join over every tuple, the other labels dense
            work = task.op.flops() / self.elementwise_elems_per_s
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
    def resolve(spec: CostModel | str | Path | None) -> CostModel:
        """The cost model `er.compile(cost_model=...)` names: None for the built-in model, a
        `CostModel`, a path to a saved one, or "calibrated" for the one `einrel calibrate`
        saved (`default_path()`). Nothing is read unless named."""
        from ..errors import CompileError

        if spec is None:
            return CostModel.default()
        if isinstance(spec, CostModel):
            return spec
        if not isinstance(spec, str | Path):
            raise CompileError(
                f"cost_model must be a CostModel, a path or 'calibrated', got {spec!r}"
            )
        path = default_path() if spec == "calibrated" else Path(spec)
        try:
            return CostModel.load(path)
        except OSError as e:
            hint = " (run `einrel calibrate` first)" if spec == "calibrated" else ""
            raise CompileError(f"cost_model: cannot read {path}: {e.strerror}{hint}") from None
        except (ValueError, TypeError) as e:
            raise CompileError(f"cost_model: {path} is not a saved cost model: {e}") from None

    def with_(self, **changes: Any) -> CostModel:
        return replace(self, **changes)


def _factored(op: Any) -> bool:
    """A join of the form c * s * prod_i f_i(x_i) with sum aggregation runs as a GEMM."""
    from ..ir.scalar.expr import scaled_product

    return op.agg in (None, "sum") and scaled_product(op.join) is not None
