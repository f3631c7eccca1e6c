"""Run one `Case` at every level of the pipeline and compare each level with the reference.

Levels: the reference interpreter on the graph as written (`er.evaluate`), torch autograd on the
same lines in float64 (`torchref`), and, for a compile `Options`, the fused graph, the block
interpreter on the placed task graph, the memory interpreter on a random linear extension of the
memory plan, and the engine (run twice, so state left by a run cannot leak into the next).
A mismatch raises `Mismatch`, whose message is a standalone program that reproduces it.

Tolerances. Inputs lie in [-1, 1] and cases keep magnitudes moderate (`cases.SQUASH`), so:
* float64 against float64 (another engine, blocks, torch): the results differ only by the order
  of rounding (reassociated sums, fused joins, another library's kernels); 1e-9 relative to the
  output's largest magnitude (plus 1e-9 absolute) is over 1e5 ulps of room per element for
  cancellation and long sums, yet an error like a wrong fold (relative error 0.2 or more) or a
  lost block (a whole tile off) exceeds it by many orders of magnitude.
* float32 against the float32 reference: a float32 result carries its own rounding error, which
  another summation order may double. The allowance is measured, not guessed: 4x the reference's
  own error against float64 (its float32 result against the float64 reference on the same
  inputs) plus 64 float32 ulps of the output's largest magnitude.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .builder import Choices
from .cases import Case

EPS32 = float(np.finfo(np.float32).eps)
TOL64 = 1e-9
ENGINES = ("local", "memory")
CHEAP_PLACERS = ("critical-path", "round-robin", "heft", "eindecomp-greedy", "random")
PRIORITIES = {
    "local": ("critical-path", "fifo", "bfs", "dfs", "given"),
    "memory": ("critical-path", "fifo", "bfs", "dfs", "given", "random", "fixed", "serial"),
}
HUGE = 1 << 40  # a budget no case reaches: the memory engine with nothing to evict


class Mismatch(AssertionError):
    """A level computed something else than the reference; the message reproduces it."""


@dataclass(frozen=True)
class Options:
    """The compile options of one check. `budget` is bytes per device (None: no budget;
    `HUGE`: the memory engine with an unreachable budget), `engine` "local" or "memory"."""

    devices: int = 1
    fuse: bool = True
    partitioner: str = "eindecomp"
    placer: str = "critical-path"
    priority: str = "critical-path"
    engine: str = "local"
    budget: int | None = None
    seed: int = 0
    ray: bool = False
    chunks: tuple[tuple[str, Any], ...] | None = None  # for partitioner "chunks"
    pool_min_bytes: int | None = None  # the local engine's; 0 pools every block of a tiny case
    small_join: float | None = None  # EinDecomp's; 0 splits every contraction of a tiny case

    def kwargs(self) -> dict[str, Any]:
        import einrel as er

        dev = er.ray(self.devices) if self.ray else er.cpu(self.devices)
        kw: dict[str, Any] = {
            "devices": dev,
            "fuse": self.fuse,
            "partitioner": self.partitioner,
            "placer": self.placer,
            "priority": self.priority,
            "seed": self.seed,
        }
        if self.budget is not None:
            kw["memory_limit"] = self.budget
        if self.chunks is not None:
            kw["chunks"] = dict(self.chunks)
        if self.pool_min_bytes is not None:
            kw["engine_options"] = {"pool_min_bytes": self.pool_min_bytes}
        if self.small_join is not None:
            kw["partitioner_options"] = {"small_join": self.small_join}
        return kw

    def source(self) -> str:
        """The `er.compile` call these options make, as Python source."""
        default = Options()
        dev = "ray" if self.ray else "cpu"
        args = [f"devices=er.{dev}({self.devices})"]
        for name in ("fuse", "partitioner", "placer", "priority", "seed"):
            if getattr(self, name) != getattr(default, name):
                args.append(f"{name}={getattr(self, name)!r}")
        if self.budget is not None:
            args.append(f"memory_limit={self.budget}")
        if self.chunks is not None:
            args.append(f"chunks={dict(self.chunks)!r}")
        if self.pool_min_bytes is not None:
            args.append(f"engine_options={{'pool_min_bytes': {self.pool_min_bytes}}}")
        if self.small_join is not None:
            args.append(f"partitioner_options={{'small_join': {self.small_join}}}")
        return f"prog = er.compile(outs, {', '.join(args)})"


def draw_options(ch: Choices, case: Case | None = None, ray: bool = False) -> Options:
    """Random options for `case`; the budget is a code resolved by `resolve_budget`. The
    chunks partitioner gets dask-style chunks for one input the case reads."""
    from ..decompose.partitioners import PARTITIONERS

    parts = [p for p in PARTITIONERS if p != "chunks" or case is not None]
    engine = "memory" if ray else ch.pick(ENGINES)
    partitioner = ch.pick(parts)
    chunks = None
    used = [(n, s) for n, s in case.used_inputs() if s] if case is not None else []
    if partitioner == "chunks":
        if not used:
            partitioner = "eindecomp"
        else:
            name, shape = ch.pick(used)
            spec = {d: ch.pick(["auto", -1, 1, 2]) for d in range(len(shape)) if ch.coin(0.7)}
            chunks = ((name, spec if spec else "auto"),)
    return Options(
        devices=ch.integer(1, 5 if not ray else 2),
        fuse=ch.coin(0.7),
        partitioner=partitioner,
        chunks=chunks,
        placer=ch.pick(CHEAP_PLACERS),
        priority=ch.pick(PRIORITIES["local" if ray else engine]),
        engine=engine if not ray else "local",
        budget=None if engine == "local" or ray else -ch.integer(1, 111),
        seed=ch.integer(0, 3),
        ray=ray,
        pool_min_bytes=0 if engine == "local" and not ray and ch.coin(0.5) else None,
        small_join=0 if partitioner == "eindecomp" and ch.coin(0.7) else None,
    )


def resolve_budget(outs: Sequence[Any], opts: Options) -> Options:
    """Turn a drawn budget code (-1..-111) into bytes. Codes -11..-110 go from the smallest
    budget the unrefined plan fits to its unconstrained peak; -1..-10 lie below that smallest
    budget (down to half of it), where the compiler must refine the decomposition or refuse
    clearly; -111 is `HUGE`."""
    import einrel as er

    from ..memory import min_budget, plan_memory

    if opts.budget is None or opts.budget >= 0:
        return opts
    code = -opts.budget
    if code > 110:
        return replace(opts, budget=HUGE)
    base = er.compile(list(outs), **{**opts.kwargs(), "memory_limit": None, "priority": "fifo"})
    tg = base.plan.tasks
    low = max(min_budget(tg))
    high = max(max(plan_memory(tg, None).stats.peak_bytes), low)
    if code <= 10:
        budget = low * (0.5 + 0.05 * (code - 1))
    else:
        budget = low + (code - 11) / 99 * (high - low)
    return replace(opts, budget=max(1, int(budget)))


# --- comparisons -------------------------------------------------------------------------------


def _check(got: Any, want: np.ndarray, allowed: float, what: str, k: int, program: str) -> None:
    got = np.asarray(got)
    if got.shape != want.shape or got.dtype != want.dtype:
        raise Mismatch(
            f"{what}: output {k} has shape {got.shape} dtype {got.dtype}, the reference "
            f"{want.shape} {want.dtype}\n\n{program}"
        )
    bad_special = ~np.isfinite(want) | ~np.isfinite(got)
    if np.any(bad_special):
        same = np.array_equal(np.isnan(got), np.isnan(want)) and np.array_equal(
            np.where(np.isinf(want), want, 0), np.where(np.isinf(got), got, 0)
        )
        if not same:
            raise Mismatch(
                f"{what}: output {k} has NaN/inf where the reference differs\n\n{program}"
            )
    fin = ~bad_special
    err = float(np.max(np.abs(got[fin].astype(np.float64) - want[fin]), initial=0.0))
    if not err <= allowed:
        raise Mismatch(
            f"{what}: output {k} differs from the reference by {err:.3g} (allowed "
            f"{allowed:.3g}; largest magnitude {np.max(np.abs(want[fin]), initial=0):.3g})"
            f"\n\n{program}"
        )


@dataclass
class Reference:
    """The reference results of a case and the error each output may have at another level."""

    case: Case
    outs: list[Any]
    feeds: dict[str, Any]
    want: list[np.ndarray]
    allowed: list[float]

    def check(self, got: Sequence[Any], what: str, program: str) -> None:
        if len(got) != len(self.want):
            raise Mismatch(f"{what}: {len(got)} outputs, the reference has {len(self.want)}")
        for k, (g, w, a) in enumerate(zip(got, self.want, self.allowed)):
            _check(g, w, a, what, k, program)


def _scale(a: np.ndarray) -> float:
    fin = np.abs(a[np.isfinite(a)])
    return 1.0 + float(fin.max(initial=0.0))


def reference(case: Case) -> Reference:
    """Evaluate the case with the reference interpreter in its dtype, check the float64
    reference against torch autograd, and fix the allowed error of every output."""
    import einrel as er

    feeds = case.feeds()
    outs, _ = case.build(er)
    with np.errstate(all="ignore"):
        want = er.evaluate(outs, feeds)
    feeds64 = {
        k: np.asarray(v, dtype=np.float64) if k not in case.variables else v
        for k, v in feeds.items()
    }
    outs64, _ = case.build(er, "float64")
    with np.errstate(all="ignore"):
        want64 = er.evaluate(outs64, feeds64)
    check_torch(case, feeds64, want64)
    if case.dtype == "float64":
        allowed = [TOL64 * _scale(w) for w in want]
    else:
        allowed = []
        for w, w64 in zip(want, want64):
            fin = np.isfinite(w) & np.isfinite(w64)
            own = float(np.max(np.abs(w[fin].astype(np.float64) - w64[fin]), initial=0.0))
            allowed.append(4 * own + 64 * EPS32 * _scale(w))
    return Reference(case, outs, feeds, want, allowed)


def check_torch(case: Case, feeds64: dict[str, Any], want64: list[np.ndarray]) -> None:
    """The float64 reference against torch autograd on the same lines."""
    import torch

    from .torchref import TorchRef

    env: dict[str, Any] = {"er": TorchRef(feeds64), "DT": "float64"}
    exec(case.body(), env)
    got = [o.detach().numpy() for o in env["outs"]]
    program = "# torch autograd (einrel.testing.torchref) disagrees with er.evaluate\n"
    program += case.program().replace(f'DT = "{case.dtype}"', 'DT = "float64"')
    for k, (g, w) in enumerate(zip(got, want64)):
        _check(np.asarray(g, dtype=np.float64), w, TOL64 * _scale(w), "torch", k, program)
    del torch


def check_compiled(ref: Reference, opts: Options) -> None:
    """Compile the case with `opts` and compare every level with the reference."""
    import einrel as er

    from ..errors import MemoryBudgetError
    from ..frontend.reference import interpret
    from ..memory import interpret_memory, random_linear_extension
    from ..taskgraph.interpret import interpret_tasks

    opts = resolve_budget(ref.outs, opts)
    program = ref.case.program(opts.source())
    try:
        prog = er.compile(ref.outs, **opts.kwargs())
    except MemoryBudgetError as e:
        # Only a budget the finest split cannot meet may be refused, and it must say so.
        if "smallest" not in str(e) and "needs" not in str(e):
            raise Mismatch(f"unclear budget error: {e}\n\n{program}") from None
        return
    try:
        with np.errstate(all="ignore"):
            ref.check(interpret(prog.plan.graph, ref.feeds), "fused graph", program)
            ref.check(interpret_tasks(prog.plan.tasks, ref.feeds), "block interpreter", program)
            mg = prog.plan.memgraph
            if mg is not None:
                order = random_linear_extension(mg, np.random.default_rng(opts.seed))
                got = interpret_memory(mg, ref.feeds, order)
                ref.check(got, "memory interpreter", program)
            first = prog.run(ref.feeds)
            for run in ("engine", "engine (second run)"):
                ref.check(first if run == "engine" else prog.run(ref.feeds), run, program)
                if opts.budget is not None:
                    peak = max(prog.report.peak_bytes.values(), default=0)
                    if peak > opts.budget:
                        raise Mismatch(f"{run}: peak {peak} B over the budget\n\n{program}")
            ref.check(first, "the first run's outputs after the second", program)
            into = [np.empty_like(x) if isinstance(x, np.ndarray) else None for x in first]
            got = prog.run(ref.feeds, out=into)
            ref.check(got, "engine (into given arrays)", program)
            if any(g is not a for g, a in zip(got, into, strict=True) if a is not None):
                raise Mismatch(f"run(out=...) returned other arrays\n\n{program}")
        if not math.isfinite(prog.simulate()):
            raise Mismatch(f"simulate() is not finite\n\n{program}")
    finally:
        prog.close()


# --- random partitions and placements, stage by stage ---------------------------------------

BLOCKS_PROGRAM = """\
import random
from einrel.decompose.partition import Partition
from einrel.frontend.reference import bind_feeds
from einrel.ir.fuse import fuse_elementwise
from einrel.memory import interpret_memory, plan_memory, random_linear_extension
from einrel.memory.order import reorder
from einrel.runtime.local import LocalEngine
from einrel.runtime.mem.engine import MemEngine
from einrel.taskgraph.build import build_tasks
from einrel.taskgraph.interpret import assemble_outputs, interpret_tasks
from einrel.taskgraph.place import place_tasks

