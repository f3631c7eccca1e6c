"""Placers: one registry, one vocabulary, options as fields (`er.placers.Search(budget_s=2)`).

A placer is a frozen dataclass whose fields are its options; calling it as
`placer(graph, ndev, seed)` gives a device per operation of a `PlaceGraph`. The same placers
place Doppler's graph files and einrel's own task graphs: `to_place_graph` turns an unplaced
task graph into a `PlaceGraph` whose ops are its non-leaf tasks (leaves, graph inputs and
fills, are free on every device, as in the Doppler papers), with each op's graph node as its
group and the task graph itself kept for placers that read it (eindecomp-greedy).

`get_placer("search", budget_s=2)` or `get_placer(Search(budget_s=2))` returns a placer;
unknown names and options are a CompileError that lists the valid ones.
"""

from __future__ import annotations

import random as _random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from ..errors import CompileError
from ..options import Strategy, resolve
from ..taskgraph.ir import TaskGraph
from .dag import PlaceGraph, check_ndev
from .listsched import critical_path, heft
from .search import anneal
from .simulate import make_simulator

LEAVES = ("input", "fill")


@dataclass(frozen=True)
class Placer(Strategy):
    """Base of every placer: `placer(graph, ndev, seed)` -> device per op."""

    name: ClassVar[str] = ""

    def __call__(self, graph: PlaceGraph, ndev: int, seed: int = 0) -> list[int]:
        raise NotImplementedError


@dataclass(frozen=True)
class RoundRobin(Placer):
    """The k-th op of every group on device k mod ndev: for einrel task graphs the k-th block
    of every graph node, so equal partitions of neighbouring nodes line up block for block;
    for a graph file (one group) op i on device i mod ndev, the released code's baseline."""

    name: ClassVar[str] = "round-robin"

    def __call__(self, graph: PlaceGraph, ndev: int, seed: int = 0) -> list[int]:
        check_ndev(ndev)
        groups = graph.groups or (0,) * graph.num_ops
        count: dict[int, int] = {}
        out = []
        for g in groups:
            k = count.get(g, 0)
            count[g] = k + 1
            out.append(k % ndev)
        return out


@dataclass(frozen=True)
class Random(Placer):
    """The best of `tries` uniform assignments under the simulator (first best on ties)."""

    name: ClassVar[str] = "random"
    tries: int = 100

    def __post_init__(self) -> None:
        if not isinstance(self.tries, int) or self.tries < 1:
            raise CompileError(f"random placer needs tries >= 1, got {self.tries!r}")

    def __call__(self, graph: PlaceGraph, ndev: int, seed: int = 0) -> list[int]:
        check_ndev(ndev)
        rng = _random.Random(seed)
        sim = make_simulator(graph)
        best: list[int] = []
        best_span = float("inf")
        for _ in range(self.tries):
            a = [rng.randrange(ndev) for _ in range(graph.num_ops)]
            span = sim(a)
            if span < best_span:
                best, best_span = a, span
        return best


@dataclass(frozen=True)
class CriticalPath(Placer):
    """Doppler's critical-path list scheduling, with deterministic tie-breaks."""

    name: ClassVar[str] = "critical-path"

    def __call__(self, graph: PlaceGraph, ndev: int, seed: int = 0) -> list[int]:
        return critical_path(graph, ndev)


@dataclass(frozen=True)
class Heft(Placer):
    """HEFT with insertion; deterministic."""

    name: ClassVar[str] = "heft"

    def __call__(self, graph: PlaceGraph, ndev: int, seed: int = 0) -> list[int]:
        return heft(graph, ndev)


@dataclass(frozen=True)
class Search(Placer):
    """Simulated annealing under the simulator, seeded by critical path, within `budget_s`
    seconds (or `max_evals` simulations); see `search.anneal`."""

    name: ClassVar[str] = "search"
    budget_s: float = 10.0
    max_evals: int | None = None
    start: Sequence[int] | None = None

    def __call__(self, graph: PlaceGraph, ndev: int, seed: int = 0) -> list[int]:
        check_ndev(ndev)
        return anneal(
            graph, ndev, seed, budget_s=self.budget_s, max_evals=self.max_evals, start=self.start
        ).assignment


