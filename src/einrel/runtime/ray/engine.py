"""The Ray engine (`er.ray(n, address=None, memory=None)`): one long-lived actor per device.

Actors are created when the program is compiled, each pinned to a node (node affinity, hard), so
the placement the compiler chose is final. They are shared: device k on a node is one named actor
that every program of this process using that node's k-th device attaches to (each program ships
its own plans to it, and runs of different programs may overlap), so two programs need no more CPUs
than the larger of them. The last program to close kills the actor. Each actor runs the shared
scheduling core on its own part of the plan (`ray_plan.split_plan`) with `run_task` as the kernel,
and its BLAS pool is limited to its share of the node's cores. Blocks move actor to actor through
Ray's object store: the producer `ray.put`s a block other devices read and sends the reference to
each destination actor, whose `move` task fetches it (see `ray_worker`). The driver ships each
compiled plan once (actors cache parts by plan key), and a run sends only the feeds (one `ray.put`
per graph input) and gathers the output blocks.

Faults. The driver waits on the actors with `ray.wait` and a short poll, asking each for its
running tasks meanwhile. An actor that dies makes `run` raise `ExecutionError` naming the device
and the task it was running (from its last status); the surviving actors are told to abort, and
the next `run` starts a replacement on the same node. A kernel that raises is reported the same
way. A cluster that cannot be reached, or that lacks the CPUs or memory the devices ask for, is a
`CompileError` when the engine is built (that is, from `er.compile`).

Ray is imported only by this package (`runtime.ray`); `import einrel` never loads it.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ...devices import Devices
from ...errors import CompileError, ExecutionError
from ...kernels.coo import Coo
from ...taskgraph.cost import CostModel
from ...taskgraph.ir import TaskGraph
from ..core import Event, Priority, TaskSchedule, make_task_schedule
from ..engine import RunResult
from .plan import DevicePart, split_plan

try:
    import ray
    from ray.exceptions import RayActorError
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
except ImportError as _exc:
    raise CompileError(
        "er.ray(...) needs Ray, which is not installed: install the extra with "
        "`pip install 'einrel[ray]'`"
    ) from None

from ...taskgraph.interpret import Runner
from .cluster import OWNERS, assign_nodes, connect

MAX_CACHED_PLANS = 4
# A shipped plan: (task graph, priority, cost model, key on the actors, schedule, device parts)
_Cached = tuple[TaskGraph, "Priority", CostModel, str, "TaskSchedule", list["DevicePart"]]


class RayEngine:
    """Runs placed task graphs on `devices.n` pinned Ray actors.

    `devices` is `er.ray(n, address, memory)` (or a plain count). `address=None` joins the Ray
    runtime already initialised in this process, else the cluster in `RAY_ADDRESS`, else starts
    a local one; "auto" or "host:port" joins a running cluster. `memory` (bytes per device) is
    reserved on each actor's node as Ray's `memory` resource. Each actor asks for
    `cpus_per_device` logical CPUs (0 pins by node alone) and limits its BLAS threads to
    `blas_threads` (default: the node's cores divided by the einrel actors on that node).
    `nodes` gives the node id of each device explicitly. `runner` replaces `run_task` as the
    kernel (it must pickle). `poll_s` is how often the driver asks the actors what they run,
    `abort_timeout_s` how long it waits for them after a failure, and `run_timeout_s` (None: no
    limit) bounds a whole run.
    """

    def __init__(
        self,
        devices: Devices | int,
        priority: Priority = "critical-path",
        cost_model: CostModel | None = None,
        *,
        cpus_per_device: float = 1.0,
        blas_threads: int | None = None,
        nodes: Sequence[str] | None = None,
        runner: Runner | None = None,
        startup_timeout_s: float = 60.0,
        poll_s: float = 0.1,
        abort_timeout_s: float = 10.0,
        run_timeout_s: float | None = None,
    ) -> None:
        devs = devices if isinstance(devices, Devices) else Devices("ray", int(devices))
        if cpus_per_device < 0:
            raise CompileError(f"cpus_per_device must be >= 0, got {cpus_per_device}")
        self.devices = devs
        self.ndev = devs.n
        self.priority = priority
        self.cost_model = cost_model if cost_model is not None else CostModel.default()
        self.cpus_per_device = float(cpus_per_device)
        self.runner = runner
        self.startup_timeout_s = startup_timeout_s
        self.poll_s = poll_s
        self.abort_timeout_s = abort_timeout_s
        self.run_timeout_s = run_timeout_s
        self._run_ids = itertools.count()
        self.engine_id = uuid.uuid4().hex
        self._plans: OrderedDict[int, _Cached] = OrderedDict()
        self._loaded: list[set[str]] = [set() for _ in range(self.ndev)]
        self._dead: set[int] = set()
        self.started_ray = connect(devs.address, self.ndev, self.cpus_per_device)
        self.node_ids = (
            list(nodes)
            if nodes is not None
            else assign_nodes(self.ndev, self.cpus_per_device, self.devices.memory)
        )
        if len(self.node_ids) != self.ndev:
            raise CompileError(f"nodes gives {len(self.node_ids)} node ids for {self.ndev} devices")
        per_node = {n: self.node_ids.count(n) for n in set(self.node_ids)}
        self._blas = blas_threads
        self._per_node = per_node
        self.names = self._actor_names()
        self.actors: list[Any] = [None] * self.ndev
        self.info: list[dict[str, Any]] = [{} for _ in range(self.ndev)]
        try:
            self._acquire(range(self.ndev), CompileError)
        except BaseException:
            self.close()
            raise

    # --- actors ----------------------------------------------------------------------------------
    def _actor_names(self) -> list[str]:
        """The shared actor each device uses: the k-th einrel device of its node, for actors
        made with these options (a custom runner gets actors of its own)."""
        opts = (self.cpus_per_device, self.devices.memory, self._blas)
        tag = uuid.uuid4().hex if self.runner is not None else repr(opts)
        digest = hashlib.sha1(tag.encode()).hexdigest()[:10]
        seen: dict[str, int] = {}
        names = []
        for node in self.node_ids:
            k = seen.get(node, 0)
            seen[node] = k + 1
            names.append(f"einrel-device-{node[:16]}-{k}-{digest}")
        return names

    def _spawn(self, d: int) -> Any:
        """The actor named for device d: the running one, or a new one pinned to its node."""
        from .worker import DeviceWorker

        node = self.node_ids[d]
        options: dict[str, Any] = {
            "name": self.names[d],
            "num_cpus": self.cpus_per_device,
            "max_concurrency": 64,
            "max_restarts": 0,
            "scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=False),
        }
        if self.devices.memory is not None:
            options["memory"] = self.devices.memory
        cls = ray.remote(DeviceWorker).options(**options)
        return OWNERS.get_or_start(
            self.names[d], lambda: cls.remote(d, self._blas, self._per_node[node], self.runner)
        )

    def _acquire(self, devices: Sequence[int] | range, error: type[Exception]) -> None:
        """Attach this engine to the actors of `devices`, starting those that do not run; an
        actor that is closing (its last program just left) is waited out and started anew."""
        todo = list(devices)
        deadline = time.perf_counter() + self.startup_timeout_s
        while todo:
            refs = {}
            for d in todo:
                self.actors[d] = self._spawn(d)
                refs[self.actors[d].attach.remote(self.engine_id)] = d
            left = max(0.0, deadline - time.perf_counter())
            ready, pending = ray.wait(list(refs), num_returns=len(refs), timeout=left)
            if pending:
                late = sorted(refs[r] for r in pending)
                raise error(
                    f"er.ray({self.ndev}): the actors of devices {late} did not start within "
                    f"{self.startup_timeout_s:g} s; the cluster may lack free CPUs or memory "
                    f"on their nodes ({sorted({self.node_ids[d] for d in late})})"
                )
            todo = []
            for r in ready:
                d = refs[r]
                try:
                    info = ray.get(r)
                except RayActorError:
                    info = None  # it died (or was being killed) as we attached: start anew
                except Exception as exc:
                    raise error(
                        f"er.ray({self.ndev}): the actor of device {d} failed to start on node "
                        f"{self.node_ids[d]}: {_first_line(exc)}"
                    ) from exc
                if info is None:
                    OWNERS.drop(self.names[d], self.actors[d])
                    todo.append(d)
                else:
                    self.info[d] = info
            if todo:
                if time.perf_counter() > deadline:
                    raise error(f"er.ray({self.ndev}): devices {todo} kept closing")
                time.sleep(0.05)

    def _refresh(self) -> None:
        """Notice actors another program of this process replaced or closed since this engine
        last ran (the owner handles say which actor holds each name now)."""
        for d, name in enumerate(self.names):
            current = OWNERS.current(name)
            if current is None or current._actor_id != self.actors[d]._actor_id:
                self._dead.add(d)

    def _revive(self) -> None:
        """Replace the actors that died (same node); every plan is shipped again, since the
        peers it names changed."""
        if not self._dead:
            return
        dead = sorted(self._dead)
        for d in dead:
            OWNERS.drop(self.names[d], self.actors[d])
        self._acquire(dead, ExecutionError)
        self._loaded = [set() for _ in range(self.ndev)]
        self._dead.clear()

    def close(self) -> None:
        """Leave the device actors: this engine's plans are dropped, and an actor no other
        program uses is killed (a Ray runtime this engine started stays up for the process)."""
        actors, self.actors = getattr(self, "actors", []), []
        keys = [c[3] for c in getattr(self, "_plans", {}).values()]
        for name, a in zip(getattr(self, "names", []), actors):
            if a is None:
                continue
            with contextlib.suppress(Exception):
                for key in keys:
                    a.forget.remote(key)
                if ray.get(a.detach.remote(self.engine_id), timeout=self.abort_timeout_s):
                    ray.kill(a)
                    OWNERS.drop(name, a)
        if hasattr(self, "_plans"):
            self._plans.clear()

    # --- plans -----------------------------------------------------------------------------------
    def plan(self, tg: TaskGraph) -> tuple[str, TaskSchedule, list[DevicePart]]:
        """The key, core plan and device parts of `tg`, built once per graph (by identity)."""
        c = self._plans.get(id(tg))
        if c is None or c[0] is not tg or c[1] != self.priority or c[2] != self.cost_model:
            plan = make_task_schedule(tg, self.ndev, self.priority, self.cost_model.task_seconds)
            parts = split_plan(tg, plan)
            c = (tg, self.priority, self.cost_model, uuid.uuid4().hex, plan, parts)
            self._plans[id(tg)] = c
            while len(self._plans) > MAX_CACHED_PLANS:
                old = self._plans.popitem(last=False)[1]
                for d, a in enumerate(self.actors):
                    if old[3] in self._loaded[d]:
                        a.forget.remote(old[3])
                        self._loaded[d].discard(old[3])
        self._plans.move_to_end(id(tg))
        return c[3], c[4], c[5]

    def _ship(self, key: str, parts: list[DevicePart]) -> None:
        need = [d for d in range(self.ndev) if key not in self._loaded[d]]
        if not need:
            return
        refs = {self.actors[d].load.remote(key, parts[d], self.actors): d for d in need}
        ready, pending = ray.wait(list(refs), num_returns=len(refs), timeout=self.startup_timeout_s)
        for r in ready:
            d = refs[r]
            try:
                ray.get(r)
            except RayActorError as exc:
                self._dead.add(d)
                raise ExecutionError(
                    f"device {d} (Ray actor on node {self.node_ids[d]}) died while the plan "
                    f"was being shipped: {_first_line(exc)}; the next run restarts it"
                ) from exc
            self._loaded[d].add(key)
        if pending:
            raise ExecutionError(
                f"shipping the plan to devices {[refs[r] for r in pending]} timed out"
            )

    # --- running ---------------------------------------------------------------------------------
    def run(
        self,
        tg: TaskGraph,
        inputs: Mapping[int, np.ndarray],
        variables: Mapping[str, float] | None = None,
        trace: bool = False,
    ) -> RunResult:
        """Execute every task of the placed graph `tg` on the actors; `inputs` are whole
        graph-input arrays by node id. Raises ExecutionError naming the device and the task if
        a kernel fails or an actor dies."""
        if not self.actors:
            raise ExecutionError("this Ray engine is closed")
        if not isinstance(tg, TaskGraph):
            raise ExecutionError(
                "the Ray engine runs placed task graphs; a memory plan (offload under a budget) "
                "is for the memory engine"
            )
        self._refresh()
        self._revive()
        key, _, parts = self.plan(tg)
        self._ship(key, parts)
        run_id = f"{self.engine_id}:{next(self._run_ids)}"
        t0 = time.perf_counter()
        t0_wall = time.time()
        needed = sorted({n for p in parts for n in p.feeds})
        refs = {}
        for n in needed:
            if n not in inputs:
                raise ExecutionError(f"no value for graph input {tg.graph[n].name}")
            x = inputs[n]  # a relation travels as its Coo (its arrays; cuts are made there)
            refs[n] = ray.put(x if isinstance(x, Coo) else np.asarray(x))
        var = dict(variables or {})
        calls = {
            self.actors[d].execute.remote(
                key, run_id, {n: [refs[n]] for n in parts[d].feeds}, var, trace
            ): d
            for d in range(self.ndev)
        }
        results, failure = self._wait(tg, parts, run_id, calls, t0)
        if failure is not None:
            raise failure
        wall = time.perf_counter() - t0
        values: dict[int, np.ndarray] = {}
        events: list[Event] = []
        for d in range(self.ndev):
            res = results[d]
            values.update(res["values"])
            if trace:
                off = res["t0_wall"] - t0_wall
                events.extend((t, dv, w, s + off, e + off) for t, dv, w, s, e in res["events"])
        events.sort(key=lambda ev: (ev[3], ev[0]))
        return RunResult(
            values=values,
            wall_time_s=wall,
            peak_bytes={d: results[d]["peak"] for d in range(self.ndev)},
            bytes_moved=sum(results[d]["moved"] for d in range(self.ndev)),
            bytes_offloaded=0,
            busy_s={d: results[d]["busy"] for d in range(self.ndev)},
            events=events,
        )

    def _wait(
        self,
        tg: TaskGraph,
        parts: list[DevicePart],
        run_id: str,
        calls: dict[Any, int],
        t0: float,
    ) -> tuple[dict[int, dict[str, Any]], ExecutionError | None]:
        """Gather every device's result; on the first failure abort the others and build the
        error. Polls each device's status so a death can name the task it was running."""
        pending = dict(calls)
        results: dict[int, dict[str, Any]] = {}
        status: dict[int, dict[str, Any]] = {}
        asked: dict[Any, int] = {}
        dead: dict[int, BaseException] = {}
        errors: list[tuple[int, tuple[int, str, str]]] = []
        next_poll = time.perf_counter() + self.poll_s
        while pending and not dead and not errors:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=self.poll_s)
            for r in ready:
                d = pending.pop(r)
                self._collect(d, r, results, dead, errors)
            now = time.perf_counter()
            if self.run_timeout_s is not None and now - t0 > self.run_timeout_s:
                break
            if pending and now >= next_poll:
                next_poll = now + self.poll_s
                done_status, _ = ray.wait(list(asked), num_returns=len(asked), timeout=0)
                for r in done_status:
                    d = asked.pop(r)
                    with contextlib.suppress(Exception):
                        status[d] = ray.get(r)
                waiting = set(asked.values())
                for d in set(pending.values()) - waiting:
                    asked[self.actors[d].status.remote(run_id)] = d
        if not pending and not dead and not errors:
            return results, None
        # Something failed (or the run timed out): stop the others, then wait for them, bounded.
        for d in set(pending.values()):
            with contextlib.suppress(Exception):
                self.actors[d].abort.remote(run_id)
        if pending:
            ready, late = ray.wait(
                list(pending), num_returns=len(pending), timeout=self.abort_timeout_s
            )
            for r in ready:
                self._collect(pending.pop(r), r, results, dead, errors)
            for r in late:
                d = pending.pop(r)
                dead.setdefault(d, TimeoutError("did not stop after an abort"))
        for r, d in asked.items():
            with contextlib.suppress(Exception):
                st = ray.get(r, timeout=0)
                if st.get("run") == run_id:
                    status[d] = st
        for d, exc in dead.items():
            self._dead.add(d)
            if not isinstance(exc, RayActorError):
                with contextlib.suppress(Exception):
                    ray.kill(self.actors[d])
        if dead:
            return results, self._death_error(tg, parts, dead, status)
        if errors:
            d, (gid, message, tb) = errors[0]
            return results, _task_error(tg, d, gid, message, tb)
        running = {d: status.get(d, {}).get("running", []) for d in range(self.ndev)}
        busy = "; ".join(
            f"device {d}: {', '.join(_describe(tg, t) for t in ts)}"
            for d, ts in running.items()
            if ts
        )
        return results, ExecutionError(
            f"the run exceeded run_timeout_s={self.run_timeout_s:g} s and was aborted"
            + (f"; running: {busy}" if busy else "")
        )

    @staticmethod
    def _collect(
        d: int,
        ref: Any,
        results: dict[int, dict[str, Any]],
        dead: dict[int, BaseException],
        errors: list[tuple[int, tuple[int, str, str]]],
    ) -> None:
        try:
            res = ray.get(ref)
        except RayActorError as exc:
            dead[d] = exc
            return
        except Exception as exc:  # the actor method itself raised: an engine bug
            errors.append((d, (-1, f"{type(exc).__name__}: {exc}", "")))
            return
        if "error" in res:
            errors.append((d, res["error"]))
        elif not res.get("aborted"):
            results[d] = res

    def _death_error(
        self,
        tg: TaskGraph,
        parts: list[DevicePart],
        dead: Mapping[int, BaseException],
        status: Mapping[int, dict[str, Any]],
    ) -> ExecutionError:
        msgs = []
        for d in sorted(dead):
            st = status.get(d)
            if st and st.get("running"):
                what = "while running " + ", ".join(_describe(tg, t) for t in st["running"])
                what += f" ({st['done']} of {st['ntasks']} of its tasks done)"
            elif st and st.get("waiting", -1) >= 0:
                what = (
                    f"while waiting for the inputs of {_describe(tg, st['waiting'])} "
                    f"({st['done']} of {st['ntasks']} of its tasks done)"
                )
            else:
                first = next((g for g in parts[d].gids), None)
                what = "before reporting progress" + (
                    f"; its first task is {_describe(tg, first)}" if first is not None else ""
                )
            node = self.info[d].get("node_id", self.node_ids[d])
            msgs.append(
                f"device {d} (Ray actor pid {self.info[d].get('pid', '?')} on node {node}) "
                f"died {what}: {_first_line(dead[d])}"
            )
        return ExecutionError(
            "; ".join(msgs) + ". The run was aborted; the next run restarts the actor."
        )

    def evaluate(self, tg: TaskGraph, feeds: Mapping[str, Any]) -> list[np.ndarray]:
        """Convenience: bind named feeds, run, and tile the graph outputs."""
        from ...frontend.reference import bind_feeds
        from ...taskgraph.interpret import assemble_outputs

        inputs, variables = bind_feeds(tg.graph, feeds)
        return assemble_outputs(tg, self.run(tg, inputs, variables).values)


def _first_line(exc: BaseException) -> str:
    lines = [x.strip() for x in str(exc).splitlines() if x.strip()]
    tail = [x for x in lines if "ray.kill" in x or "Error" in x][-1:] if len(lines) > 1 else []
    head = lines[0] if lines else ""
    return f"{type(exc).__name__}: " + " ".join(dict.fromkeys([head, *tail])).rstrip(".")


def _describe(tg: TaskGraph, gid: int) -> str:
    t = tg.tasks[gid]
    return f"task t{gid} ({t.kind} of node {tg.graph[t.node].name})"


def _task_error(tg: TaskGraph, d: int, gid: int, message: str, tb: str) -> ExecutionError:
    if gid < 0:
        err = ExecutionError(f"the Ray engine failed on device {d}: {message}")
    else:
        task = tg.tasks[gid]
        err = ExecutionError(
            f"task t{gid} ({task.kind}) of node {tg.graph[task.node].name} on device {d} "
            f"failed: {message}"
        )
    if tb:
        err.add_note(f"traceback on device {d}:\n{tb.rstrip()}")
    return err
