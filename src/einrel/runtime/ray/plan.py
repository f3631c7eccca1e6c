"""A placed plan cut into one part per device, for engines whose devices run in other processes.

Each part holds its device's tasks under local ids (0..m-1, in global id order, so still
topological) and a core `TaskSchedule` over them with a single device. Data that crosses
devices does so only through `move` tasks, which always run on the destination device:

- a move whose source block lives on another device is *gated*: it has no local inputs and
  becomes ready when the source device delivers the block (the move then fetches it on the
  destination's transfer channel, so the move task is the transfer);
- a block read by remote moves lists them in `sends` (destination device, move task id); it
  stays counted on its device until every reader, local or remote, is done, as in the shared
  core's memory rule (the destination acknowledges each arrival).

`DeviceCore` is the shared scheduling core with these two additions: gated tasks wait for
`release`, and remote readers are counted down with `remote_done`. Everything here is plain
data and plain Python; nothing imports Ray.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...taskgraph.ir import Task, TaskGraph
from ..core import Core, TaskSchedule


@dataclass(frozen=True)
class DevicePart:
    """The tasks of one device and what it exchanges with the others (indexed by local id)."""

    device: int
    ndev: int
    gids: tuple[int, ...]  # local id -> global task id
    tasks: tuple[Task, ...]
    args: tuple[tuple[int, ...], ...]  # local ids of each task's inputs, in `task.inputs` order
    plan: TaskSchedule  # the core's view: one device, the global priority keys
    gated: tuple[int, ...]  # local ids of moves whose source is on another device
    source: tuple[tuple[int, int], ...]  # per local id: (source device, source gid) or (-1, -1)
    sends: tuple[tuple[tuple[int, int], ...], ...]  # per local id: (dst device, dst move gid)
    keep: tuple[bool, ...]  # graph-output blocks: never freed during a run
    outputs: tuple[int, ...]  # local ids of the graph-output blocks on this device
    feeds: tuple[int, ...]  # graph-input node ids read by this device's input tasks

    def local(self) -> dict[int, int]:
        """Global task id -> local id."""
        return {g: i for i, g in enumerate(self.gids)}

    @property
    def nbytes_in(self) -> int:
        """Bytes this device receives from others in one run (its gated moves)."""
        return sum(self.plan.nbytes[i] for i in self.gated)


def split_plan(tg: TaskGraph, plan: TaskSchedule) -> list[DevicePart]:
    """One part per engine device (`plan.ndev`, devices without tasks get empty parts)."""
    ndev = plan.ndev
    tasks = tg.tasks
    by_dev: list[list[int]] = [[] for _ in range(ndev)]
    for t in tasks:
        by_dev[t.device].append(t.id)
    lid = [0] * len(tasks)
    for ids in by_dev:
        for i, g in enumerate(ids):
            lid[g] = i
    outs = {t for blocks in tg.outputs for t, _ in blocks}
    sends: list[list[tuple[int, int]]] = [[] for _ in tasks]
    for t in tasks:
        if t.kind == "move":
            (src,) = dict.fromkeys(t.inputs)
            if tasks[src].device != t.device:
                sends[src].append((t.device, t.id))
    parts = []
    for d, ids in enumerate(by_dev):
        m = len(ids)
        gated: list[int] = []
        source: list[tuple[int, int]] = []
        args: list[tuple[int, ...]] = []
        inputs: list[tuple[int, ...]] = []
        consumers: list[list[int]] = [[] for _ in range(m)]
        for i, g in enumerate(ids):
            t = tasks[g]
            remote = t.kind == "move" and tasks[t.inputs[0]].device != d
            if remote:
                gated.append(i)
                source.append((tasks[t.inputs[0]].device, t.inputs[0]))
                args.append(())
                inputs.append(())
                continue
            source.append((-1, -1))
            args.append(tuple(lid[j] for j in t.inputs))
            distinct = tuple(dict.fromkeys(lid[j] for j in t.inputs))
            inputs.append(distinct)
            for j in distinct:
                consumers[j].append(i)
        keep = tuple(g in outs for g in ids)
        # A block read only remotely must outlive its task's end (the core would free a block
        # with no local readers at once): flag it as kept; `remote_done` frees it.
        is_output = tuple(
            keep[i] or (not consumers[i] and bool(sends[g])) for i, g in enumerate(ids)
        )
        is_move = tuple(tasks[g].kind == "move" for g in ids)
        local_plan = TaskSchedule(
            ntasks=m,
            ndev=1,
            device=(0,) * m,
            resource=tuple(1 if mv else 0 for mv in is_move),
            is_move=is_move,
            inputs=tuple(inputs),
            consumers=tuple(tuple(c) for c in consumers),
            nbytes=tuple(tasks[g].nbytes for g in ids),
            is_output=is_output,
            key=tuple(plan.key[g] for g in ids),
            order=plan.order,
        )
        parts.append(
            DevicePart(
                device=d,
                ndev=ndev,
                gids=tuple(ids),
                tasks=tuple(tasks[g] for g in ids),
                args=tuple(args),
                plan=local_plan,
                gated=tuple(gated),
                source=tuple(source),
                sends=tuple(tuple(sends[g]) for g in ids),
                keep=keep,
                outputs=tuple(i for i in range(m) if keep[i]),
                feeds=tuple(sorted({tasks[g].node for g in ids if tasks[g].kind == "input"})),
            )
        )
    return parts


class DeviceCore(Core):
    """The shared core over one device's part: gated moves wait for `release`, and blocks read
    by other devices stay live until `remote_done` has been called once per remote reader."""

    def __init__(self, part: DevicePart, workers: int = 1, record: bool = True) -> None:
        self._held = set(part.gated)
        self.part = part
        super().__init__(part.plan, workers, None, record)
        for i, s in enumerate(part.sends):
            self.readers[i] += len(s)

    def _push(self, t: int) -> None:
        if t not in self._held:
            super()._push(t)

    @property
    def waiting_for_peers(self) -> bool:
        """Some gated move still waits for a block from another device."""
        return bool(self._held)

    def release(self, t: int) -> None:
        """The remote block gated move t waits for has arrived: t becomes ready."""
        self._held.discard(t)
        super()._push(t)

    def remote_done(self, t: int) -> bool:
        """A remote reader of block t has its copy; True if t stopped being live."""
        self.readers[t] -= 1
        if self.readers[t] == 0 and not self.part.keep[t]:
            self.live[0] -= self.plan.nbytes[t]
            return True
        return False


def modelled_bytes(parts: Sequence[DevicePart]) -> int:
    """Bytes the plan moves between devices in one run (the sum of its cross-device moves)."""
    return sum(p.nbytes_in for p in parts)
