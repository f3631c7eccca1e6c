"""EinDecomp's location assignment (the EinDecomp paper) for einrel task graphs.

It takes an unplaced `TaskGraph` and returns a device per task, for `place_tasks`.

`eindecomp_greedy` walks graph nodes in order. For one node it places each output block in
turn: the block's partial join blocks are spread over an aligned power-of-two device range
(cyclically) and summed at one site in that range. Every (spread, site) pair is scored by
its per-device cost — join flops on that device, plus F bytes for every input block that is not
already there (leaves are free), plus F bytes of the output block for each device holding
partials other than the site, charged to both ends — and the pair with the smallest maximum of
load + cost wins. Loads restart at zero for every graph node, so the locator balances each
node's blocks and keeps data where it already is; it sees neither time nor the critical path.
F is `flops_per_byte_moved`.

Assemble tasks that only cut and regroup one producer's blocks (a repartition) go where their
first reader goes; leaves (input, fill) get block index mod ndev and are free anywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import CompileError
from ..taskgraph.ir import Task, TaskGraph

LEAVES = ("input", "fill")


def _check(tg: TaskGraph, ndev: int) -> None:
    if isinstance(ndev, bool) or not isinstance(ndev, int) or ndev < 1:
        raise CompileError(f"need a positive int number of devices, got {ndev!r}")
    if tg.placed:
        raise CompileError("the task graph is already placed; locate an unplaced one")


def _leaf_devices(tg: TaskGraph, ndev: int) -> list[int]:
    out = [-1] * len(tg)
    count: dict[int, int] = {}
    for t in tg.tasks:
        if t.kind in LEAVES:
            b = count.get(t.node, 0)
            count[t.node] = b + 1
            out[t.id] = b % ndev
    return out


def _is_regroup(tg: TaskGraph, t: Task) -> bool:
    """An assemble that cuts or regroups blocks of its own node (built for a reader)."""
    return t.kind == "assemble" and all(tg.tasks[i].node == t.node for i in t.inputs)


@dataclass(frozen=True)
class Unit:
    """One output block to place: its partial tasks and the task that sums them (or None)."""

    partials: tuple[int, ...]
    site: int | None


def _units(tg: TaskGraph) -> list[list[Unit]]:
    """Per graph node (in order), the output blocks it produces, as units."""
    per: dict[int, list[Unit]] = {}
    summed: set[int] = set()
    for t in tg.tasks:
        if t.kind == "agg":
            summed.update(t.inputs)
    for t in tg.tasks:
        if t.kind in LEAVES or _is_regroup(tg, t) or t.id in summed:
            continue
        unit = Unit(t.inputs, t.id) if t.kind == "agg" else Unit((t.id,), None)
        per.setdefault(t.node, []).append(unit)
    return [per[g] for g in sorted(per)]


def plans(nparts: int, ndev: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(device of each partial, candidate sites): partials spread cyclically over aligned
    power-of-two ranges, e.g. 4 partials on 4 devices: 0000 1111 2222 3333 0101 2323 0123."""
    out = []
    seen: set[tuple[int, ...]] = set()
    r = 1
    while r <= min(nparts, ndev):
        for base in range(0, ndev - r + 1, r):
            devs = tuple(base + i % r for i in range(nparts))
            if devs not in seen:
                seen.add(devs)
                out.append((devs, tuple(range(base, base + r))))
        r *= 2
    return out


class _Locator:
    def __init__(self, tg: TaskGraph, ndev: int, f: float) -> None:
        self.tg = tg
        self.ndev = ndev
        self.f = f
        self.device = _leaf_devices(tg, ndev)
        self.have: list[set[int]] = [set() for _ in tg.tasks]

    def missing(self, x: int) -> np.ndarray:
        """Bytes of task x's value that each device would have to receive."""
        t = self.tg.tasks[x]
        out = np.zeros(self.ndev)
        if t.kind in LEAVES:
            return out
        if self.device[x] >= 0:
            out[:] = t.nbytes
            out[list(self.have[x])] = 0.0
            return out
        # an unplaced regroup: its pieces travel from where their blocks are
        for p in t.op:
            y = t.inputs[p.src]
            src = self.tg.tasks[y]
            if src.kind in LEAVES:
                continue
            piece = np.full(self.ndev, math.prod(p.size) * (t.nbytes / max(1, math.prod(t.shape))))
            piece[list(self.have[y])] = 0.0
            out += piece
        return out

    def need(self, t: int) -> np.ndarray:
        """Cost of running task t on each device: its flops plus F · bytes it must receive."""
        task = self.tg.tasks[t]
        cost = np.full(self.ndev, task.flops)
        for x in dict.fromkeys(task.inputs):
            cost += self.f * self.missing(x)
        return cost

    def put(self, t: int, d: int) -> None:
        self.device[t] = d
        self.have[t].add(d)
        for x in self.tg.tasks[t].inputs:
            if self.tg.tasks[x].kind in LEAVES:
                continue
            if self.device[x] < 0:  # a regroup goes where its first reader goes
                self.put(x, d)
            self.have[x].add(d)

    def place_unit(self, unit: Unit, load: np.ndarray) -> np.ndarray:
        needs = np.array([self.need(p) for p in unit.partials])
        if unit.site is None:
            cost = np.diag(needs[0])
            score = (load[None, :] + cost).max(axis=1)
            d = int(np.lexsort((cost.sum(axis=1), score))[0])
            self.put(unit.partials[0], d)
            return cost[d]
        out_bytes = self.tg.tasks[unit.site].nbytes
        best: tuple[float, float, int] | None = None
        best_plan: tuple[tuple[int, ...], int, np.ndarray] | None = None
        for k, (devs, sites) in enumerate(plans(len(unit.partials), self.ndev)):
            base = np.zeros(self.ndev)
            for i, d in enumerate(devs):
                base[d] += needs[i, d]
            holders = set(devs)
            for s in sites:
                cost = base.copy()
                for d in holders - {s}:
                    cost[d] += self.f * out_bytes
                    cost[s] += self.f * out_bytes
                key = (float((load + cost).max()), float(cost.sum()), k)
                if best is None or key < best:
                    best, best_plan = key, (devs, s, cost)
        assert best_plan is not None
        devs, s, cost = best_plan
        for p, d in zip(unit.partials, devs):
            self.put(p, d)
        self.put(unit.site, s)
        return cost

    def run(self) -> list[int]:
        for units in _units(self.tg):
            load = np.zeros(self.ndev)
            for unit in units:
                load += self.place_unit(unit, load)
        for t in self.tg.tasks:  # regroups nobody reads (graph outputs): next to their input
            if self.device[t.id] < 0:
                src = max(t.inputs, key=lambda i: self.tg.tasks[i].nbytes, default=None)
                self.device[t.id] = max(self.device[src], 0) if src is not None else 0
        return self.device


def eindecomp_greedy(
    tg: TaskGraph, ndev: int, *, flops_per_byte_moved: float = 1000.0, seed: int = 0
) -> list[int]:
    """Per graph node, per output block: min-max load with a communication penalty
    F = flops_per_byte_moved. `seed` is unused (it is deterministic)."""
    _check(tg, ndev)
    if not flops_per_byte_moved >= 0:
        raise CompileError(f"flops_per_byte_moved must be >= 0, got {flops_per_byte_moved!r}")
    return _Locator(tg, ndev, float(flops_per_byte_moved)).run()
