"""`er.compile`: the whole pipeline, from lazy tensors to a runnable `Program`.

Graph -> decomposition (a partition per node) -> unplaced task graph -> placement (a device per
task) -> placed task graph with moves -> memory plan (when a budget is set) -> engine.
Each stage is a pure function; the Program only holds their results and the engine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .decompose.partition import Partition
from .decompose.partitioners import Partitioner
from .decompose.relations import decompose, dense_view, has_relations
from .devices import Devices, cpu, parse_bytes
from .errors import CompileError, EinrelError
from .frontend.reference import bind_feeds, bind_out, check_output, shape_results
from .frontend.tensor import Tensor, build_graph
from .ir.fuse import fuse_elementwise
from .ir.graph import Graph
from .place.placers import Placer
from .progress import StepProgress
from .relabel import plan_relabeling
from .relations import check_capacities, tuple_counts
from .runtime.engines import start_engine
from .runtime.local import LocalEngine
from .taskgraph.build import build_tasks
from .taskgraph.interpret import assemble_outputs
from .taskgraph.ir import TaskGraph
from .taskgraph.place import place_tasks


@dataclass(frozen=True)
class Plan:
    """What the compiler decided: partitions per node, a device per task, the modelled cost."""

    graph: Graph
    decomposition: dict[int, Partition]
    tasks: TaskGraph
    cost: float
    partitioner: str
    placer: str
    memgraph: Any = None
    compile_time_s: float = 0.0
    fused: bool = True
    relabeling: Any = None  # a relabel.Relabeling when keys are dealt anew per feed

    @property
    def partitions(self) -> dict[str, dict[str, int]]:
        """Node name -> parts per einsum label (or per dimension for other nodes)."""
        out: dict[str, dict[str, int]] = {}
        for n in self.graph.nodes:
            p = self.decomposition[n.id]
            if n.op == "einsum":
                keys = list(n.einsum.labels)
            elif n.op == "sparse":
                keys = list(n.attrs.einsum.labels)
            elif n.op == "relation":
                keys = [*n.attrs.keys, *n.attrs.values]
            else:
                keys = [str(d) for d in range(len(p.dims))]
            out[n.name] = dict(zip(keys, p.grid))
        return out

    def parts_text(self, name: str) -> str:
        """A node's partition for people: `i×2 j×1` (label × parts; `d0×2` for dimensions);
        a relation's keys read `u:key` and an einsum over one ends `over A`."""
        n = next(m for m in self.graph.nodes if m.name == name)
        keys = set(n.attrs.keys) if n.op == "relation" else set()
        if n.op == "sparse":
            keys = set(n.attrs.keys) if n.attrs.out is not None else set()
        grid = self.partitions[name]
        text = " ".join(
            f"{k}:key×{v}" if k in keys else f"{k if not k.isdigit() else 'd' + k}×{v}"
            for k, v in grid.items()
        )
        return text + (f" over {n.attrs.relation}" if n.op == "sparse" else "")

    def to_dot(self, level: str = "tasks") -> str:
        """Graphviz DOT text of the plan: `level="tasks"` draws every block task in a cluster
        per device; `level="nodes"` draws the graph with each node's partition."""
        if level == "tasks":
            return self.tasks.to_dot()
        if level != "nodes":
            raise EinrelError(f'Plan.to_dot: level must be "tasks" or "nodes", got {level!r}')
        from .ir.dot import digraph, quote

        lines = []
        for n in self.graph.nodes:
            what = f"{n.name}\n{n.einsum.spec}" if n.op == "einsum" else n.name
            parts = self.parts_text(n.name)
            lines.append(f"n{n.id} [label={quote(what + chr(10) + parts)}];")
            lines += [f"n{i} -> n{n.id};" for i in dict.fromkeys(n.inputs)]
        return digraph("plan", lines)

    def render(self, path: str | Path, level: str = "tasks") -> Path:
        """`to_dot(level)` written to `path`: DOT text for `.dot`, a picture for `.png`,
        `.svg` or `.pdf` (drawn by graphviz, which must be installed)."""
        from .ir.dot import render

        return render(self.to_dot(level), path)

    @property
    def devices(self) -> dict[int, int]:
        """The device of every task, by task id (moves included)."""
        return {t.id: t.device for t in self.tasks.tasks}

    def __repr__(self) -> str:
        return (
            f"Plan({len(self.graph)} nodes -> {len(self.tasks.tasks)} tasks on {self.tasks.ndev} "
            f"device(s), partitioner={self.partitioner}, placer={self.placer}, "
            f"memory plan={'yes' if self.memgraph is not None else 'no'})"
        )

    def __str__(self) -> str:
        s = self.tasks.stats()
        lines = [
            f"plan: {len(self.graph)} nodes -> {s['tasks']} tasks on {self.tasks.ndev} "
            f"device(s); partitioner={self.partitioner} placer={self.placer}; modelled "
            f"cost {self.cost:.4g} elements moved; {s['bytes_moved']} bytes moved"
        ]
        for n in self.graph.nodes:
            if n.op == "input":
                continue
            lines.append(f"  {n.name:>6} {n.op:<8} {self.parts_text(n.name)}")
        return "\n".join(lines)


