"""Doppler stage III targets from einrel's workloads: `NAME[:SIZE]` built, fused and decomposed
as `er.compile` does, with bound feeds, as a `place.doppler.real.RealTarget`."""

from __future__ import annotations

from typing import Any

from ..errors import CompileError
from ..place.dag import PlaceGraph
from ..place.doppler.real import SPEC, RealTarget


def is_workload_spec(text: str) -> bool:
    """True for `NAME[:SIZE]` naming one of einrel's workloads (e.g. `llama_block:medium`)."""
    from . import WORKLOADS

    m = SPEC.match(text)
    return m is not None and m.group("name") in WORKLOADS


def workload_target(
    spec: str,
    ndev: int,
    *,
    dtype: str = "float32",
    partitioner: str = "eindecomp",
    seed: int = 0,
) -> RealTarget:
    """Build `NAME[:SIZE]` (training step with gradients where the workload has one), fuse and
    decompose it for `ndev` devices with `partitioner` as `er.compile` does (so the placement
    graph, and its fingerprint, is the one `er.compile(..., placer="doppler")` sees), and bind
    its feeds for the local engine."""
    from ..decompose import get_partitioner
    from ..frontend.reference import bind_feeds
    from ..frontend.tensor import build_graph
    from ..ir.fuse import fuse_elementwise
    from ..place.placers import to_place_graph
    from ..runtime.local import LocalEngine
    from ..taskgraph.build import build_tasks
    from ..taskgraph.cost import CostModel
    from . import SIZES, get_workload

    m = SPEC.match(spec)
    if not m or not is_workload_spec(spec):
        raise CompileError(
            f"{spec!r} is not a workload; expected NAME[:SIZE] with NAME one of {sorted(SIZES)}"
        )
    name, size = m.group("name"), m.group("size") or "small"
    if size not in SIZES[name]:
        raise CompileError(f"workload {name}: unknown size {size!r}; sizes: {SIZES[name]}")
    options: dict[str, Any] = {}
    if name == "llama_block":
        options = {"mode": "train", "with_grads": True}
    elif name == "ffnn_train":
        options = {"with_grads": True}
    wl = get_workload(name, size, dtype, **options)
    graph = fuse_elementwise(build_graph(wl.outputs))  # as er.compile does by default
    decomposition = get_partitioner(partitioner)(graph, ndev)
    tg = build_tasks(graph, decomposition)
    model = CostModel.default()
    pg = to_place_graph(tg, model)
    ops = list(pg.origin[1])
    pg = PlaceGraph(pg.comp, pg.comm, pg.edges, name=f"{name}-{size}")
    inputs, variables = bind_feeds(graph, wl.make_feeds(seed))
    engine = LocalEngine(ndev, cost_model=model)
    return RealTarget(f"{name}-{size}", ndev, tg, pg, ops, inputs, variables, engine)