@dataclass(frozen=True)
class EinDecompGreedy(Placer):
    """EinDecomp's location assignment (`locate.eindecomp_greedy`) on einrel task graphs."""

    name: ClassVar[str] = "eindecomp-greedy"
    flops_per_byte_moved: float = 1000.0

    def __call__(self, graph: PlaceGraph, ndev: int, seed: int = 0) -> list[int]:
        from .locate import eindecomp_greedy

        if graph.origin is None:
            raise CompileError(
                f"placer {self.name!r} places einrel task graphs (it reads their blocks); "
                f"graph {graph.name!r} is an operation DAG only"
            )
        tg, ops = graph.origin
        devices = eindecomp_greedy(tg, ndev, flops_per_byte_moved=self.flops_per_byte_moved)
        return [devices[t] for t in ops]


@dataclass(frozen=True)
class Doppler(Placer):
    """Greedy decoding of a trained Doppler policy (`place.doppler`).

    `policy`: a policy file or `DopplerPolicy` trained for `ndev` devices; without one, the
    committed policy for this graph and device count, else a short policy trained now (stages I
    and II with a progress bar, when `train`) and, with `cache` (a folder), kept there for the
    next call. Nothing is read from or written to any folder that is not named."""

    name: ClassVar[str] = "doppler"
    policy: Any = None
    train: bool = True
    cache: str | Path | None = None
    progress: bool = True

    def _policy(self, graph: PlaceGraph, ndev: int, seed: int) -> Any:
        from .doppler.placer import policy_for

        return policy_for(
            graph,
            ndev,
            policy=self.policy,
            seed=seed,
            progress=self.progress,
            train_missing=self.train,
            cache=self.cache,
        )

    def __call__(self, graph: PlaceGraph, ndev: int, seed: int = 0) -> list[int]:
        return self._policy(graph, ndev, seed).place(graph, ndev)


@dataclass(frozen=True)
class DopplerSearch(Doppler):
    """Annealing (as `search`) started from the doppler placer's assignment."""

    name: ClassVar[str] = "doppler+search"
    budget_s: float = 10.0
    max_evals: int | None = None

    def __call__(self, graph: PlaceGraph, ndev: int, seed: int = 0) -> list[int]:
        start = super().__call__(graph, ndev, seed)
        return anneal(
            graph, ndev, seed, budget_s=self.budget_s, max_evals=self.max_evals, start=start
        ).assignment


PLACERS: Mapping[str, type[Placer]] = MappingProxyType(
    {
        cls.name: cls
        for cls in (
            RoundRobin,
            Random,
            CriticalPath,
            Heft,
            Search,
            EinDecompGreedy,
            Doppler,
            DopplerSearch,
        )
    }
)


def get_placer(spec: str | Placer, **options: Any) -> Placer:
    """The placer `spec` names (or `spec` itself), with `options` set; unknown names and
    options raise CompileError listing the valid ones."""
    return resolve("placer", Placer, PLACERS, spec, options)


def to_place_graph(tg: TaskGraph, cost_model: Any) -> PlaceGraph:
    """The placement view of an unplaced task graph: its non-leaf tasks as ops, with modelled
    compute seconds and the seconds to ship their output; groups are their graph nodes."""
    ops = [t.id for t in tg.tasks if t.kind not in LEAVES]
    index = {t: i for i, t in enumerate(ops)}
    comp = [cost_model.task_seconds(tg.tasks[t]) for t in ops]
    comm = [cost_model.move_seconds(tg.tasks[t].nbytes) for t in ops]
    edges = [
        (index[i], index[t]) for t in ops for i in dict.fromkeys(tg.tasks[t].inputs) if i in index
    ]
    return PlaceGraph(
        tuple(comp),
        tuple(comm),
        tuple(edges),
        name="taskgraph",
        groups=tuple(tg.tasks[t].node for t in ops),
        origin=(tg, tuple(ops)),
    )


def place(
    placer: str | Placer, tg: TaskGraph, ndev: int, cost_model: Any, seed: int = 0
) -> list[int]:
    """A device per task of the unplaced `tg` (leaves get -1: they live wherever needed)."""
    fn = get_placer(placer)
    check_ndev(ndev)
    if tg.placed:
        raise CompileError("the task graph is already placed; place an unplaced one")
    pg = to_place_graph(tg, cost_model)
    assignment = fn(pg, ndev, seed)
    devices = [-1] * len(tg.tasks)
    assert pg.origin is not None
    for i, t in enumerate(pg.origin[1]):
        devices[t] = int(assignment[i])
    return devices