@dataclass
class Report:
    """The last run: wall time, peak bytes per device, bytes moved between devices and offloaded."""

    wall_time_s: float = 0.0
    peak_bytes: dict[int, int] = field(default_factory=dict)
    bytes_moved: int = 0
    bytes_offloaded: int = 0
    busy_s: dict[int, float] = field(default_factory=dict)
    events: list[Any] = field(default_factory=list, repr=False)

    def __repr__(self) -> str:
        return f"Report({self})" if self.wall_time_s else "Report(no run yet)"

    def __str__(self) -> str:
        peak = ", ".join(f"{d}: {b / 2**20:.1f} MiB" for d, b in sorted(self.peak_bytes.items()))
        return (
            f"run: {self.wall_time_s * 1e3:.1f} ms; peak {{{peak}}}; moved "
            f"{self.bytes_moved / 2**20:.1f} MiB; offloaded {self.bytes_offloaded / 2**20:.1f} MiB"
        )


class Program:
    """A compiled computation: `run(feeds)` returns numpy arrays, one per output."""

    def __init__(
        self,
        outputs: list[Tensor],
        devices: Devices,
        plan: Plan,
        engine: Any,
        cost_model: Any,
        priority: str,
        single: bool = False,
        engine_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.outputs = outputs
        self.single = single  # compiled for one Tensor: run returns one array
        self.device_set = devices
        self.plan = plan
        self.engine = engine
        self.cost_model = cost_model
        self.priority = priority
        self.engine_options = dict(engine_options or {})
        self.report = Report()
        # An engine owns its arenas, actors and buffers: runs of one program take turns.
        self._lock = threading.Lock()

    def run(
        self,
        feeds: Mapping[str, Any],
        trace: str | None = None,
        *,
        strict: bool = True,
        cast: bool = False,
        output: str = "numpy",
        out: Sequence[np.ndarray | None] | None = None,
    ) -> Any:
        """Run on `feeds`; `trace="out.json"` also writes a Chrome trace and `out.png`.

        Returns one array when the program was compiled for a single Tensor, else a list in
        the order of the outputs. `strict=False` ignores feeds the graph does not use,
        `cast=True` converts feeds of another numeric dtype, `output="torch"` returns CPU
        tensors (sharing memory with the arrays). `out` gives arrays (or None) to write dense
        outputs into, one per output, as numpy's `out=`: a training loop hands back the
        parameters of two steps ago, so the new ones reuse their memory (the local engine's
        kernels write there directly). Safe to call from several threads: the runs of one
        program take turns (each returns its own arrays; `report` describes the last one to
        finish)."""
        check_output(output)
        inputs, variables = bind_feeds(self.plan.graph, feeds, strict, cast)
        given = bind_out(self.plan.graph, out, inputs)
        relabeling = self.plan.relabeling
        if relabeling is not None:
            inputs, perms = relabeling.apply(self.plan.graph, inputs)
            given = {}  # outputs come back permuted: copied into `out` below
        if self.plan.memgraph is not None:
            check_capacities(self.plan.tasks, inputs)
        with self._lock:
            values = self._run(inputs, variables, trace, given)
        if relabeling is not None:
            values = relabeling.restore(self.plan.graph, values, perms)
        for k, arr in enumerate(out or ()):
            if arr is not None and values[k] is not arr:
                np.copyto(arr, values[k])
                values[k] = arr
        return shape_results(values, not self.single, output)

    __call__ = run

    def __repr__(self) -> str:
        names = [n.name for n in (self.plan.graph[i] for i in self.plan.graph.outputs)]
        ran = self.report.wall_time_s
        last = f", last run {ran * 1e3:.1f} ms" if ran else ""
        return (
            f"Program(outputs={names}, devices={self.device_set}, {len(self.plan.graph)} nodes, "
            f"{len(self.plan.tasks.tasks)} tasks, engine={type(self.engine).__name__}{last})"
        )

    def _run(
        self,
        inputs: dict[int, np.ndarray],
        variables: dict[str, float],
        trace: str | None,
        given: Mapping[int, np.ndarray],
    ) -> list[np.ndarray]:
        mg = self.plan.memgraph
        work = self.plan.tasks if mg is None else mg
        into = {"out": given} if given and isinstance(self.engine, LocalEngine) else {}
        res = self.engine.run(work, inputs, variables, trace=trace is not None, **into)
        self.report = Report(
            res.wall_time_s,
            dict(res.peak_bytes),
            res.bytes_moved,
            res.bytes_offloaded,
            dict(res.busy_s),
            list(res.events),
        )
        if trace is not None:
            png = str(trace).removesuffix(".json") + ".png"
            if mg is not None:
                from .runtime.mem.trace import write_mem_png, write_mem_trace

                write_mem_trace(res.events, mg, trace)
                write_mem_png(res.events, mg, png)
            else:
                from .runtime.trace import write_chrome_trace, write_gantt

                write_chrome_trace(res.events, trace, self.plan.tasks)
                write_gantt(res.events, png, self.plan.tasks)
        return assemble_outputs(self.plan.tasks, res.values, res.assembled, inputs)

    def simulate(self) -> float:
        """Simulated makespan in seconds under the program's cost model: of the memory plan
        (evictions, loads and all) when there is one, else of the placed task graph."""
        if self.plan.memgraph is not None:
            from .runtime.mem.sim import simulate_memory

            return simulate_memory(
                self.plan.memgraph, self.priority, cost_model=self.cost_model
            ).makespan_s
        from .runtime.core import task_priority
        from .runtime.sim import SimEngine

        return (
            SimEngine(self.plan.tasks.ndev, self.cost_model, priority=task_priority(self.priority))
            .simulate(self.plan.tasks, trace=False)
            .makespan_s
        )

    def explain(self, console: Any = None) -> None:
        """Rich tables: per node its partition and modelled cost; per device its load."""
        from .explain import explain

        explain(self, console)

    def save(self, path: str | Path) -> Path:
        """Write the plan to `path`, so `er.load(path)` runs it without compiling again.

        The file holds the graph, partitions, placement, memory plan, cost model, devices and
        engine options (not the engine: a loaded program starts its own)."""
        from .saving import write_program_file
        from .version import __version__

        graph = self.plan.graph
        header = {
            "einrel": __version__,
            "inputs": {n.name: [list(n.shape), n.dtype] for n in graph.inputs},
            "outputs": [graph[i].name for i in graph.outputs],
            "devices": repr(self.device_set),
        }
        payload = {
            "plan": self.plan,
            "devices": self.device_set,
            "priority": self.priority,
            "cost_model": self.cost_model,
            "engine_options": self.engine_options,
            "single": self.single,
        }
        return write_program_file(path, header, payload)

    def close(self) -> None:
        """Stop the engine (worker threads, Ray actors, buffer pool); it cannot run after."""
        close = getattr(self.engine, "close", None)
        if close is not None:
            with self._lock:
                close()


def compile(
    outputs: Tensor | Sequence[Tensor],
    devices: Devices | None = None,
    partitioner: str | Partitioner = "eindecomp",
    placer: str | Placer = "critical-path",
    memory_limit: int | str | None = None,
    priority: str = "critical-path",
    chunks: Mapping[str, Any] | None = None,
    cost_model: Any = None,
    seed: int = 0,
    fuse: bool = True,
    transfer_bandwidth: float | str | None = None,
    jitter: float = 0.0,
    engine_options: Mapping[str, Any] | None = None,
    fit_budget: bool = True,
    max_tasks: int = 20_000,
    progress: bool = True,
    partitioner_options: Mapping[str, Any] | None = None,
    placer_options: Mapping[str, Any] | None = None,
    structure: Mapping[str, Any] | None = None,
    relabel: bool | Sequence[str] = False,
    **unknown: Any,
) -> Program:
    """Decompose, place and plan `outputs` for `devices` (default `er.cpu(1)`).

    `partitioner` and `placer` are names ("eindecomp", "search", ...) or objects with their
    options set (`er.partitioners.EinDecomp(sweeps=1)`, `er.placers.Search(budget_s=2)`);
    `partitioner_options` / `placer_options` set options of a named one. `chunks` is shorthand
    for the chunks partitioner. `cost_model` is the built-in model (default), a `CostModel`, a
    path, or "calibrated". `fuse` folds elementwise einsums into their only consumer first (see
    `einrel.ir.fuse`).

    With a memory budget (`memory_limit`, or `er.cpu(n, memory=...)`) the decomposition is
    first refined until every task's working set fits (`fit_budget=False` skips that), the
    placed task graph is memory-planned (TURNIP) and the program runs on the memory engine,
    whose host transfers can be throttled to `transfer_bandwidth` (e.g. "4GB/s") with random
    `jitter` (0.3 = ±30%); `engine_options` go to the engine (workers_per_device, seed, ...).
    GPU devices always run on the memory engine (budget: their free memory when none is set).
    Refining for a budget stops at `max_tasks` tasks with a MemoryBudgetError that names the
    smallest budget reachable within them. With `progress`, a compile that runs for more than
    two seconds shows what it is doing on stderr.

    Relations are cut into blocks by key ranges. `structure` maps a relation's name to a feed
    like the ones it will get (an `er.coo`, scipy or torch sparse matrix): the cost model and
    a memory plan then count each block's tuples instead of assuming `nnz` spreads evenly
    over the keys. Under a memory budget a block holds what its plan made room for; a feed
    with more tuples in some block is a FeedError before the run. `relabel` (True, or names
    of relations) deals their keys anew per feed so that every key range holds about as many
    tuples (see `einrel.relabel`); results come back in the original labels.
    """
    with StepProgress("er.compile", enabled=progress) as bar:
        from .decompose import get_partitioner, plan_cost
        from .place.placers import get_placer, place
        from .taskgraph.cost import CostModel

        t0 = time.perf_counter()
        _check_unknown(unknown)
        if chunks is not None:
            partitioner_options = {**(partitioner_options or {}), "chunks": chunks}
            partitioner = "chunks"
        part = get_partitioner(partitioner, **(partitioner_options or {}))
        where = get_placer(placer, **(placer_options or {}))
        outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
        if not outs:
            raise CompileError("compile needs at least one output tensor")
        devs = devices if devices is not None else cpu(1)
        if not isinstance(devs, Devices):
            raise CompileError(f"devices must be er.cpu(n), er.gpu(...) or er.ray(n), got {devs!r}")
        if memory_limit is not None:
            if devs.kind == "ray":
                raise CompileError(
                    "memory_limit asks for a per-device budget with offload to host memory, "
                    "which the Ray engine does not do (its actors hold every block they "
                    "compute); er.ray(n, memory=...) reserves memory per actor in Ray's "
                    "scheduler instead; for offload under a budget use er.cpu(n, memory=...) "
                    "or er.gpu(...)"
                )
            devs = devs.with_memory(parse_bytes(memory_limit, "memory_limit"))
        graph = build_graph(outs)
        if fuse:
            graph = fuse_elementwise(graph)
        model = CostModel.resolve(cost_model)
        bar.step(f"decomposing {len(graph)} nodes ({part.name})")
        decomposition = decompose(part, graph, devs.n)
        # On Ray, `memory` is a reservation per actor (Ray's `memory` resource), not a budget
        # the plan must keep to: no refinement and no memory plan, so nothing is dropped.
        budget = devs.memory if devs.kind != "ray" else None
        if budget is None and devs.kind == "gpu":
            from .runtime.gpu import default_budget

            budget = default_budget(devs)
        if devs.kind == "gpu" and has_relations(graph):
            raise CompileError(
                f"{devs}: relations run on er.cpu(n) (with or without a memory budget) and "
                "er.ray(n); GPU devices do not hold relation blocks yet"
            )
        relabeling = plan_relabeling(graph, decomposition, relabel)
        counts = tuple_counts(graph, structure, relabeling)
        if budget is not None and fit_budget:
            from .memory.fit import fit_to_budget

            decomposition = fit_to_budget(
                graph,
                decomposition,
                devs.n,
                budget,
                max_tasks=max_tasks,
                on_round=bar.step,
                counts=counts,
            )
        unplaced = build_tasks(graph, decomposition, counts)
        bar.step(f"placing {len(unplaced.tasks)} tasks ({where.name})")
        assignment = place(where, unplaced, devs.n, model, seed=seed)
        placed = place_tasks(unplaced, assignment, devs.n)
        memgraph = None
        if budget is not None or devs.kind == "gpu":
            from .memory import plan_memory
            from .memory.order import reorder

            placed = reorder(placed, "depth-first")  # TURNIP plans in a depth-first order
            bar.step(f"planning memory for {len(placed.tasks)} tasks")
            memgraph = plan_memory(placed, budget)
        plan = Plan(
            graph,
            dict(decomposition),
            placed,
            plan_cost(dense_view(graph), decomposition),
            part.name,
            where.name,
            memgraph,
            time.perf_counter() - t0,
            fuse,
            relabeling,
        )
        eng_opts = dict(engine_options or {})
        if transfer_bandwidth is not None:
            eng_opts["transfer_bandwidth"] = transfer_bandwidth
        if jitter:
            eng_opts["jitter"] = jitter
        engine = start_engine(devs, priority, model, memgraph is not None, eng_opts)
        return Program(
            outs,
            devs,
            plan,
            engine,
            model,
            priority,
            single=isinstance(outputs, Tensor),
            engine_options=eng_opts,
        )


def _check_unknown(unknown: Mapping[str, Any]) -> None:
    """A keyword compile does not have is a misspelling: say so, with the nearest name."""
    import difflib
    import inspect

    if not unknown:
        return
    mine = [p for p in inspect.signature(compile).parameters if p not in ("outputs", "unknown")]
    key = sorted(unknown)[0]
    near = difflib.get_close_matches(key, mine, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise CompileError(
        f"er.compile() got an unknown option {key!r}{hint}; its options are {', '.join(mine)} "
        "(options of a partitioner or placer go in partitioner_options / placer_options)"
    )