print("reference", er.evaluate(outs, feeds))
graph = er.build_graph(outs)
graph = fuse_elementwise(graph) if {fuse} else graph
parts = {parts}
dec = {{n.id: Partition.even(n.einsum.join_shape if n.op == "einsum" else n.shape, parts[n.id])
        for n in graph.nodes}}
tasks = build_tasks(graph, dec)
placed = place_tasks(tasks, {devices}, {ndev})
inputs, variables = bind_feeds(graph, feeds)
print("blocks", interpret_tasks(placed, feeds))
local = LocalEngine({ndev}, priority={priority!r}, pool_min_bytes=0)
for run in ("local engine", "again"):
    print(run, assemble_outputs(placed, local.run(placed, inputs, variables).values))
planned = reorder(placed)
mg = plan_memory(planned, {budgets}, strategy={strategy!r})
print("memory", interpret_memory(mg, feeds, random_linear_extension(mg, random.Random(0))))
eng = MemEngine({ndev}, priority={mpriority!r}, workers_per_device={workers})
print("memory engine", assemble_outputs(planned, eng.run(mg, inputs, variables).values))
"""


def check_blocks(ref: Reference, ch: Choices) -> None:
    """Random parts per label of every node, a random device per task, random per-device
    budgets: the block interpreter, the local engine, the memory interpreter (a random order)
    and the memory engine must each give the reference results."""
    import random

    from ..decompose.partition import Partition
    from ..frontend.reference import bind_feeds
    from ..frontend.tensor import build_graph
    from ..ir.fuse import fuse_elementwise
    from ..memory import (
        STRATEGIES,
        interpret_memory,
        min_budget,
        plan_memory,
        random_linear_extension,
    )
    from ..memory.order import reorder
    from ..runtime.core import task_priority
    from ..runtime.local import LocalEngine
    from ..runtime.mem.engine import MemEngine
    from ..taskgraph.build import build_tasks
    from ..taskgraph.interpret import assemble_outputs, interpret_tasks
    from ..taskgraph.place import place_tasks

    fuse = ch.coin(0.5)
    graph = build_graph(ref.outs)
    graph = fuse_elementwise(graph) if fuse else graph
    parts: dict[int, list[int]] = {}
    for n in graph.nodes:
        shape = n.einsum.join_shape if n.op == "einsum" else n.shape
        parts[n.id] = [ch.integer(1, min(3, k)) for k in shape]
    dec = {
        n.id: Partition.even(s, parts[n.id])
        for n, s in ((n, n.einsum.join_shape if n.op == "einsum" else n.shape) for n in graph.nodes)
    }
    tasks = build_tasks(graph, dec)
    ndev = ch.integer(1, 4)
    devices = [ch.integer(0, ndev - 1) for _ in tasks.tasks]
    placed = place_tasks(tasks, devices, ndev)
    planned = reorder(placed)
    low = min_budget(planned)
    high = plan_memory(planned, None).stats.peak_bytes
    budgets: list[int | None] = []
    for lo, hi in zip(low, high):
        k = ch.integer(0, 4)
        budgets.append(None if k == 4 else lo + (max(lo, hi) - lo) * k // 3)
    strategy = ch.pick(STRATEGIES)
    priority = task_priority(ch.pick(PRIORITIES["local"]))
    mpriority = ch.pick(PRIORITIES["memory"])
    workers = ch.integer(1, 2)
    run = BLOCKS_PROGRAM.format(
        fuse=fuse,
        parts=parts,
        devices=devices,
        ndev=ndev,
        priority=priority,
        budgets=budgets,
        strategy=strategy,
        mpriority=mpriority,
        workers=workers,
    )
    program = ref.case.program(run=run)
    inputs, variables = bind_feeds(graph, ref.feeds)
    with np.errstate(all="ignore"):
        ref.check(interpret_tasks(placed, ref.feeds), "block interpreter", program)
        local = LocalEngine(ndev, priority=priority, pool_min_bytes=0)
        first = local.run(placed, inputs, variables).values
        ref.check(assemble_outputs(placed, first), "local engine", program)
        again = local.run(placed, inputs, variables).values  # on the first run's dead buffers
        ref.check(assemble_outputs(placed, again), "local engine (second run)", program)
        ref.check(assemble_outputs(placed, first), "local engine (first run, kept)", program)
        mg = plan_memory(planned, budgets, strategy=strategy)
        order = random_linear_extension(mg, random.Random(ch.integer(0, 99)))
        ref.check(interpret_memory(mg, ref.feeds, order), "memory interpreter", program)
        eng = MemEngine(ndev, priority=mpriority, workers_per_device=workers)
        res = eng.run(mg, inputs, variables)
        ref.check(assemble_outputs(planned, res.values), "memory engine", program)
        for d, b in enumerate(budgets):
            if b is not None and res.peak_bytes.get(d, 0) > b:
                raise Mismatch(f"memory engine: device {d} peak over its budget\n\n{program}")
