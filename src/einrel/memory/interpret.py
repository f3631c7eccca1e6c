"""The memory interpreter: runs a memory graph in a given order on raw byte arenas.

It is the reference for engines: the same node semantics (the block executor for compute and
touch nodes, a host dictionary for offloaded blocks) with every memory rule checked.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import kernels
from ..errors import ExecutionError
from ..kernels.coo_slot import CooSlot
from ..kernels.ops import NUMPY
from ..taskgraph.execute import coo_slot, execute, touch
from ..taskgraph.interpret import assemble_outputs
from ..taskgraph.ir import Task
from .graph import MemGraph, MemNode, Region


class MemorySafetyError(ExecutionError):
    """A memory graph run broke a memory rule: overlap, use after free/evict, budget."""


class ArenaMachine:
    """Raw byte arenas (one uint8 buffer per device) and a host store, executing memory-graph
    nodes one at a time and checking every memory rule. Free memory is filled with 0xFF bytes
    (NaN in every float dtype), so a read that slipped past the checks would still show."""

    def __init__(
        self, mg: MemGraph, inputs: Mapping[int, np.ndarray], variables: Mapping[str, float]
    ) -> None:
        self.mg = mg
        self.inputs = inputs
        self.variables = variables
        self.arenas = [np.full(mg.arena_size(d), 0xFF, np.uint8) for d in range(mg.ndev)]
        self.host: dict[int, np.ndarray] = {}
        # live allocations per device as sorted (offset, end, block); a block may briefly have
        # two (its reload allocated while the old copy is still being evicted)
        self.spans: list[list[tuple[int, int, int]]] = [[] for _ in range(mg.ndev)]
        self.valid: set[tuple[int, int, int]] = set()  # (device, offset, block) holding data
        self.gone: dict[int, str] = {}  # block -> "freed" | "evicted", for messages
        self.touched: dict[int, int] = {}
        self.used = [0] * mg.ndev
        self.peak = [0] * mg.ndev
        self.done: set[int] = set()

    # --- views and checks --------------------------------------------------------------------
    def view(self, block: int, r: Region) -> Any:
        """A block's bytes in its region: a typed array, or a relation block's slot."""
        t = self.mg.taskgraph.tasks[block]
        return self._held(self.arenas[r.device][r.offset : r.offset + t.nbytes], t)

    @staticmethod
    def _held(raw: np.ndarray, t: Task) -> Any:
        if t.support is not None:
            return coo_slot(raw, t)
        return raw.view(kernels.storage_dtype(t.dtype)).reshape(t.shape)

    @staticmethod
    def _bytes(a: Any) -> np.ndarray:
        return a.raw if isinstance(a, CooSlot) else a

    @staticmethod
    def who(n: MemNode) -> str:
        """How messages name node n."""
        return f"memory node n{n.id} ({n.kind} t{n.block})"

    def fail(self, n: MemNode, msg: str) -> None:
        raise MemorySafetyError(f"{self.who(n)}: {msg}")

    def resident(self, n: MemNode, block: int, r: Region | None, valid: bool = True) -> Region:
        """Check that `block` is live in region r (and holds data when `valid`) for node n."""
        return self.check_live(self.who(n), block, r, valid)

    def check_live(self, who: str, block: int, r: Region | None, valid: bool = True) -> Region:
        """Check that `block` is live in region r (and holds data when `valid`); a broken rule
        raises a MemorySafetyError naming `who`."""
        assert r is not None
        spans = self.spans[r.device]
        if (r.offset, r.end, block) not in spans:
            k = bisect.bisect_right(spans, (r.offset, math.inf, math.inf)) - 1
            there = f"t{spans[k][2]} lives at [{spans[k][0]},{spans[k][1]})" if k >= 0 else ""
            how = self.gone.get(block, "not allocated")
            raise MemorySafetyError(
                f"{who}: uses t{block} at {r}, but that block is {how} ({there or 'free'})"
            )
        if valid and (r.device, r.offset, block) not in self.valid:
            raise MemorySafetyError(
                f"{who}: reads t{block} at {r} before anything was written there"
            )
        return r

    # --- node kinds --------------------------------------------------------------------------
    def run(self, n: MemNode, check_deps: bool = True) -> None:
        if n.id in self.done:
            self.fail(n, "runs twice")
        if check_deps:
            missing = [d for d in n.deps if d not in self.done]
            if missing:
                self.fail(n, f"runs before its dependencies {missing}")
        getattr(self, "_" + n.kind)(n)
        self.done.add(n.id)

    def _alloc(self, n: MemNode) -> None:
        r = n.region
        assert r is not None
        cap = self.mg.budgets[r.device]
        limit = len(self.arenas[r.device]) if cap is None else cap
        if r.offset < 0 or r.end > limit:
            self.fail(n, f"region {r} exceeds the budget of {limit} bytes")
        spans = self.spans[r.device]
        k = bisect.bisect_left(spans, (r.offset, r.end, n.block))
        for j in (k - 1, k):
            if 0 <= j < len(spans) and spans[j][0] < r.end and r.offset < spans[j][1]:
                o = spans[j]
                self.fail(n, f"region {r} overlaps live t{o[2]} at [{o[0]},{o[1]})")
        spans.insert(k, (r.offset, r.end, n.block))
        self.used[r.device] += r.size
        self.peak[r.device] = max(self.peak[r.device], self.used[r.device])
        if self.used[r.device] > limit:  # pragma: no cover - implied by no overlap
            self.fail(n, f"{self.used[r.device]} bytes live, over the budget of {limit}")

    def _drop(self, n: MemNode, how: str) -> None:
        r = self.resident(n, n.block, n.region, valid=how == "evicted")
        self.spans[r.device].remove((r.offset, r.end, n.block))
        self.valid.discard((r.device, r.offset, n.block))
        self.gone[n.block] = how
        self.used[r.device] -= r.size
        self.arenas[r.device][r.offset : r.end] = 0xFF

    def _free(self, n: MemNode) -> None:
        self._drop(n, "freed")

    def _evict(self, n: MemNode) -> None:
        r = self.resident(n, n.block, n.region)
        self.host[n.block] = self._bytes(self.view(n.block, r)).copy()
        self._drop(n, "evicted")

    def _load(self, n: MemNode) -> None:
        r = self.resident(n, n.block, n.region, valid=False)
        if n.block not in self.host:
            self.fail(n, f"t{n.block} has no host copy to load")
        self._bytes(self.view(n.block, r))[...] = self.host.pop(n.block)
        self.valid.add((r.device, r.offset, n.block))

    def _compute(self, n: MemNode) -> None:
        args = [self.view(b, self.resident(n, b, r)) for b, r in zip(n.sources, n.reads)]
        args = [a.read() if isinstance(a, CooSlot) else a for a in args]
        out = self.resident(n, n.block, n.region, valid=False)
        if (out.device, out.offset, n.block) in self.valid:
            self.fail(n, f"overwrites t{n.block}, which already holds data")
        t = self.mg.taskgraph.tasks[n.block]
        execute(NUMPY, t, args, self.inputs, self.variables, out=self.view(n.block, out))
        self.valid.add((out.device, out.offset, n.block))

    def _touch(self, n: MemNode) -> None:
        partial = self.view(n.sources[0], self.resident(n, n.sources[0], n.reads[0]))
        first = self.touched.get(n.group, 0) == 0
        r = self.resident(n, n.block, n.region, valid=not first)
        touch(NUMPY, self.mg.taskgraph.tasks[n.block], partial, self.view(n.block, r), first)
        self.touched[n.group] = self.touched.get(n.group, 0) + 1
        self.valid.add((r.device, r.offset, n.block))

    def _done(self, n: MemNode) -> None:
        want = len(self.mg.groups[n.group])
        if self.touched.get(n.group, 0) != want:
            self.fail(n, f"group t{n.group} has {self.touched.get(n.group, 0)}/{want} touches")

    # --- results -----------------------------------------------------------------------------
    def outputs(self) -> list[np.ndarray]:
        """Graph outputs from where the plan says they are (arena or host)."""
        values: dict[int, Any] = {}
        tasks = self.mg.taskgraph.tasks
        for o in self.mg.outputs:
            if o.region is None:
                if o.block not in self.host:
                    raise MemorySafetyError(f"output t{o.block} is not on host at the end")
                values[o.block] = self._held(self.host[o.block], tasks[o.block])
            else:
                r = self.check_live(f"output t{o.block}", o.block, o.region)
                values[o.block] = self.view(o.block, r)
            if isinstance(values[o.block], CooSlot):
                values[o.block] = values[o.block].read().copy()
        return assemble_outputs(self.mg.taskgraph, values)


def interpret_memory(
    mg: MemGraph,
    feeds: Mapping[str, Any],
    order: Sequence[int] | None = None,
    check_deps: bool = True,
    strict: bool = True,
) -> list[np.ndarray]:
    """Run the memory graph in `order` (default: the planning order) on raw byte arenas and
    return the graph outputs; raises MemorySafetyError on any broken memory rule."""
    return run_memory(mg, feeds, order, check_deps, strict).outputs()


def run_memory(
    mg: MemGraph,
    feeds: Mapping[str, Any],
    order: Sequence[int] | None = None,
    check_deps: bool = True,
    strict: bool = True,
) -> ArenaMachine:
    """`interpret_memory`, returning the finished machine (outputs, peak bytes, host store);
    `strict=False` ignores feeds the graph does not read."""
    from ..frontend.reference import bind_feeds

    inputs, variables = bind_feeds(mg.taskgraph.graph, feeds, strict=strict)
    m = ArenaMachine(mg, inputs, variables)
    seq = mg.fixed_order() if order is None else tuple(order)
    if sorted(seq) != list(range(len(mg.nodes))):
        raise MemorySafetyError("the order must list every memory node exactly once")
    for i in seq:
        m.run(mg.nodes[i], check_deps)
    return m
