"""Helpers several test modules share."""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

import einrel as er
from einrel.decompose.partition import Partition
from einrel.ir.graph import Graph
from einrel.memory import MemGraph, min_budget, plan_memory
from einrel.runtime.mem.schedule import final_holders
from einrel.taskgraph import TaskGraph, build_tasks, place_tasks


@contextlib.contextmanager
def local_ray(num_cpus: int) -> Iterator[Any]:
    """A fresh local Ray runtime with `num_cpus` CPUs for the duration of the block."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def place_by(name: str, tg: Any, ndev: int, **options: Any) -> list[int]:
    """A device per task of an unplaced task graph, from the placer `name` (built-in costs)."""
    from einrel.place.placers import get_placer, place
    from einrel.taskgraph.cost import CostModel

    return place(get_placer(name, **options), tg, ndev, CostModel.default())


def round_robin(tg: Any, ndev: int) -> list[int]:
    return place_by("round-robin", tg, ndev)


def run_with_deadline(fn: Callable[[], Any], seconds: float) -> Any:
    """Run fn in a thread; fail the test instead of hanging the suite if it never returns."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join(seconds)
    assert not th.is_alive(), f"did not return within {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


# --- random programs for the memory tests ---------------------------------------------------

DIMS = (2, 3, 4, 5)
RTOL = 1e-12


def close(got: np.ndarray, want: np.ndarray, rtol: float = RTOL) -> None:
    scale = max(1.0, float(np.max(np.abs(want))) if want.size else 1.0)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


def random_graph(r: random.Random) -> Graph:
    """A small float64 graph of matmuls, elementwise ops, reductions, concat and slices."""
    names = iter(f"x{k}" for k in range(100))

    def new(shape: tuple[int, ...]) -> er.Tensor:
        return er.input(next(names), shape, "float64")

    pool = [new((r.choice(DIMS), r.choice(DIMS))) for _ in range(r.randint(1, 2))]
    for _ in range(r.randint(2, 8)):
        a = r.choice([t for t in pool if t.ndim == 2] or pool)
        if a.ndim != 2:
            pool.append(a * 2.0 + 1.0)
            continue
        op = r.choice(["matmul", "matmul", "relu", "softmax", "sum", "concat", "slice", "dist"])
        if op == "matmul":
            fits = [t for t in pool if t.ndim == 2 and t.shape[0] == a.shape[1]]
            b = r.choice(fits) if fits and r.random() < 0.6 else new((a.shape[1], r.choice(DIMS)))
            y = a @ b
        elif op == "relu":
            y = er.relu(a) + a
        elif op == "softmax":
            y = er.softmax(a, axis=r.randrange(2))
        elif op == "sum":
            y = a.sum(r.randrange(2))
        elif op == "concat":
            y = er.concat([a, er.exp(a * 0.1)], axis=r.randrange(2))
        elif op == "slice":
            m, n = a.shape
            lo = (r.randrange(m), r.randrange(n))
            y = er.slice(a, lo, (r.randint(lo[0] + 1, m), r.randint(lo[1] + 1, n)))
        else:
            y = er.einsum(
                "ij,kj->ik", a, a, join=lambda x, z: (x - z) ** 2, agg=r.choice(["sum", "max"])
            )
        pool.append(y)
    outs = [pool[-1]]
    extra = r.choice(pool[:-1])
    if r.random() < 0.5 and extra.name not in {t.name for t in outs}:
        outs.append(extra)
    return er.build_graph(outs)


def random_placed(r: random.Random, g: Graph, ndev: int | None = None) -> TaskGraph:
    dec = {}
    for n in g.nodes:
        shape = n.einsum.join_shape if n.op == "einsum" else n.shape
        dec[n.id] = Partition.even(shape, [r.randint(1, min(3, k)) for k in shape])
    tg = build_tasks(g, dec)
    nd = ndev if ndev is not None else r.randint(1, 3)
    return place_tasks(tg, [r.randrange(nd) for _ in tg.tasks], nd)


def random_budgets(r: random.Random, tg: TaskGraph) -> list[int | None]:
    low = min_budget(tg)
    high = plan_memory(tg, None).stats.peak_bytes
    out: list[int | None] = []
    for lo, hi in zip(low, high):
        kind = r.choice(["min", "min", "between", "between", "peak", "none"])
        if kind == "min":
            out.append(lo)
        elif kind == "between":
            out.append(r.randint(lo, max(lo, hi)))
        elif kind == "peak":
            out.append(max(lo, hi))
        else:
            out.append(None)
    return out


def feeds_for(r: random.Random, g: Graph) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(r.randrange(2**32))
    return {n.name: rng.standard_normal(n.shape) for n in g.inputs}


def check_result(mg: MemGraph, res, want: list[np.ndarray]) -> None:
    """Values, the budget, the start order as a linear extension, and the transfer totals."""
    from einrel.taskgraph.interpret import assemble_outputs

    for got, ref in zip(assemble_outputs(mg.taskgraph, res.values), want, strict=True):
        close(got, ref)
    for d, b in enumerate(mg.budgets):
        assert b is None or res.peak_bytes[d] <= b, (d, res.peak_bytes, mg.budgets)
    seen: set[int] = set()
    for i in res.order:
        if i < len(mg.nodes):
            assert all(dep in seen for dep in mg.nodes[i].deps), f"n{i} started before its deps"
        seen.add(i)
    assert len(seen) == len(mg.nodes) + len(final_holders(mg))
    assert res.bytes_offloaded == sum(mg.stats.evicted_bytes)
    assert res.bytes_loaded == sum(mg.stats.loaded_bytes)
