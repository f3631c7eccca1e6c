"""Building the memory graph: simulate one legal order, record the constraints it needs.

The planning order is the task id order, with every aggregation split into touches. A
future-use oracle (the step indices where each block is used) drives Belady eviction; an
evicted block is loaded back right before its next use.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import CompileError, MemoryBudgetError
from ..taskgraph.ir import TaskGraph
from .allocator import ALIGNMENT, Allocator, aligned
from .graph import MemGraph, MemNode, MemStats, NodeKind, OutputPlace, Region

STRATEGIES = ("lowest-dependency", "first-fit")
NEVER = math.inf  # the next use of a block that is only kept as a graph output


@dataclass(frozen=True)
class Step:
    """One step of the planning order: a task, one accumulation into an agg, or its end."""

    kind: str  # "compute" | "touch" | "done"
    task: int
    source: int = -1  # touch: the partial added

    def reads(self, tg: TaskGraph) -> tuple[int, ...]:
        if self.kind == "compute":
            return tg.tasks[self.task].inputs
        if self.kind == "touch":
            return (self.source,)
        return ()


def planning_steps(tg: TaskGraph) -> list[Step]:
    """Tasks in id order, each agg with several partials expanded into touches and a done."""
    steps: list[Step] = []
    for t in tg.tasks:
        if t.kind == "agg" and len(t.inputs) > 1:
            steps.extend(Step("touch", t.id, i) for i in t.inputs)
            steps.append(Step("done", t.id))
        else:
            steps.append(Step("compute", t.id))
    return steps


def _working_set(tg: TaskGraph, step: Step, alignment: int) -> dict[int, int]:
    """Bytes per device that must be resident at once for `step`: its operands and output."""
    if step.kind == "done":
        return {}
    blocks = {*step.reads(tg), step.task}
    need: dict[int, int] = {}
    for b in blocks:
        t = tg.tasks[b]
        need[t.device] = need.get(t.device, 0) + aligned(t.nbytes, alignment)
    return need


def min_budget(tg: TaskGraph, alignment: int = ALIGNMENT) -> tuple[int, ...]:
    """The smallest budget per device that a plan exists for: the largest working set."""
    _check_placed(tg)
    best = [0] * tg.ndev
    for step in planning_steps(tg):
        for d, n in _working_set(tg, step, alignment).items():
            best[d] = max(best[d], n)
    return tuple(best)


def _check_placed(tg: TaskGraph) -> None:
    if not tg.placed:
        raise CompileError("memory planning needs a placed task graph; call place_tasks first")


def _budgets(tg: TaskGraph, budget: int | Sequence[int | None] | None) -> tuple[int | None, ...]:
    if budget is None or isinstance(budget, int | np.integer):
        out: tuple[int | None, ...] = (None if budget is None else int(budget),) * tg.ndev
    else:
        out = tuple(None if b is None else int(b) for b in budget)
    if len(out) != tg.ndev:
        raise CompileError(f"{len(out)} memory budgets given for {tg.ndev} devices")
    for d, b in enumerate(out):
        if b is not None and b < 0:
            raise CompileError(f"device {d}: negative memory budget {b}")
    return out


def _check_budgets(
    tg: TaskGraph, steps: Sequence[Step], budgets: Sequence[int | None], alignment: int
) -> None:
    worst: tuple[int, int, Step] | None = None  # (excess, device, step)
    for step in steps:
        for d, n in _working_set(tg, step, alignment).items():
            b = budgets[d]
            if b is not None and n > b and (worst is None or n - b > worst[0]):
                worst = (n - b, d, step)
    if worst is None:
        return
    excess, d, step = worst
    t = tg.tasks[step.task]
    name = tg.graph[t.node].name
    what = (
        f"accumulating partial t{step.source} into agg task t{t.id}"
        if step.kind == "touch"
        else f"{t.kind} task t{t.id}"
    )
    need = (budgets[d] or 0) + excess
    err = MemoryBudgetError(
        f"{what} of graph node {name} needs {need} bytes resident at once on device {d} "
        f"(its inputs and output, each aligned to {alignment} B), but the device budget is "
        f"{budgets[d]} bytes"
    )
    err.task, err.node, err.device, err.needed = t.id, name, d, need  # type: ignore[attr-defined]
    raise err


class _Planner:
    """Simulates the planning order once and records the constraints it relies on."""

    def __init__(
        self, tg: TaskGraph, budgets: tuple[int | None, ...], alignment: int, first_fit: bool
    ) -> None:
        self.tg = tg
        self.align = alignment
        self.first_fit = first_fit
        self.steps = planning_steps(tg)
        self.nodes: list[MemNode] = []
        self.arenas = [Allocator(b) for b in budgets]
        self.keep = {b for row in tg.outputs for b, _ in row}
        self.uses: dict[int, deque[int]] = {}  # the future-use oracle: step indices per block
        for k, s in enumerate(self.steps):
            for b in s.reads(tg):
                self.uses.setdefault(b, deque()).append(k)
            if s.kind == "touch":
                self.uses.setdefault(s.task, deque()).append(k)
        self.state: dict[int, str] = {}  # block -> "dev" | "host" | "freed" (absent: unborn)
        self.where: dict[int, int] = {}  # resident block -> offset
        self.base: dict[int, int] = {}  # alloc or load of the current residency
        self.holder: dict[int, int] = {}  # node after which the resident copy is complete
        self.users: dict[int, list[int]] = {}  # nodes of the current residency
        self.evicted_by: dict[int, int] = {}
        self.touches: dict[int, list[int]] = {}
        ndev = len(budgets)
        self.live = [0] * ndev
        self.peak = [0] * ndev
        self.evicted = [0] * ndev
        self.loaded = [0] * ndev

    # --- small helpers -----------------------------------------------------------------------
    def size(self, b: int) -> int:
        return aligned(self.tg.tasks[b].nbytes, self.align)

    def dev(self, b: int) -> int:
        return self.tg.tasks[b].device

    def region(self, b: int) -> Region:
        return Region(self.dev(b), self.where[b], self.size(b))

    def emit(self, kind: NodeKind, device: int, block: int, deps: Any, **kw: Any) -> int:
        i = len(self.nodes)
        clean = tuple(sorted({d for d in deps if d >= 0}))
        self.nodes.append(MemNode(i, kind, device, block, clean, **kw))
        return i

    def next_use(self, b: int) -> float:
        q = self.uses.get(b)
        return q[0] if q else NEVER

    # --- releasing memory --------------------------------------------------------------------
    def release(self, b: int, kind: Literal["evict", "free"]) -> None:
        d, r = self.dev(b), self.region(b)
        n = self.emit(kind, d, b, self.users.pop(b), region=r)
        self.arenas[d].release(r.offset, r.size, n)
        self.live[d] -= r.size
        del self.where[b]
        self.state[b] = "host" if kind == "evict" else "freed"
        if kind == "evict":
            self.evicted_by[b] = n
            self.evicted[d] += self.tg.tasks[b].nbytes

    def maybe_free(self, b: int) -> None:
        if self.state.get(b) == "dev" and not self.uses.get(b) and b not in self.keep:
            self.release(b, "free")

    # --- making room -------------------------------------------------------------------------
    def victims(self, d: int, size: int, protected: set[int]) -> list[int] | None:
        """Belady on contiguous runs: among runs of free ranges and unprotected blocks large
        enough for `size`, the run whose soonest next use is furthest away (then fewest bytes
        evicted, then lowest offset)."""
        items = [(s[0], s[1], -1) for s in self.arenas[d].free]
        items += [(o, o + self.size(b), b) for b, o in self.where.items() if self.dev(b) == d]
        items.sort()
        best: tuple[tuple[float, int, int], list[int]] | None = None
        for i, (start, _, b0) in enumerate(items):
            if b0 in protected:
                continue
            soonest, out, nbytes = NEVER, [], 0
            for _, end, b in items[i:]:
                if b >= 0:
                    if b in protected:
                        break
                    soonest = min(soonest, self.next_use(b))
                    out.append(b)
                    nbytes += self.size(b)
                if end - start >= size:
                    key = (-soonest, nbytes, start)
                    if best is None or key < best[0]:
                        best = (key, out)
                    break
        return None if best is None else best[1]

    def alloc(self, d: int, size: int, protected: set[int], first_fit: bool) -> tuple[int, set]:
        ar = self.arenas[d]
        off = ar.find(size, first_fit)
        if off is None:
            out = self.victims(d, size, protected)
            if out is None:
                raise _NoRoom(d)
            for b in out:
                self.release(b, "evict")
            off = ar.find(size, first_fit)
            assert off is not None
        return off, ar.take(off, size)

    def make_resident(self, b: int, protected: set[int], first_fit: bool) -> None:
        d, size = self.dev(b), self.size(b)
        off, deps = self.alloc(d, size, protected, first_fit)
        self.where[b] = off
        self.live[d] += size
        self.peak[d] = max(self.peak[d], self.live[d])
        r = self.region(b)
        a = self.emit("alloc", d, b, deps, region=r)
        if self.state.get(b) == "host":
            ld = self.emit("load", d, b, (a, self.evicted_by.pop(b)), region=r)
            self.loaded[d] += self.tg.tasks[b].nbytes
            self.base[b] = self.holder[b] = ld
            self.users[b] = [ld]
        else:
            assert b not in self.state, f"block t{b} is used after it was freed"
            self.base[b] = a
            self.users[b] = [a]
        self.state[b] = "dev"

    def prepare(self, need: Sequence[int]) -> None:
        """Make every block in `need` resident (loading or allocating it, outputs last). If a
        device is too fragmented around the operands, evict everything there and pack the
        step's blocks from offset 0, which always fits a budget at least the working set."""
        protected = set(need)
        compacted: set[int] = set()
        while True:
            try:
                for b in need:
                    if self.state.get(b) != "dev":
                        fit = self.first_fit or self.dev(b) in compacted
                        self.make_resident(b, protected, fit)
                return
            except _NoRoom as e:
                if e.device in compacted:  # pragma: no cover - excluded by the budget check
                    raise AssertionError(f"device {e.device}: no room after compaction") from None
                compacted.add(e.device)
                for b in [b for b in self.where if self.dev(b) == e.device]:
                    self.release(b, "evict")

    # --- the planning loop -------------------------------------------------------------------
    def run(self) -> None:
        tg = self.tg
        for k, step in enumerate(self.steps):
            t = tg.tasks[step.task]
            reads = step.reads(tg)
            if step.kind == "done":
                n = self.emit("done", t.device, t.id, self.touches[t.id], group=t.id)
                self.users[t.id].append(n)
                self.holder[t.id] = n
                self.maybe_free(t.id)
                continue
            self.prepare([*dict.fromkeys(reads), t.id])
            srcs = tuple(reads)
            regs = tuple(self.region(b) for b in srcs)
            deps = [self.holder[b] for b in srcs] + [self.base[t.id]]
            out = self.region(t.id)
            if step.kind == "touch":
                n = self.emit(
                    "touch", t.device, t.id, deps, region=out, sources=srcs, reads=regs, group=t.id
                )
                self.touches.setdefault(t.id, []).append(n)
            else:
                n = self.emit("compute", t.device, t.id, deps, region=out, sources=srcs, reads=regs)
                self.holder[t.id] = n
            self.users[t.id].append(n)
            for b in dict.fromkeys(srcs):
                self.users[b].append(n)
            for b in [*srcs, t.id] if step.kind == "touch" else srcs:
                q = self.uses[b]
                while q and q[0] == k:
                    q.popleft()
            for b in dict.fromkeys(srcs):
                self.maybe_free(b)
            if step.kind == "compute":
                self.maybe_free(t.id)

    def result(self, budgets: tuple[int | None, ...]) -> MemGraph:
        outputs = []
        for b in dict.fromkeys(b for row in self.tg.outputs for b, _ in row):
            r = self.region(b) if self.state.get(b) == "dev" else None
            outputs.append(OutputPlace(b, self.dev(b), r))
        stats = MemStats(
            tuple(self.peak),
            tuple(a.top for a in self.arenas),
            tuple(self.evicted),
            tuple(self.loaded),
            sum(n.kind == "evict" for n in self.nodes),
            sum(n.kind == "load" for n in self.nodes),
        )
        groups = {g: tuple(ns) for g, ns in self.touches.items()}
        return MemGraph(
            self.tg, budgets, self.align, tuple(self.nodes), tuple(outputs), stats, groups
        )


class _NoRoom(Exception):
    def __init__(self, device: int) -> None:
        super().__init__(device)
        self.device = device


def plan_memory(
    tg: TaskGraph,
    budget: int | Sequence[int | None] | None = None,
    alignment: int = ALIGNMENT,
    strategy: str = "lowest-dependency",
) -> MemGraph:
    """The memory graph of a placed task graph under a byte budget per device (one int for
    all devices, a sequence, or None for unlimited: then nothing is evicted or reused).
    `strategy` "first-fit" packs blocks tighter (fewer evictions) at the price of more
    memory edges, hence less freedom at run time."""
    _check_placed(tg)
    if strategy not in STRATEGIES:
        raise CompileError(
            f"unknown allocation strategy {strategy!r}; expected one of {STRATEGIES}"
        )
    if alignment < 1 or alignment & (alignment - 1):
        raise CompileError(f"alignment must be a power of two, got {alignment}")
    budgets = _budgets(tg, budget)
    planner = _Planner(tg, budgets, alignment, strategy == "first-fit")
    _check_budgets(tg, planner.steps, budgets, alignment)
    planner.run()
    mg = planner.result(budgets)
    mg.validate()
    return mg
