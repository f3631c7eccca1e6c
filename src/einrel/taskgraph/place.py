"""Placing a task graph: a device per task, with moves made explicit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..decompose.partition import Box
from ..errors import CompileError
from .ir import Piece, Task, TaskGraph


def place_tasks(tg: TaskGraph, devices: Sequence[int], ndev: int) -> TaskGraph:
    """Fix a device per task (`devices[t]`, ignored for leaves) and insert the data movement."""
    if ndev < 1:
        raise CompileError(f"need at least one device, got {ndev}")
    if len(devices) != len(tg.tasks):
        raise CompileError(f"placement gives {len(devices)} devices for {len(tg.tasks)} tasks")
    tasks: list[Task] = []
    new: dict[int, int] = {}
    local_memo: dict[tuple[int, int], int] = {}
    cut_memo: dict[tuple[int, Box, int], int] = {}

    def add(t: Task, inputs: Sequence[int], device: int, **kw: Any) -> int:
        nt = Task(
            len(tasks),
            kw.get("kind", t.kind),
            t.node,
            tuple(inputs),
            kw.get("shape", t.shape),
            t.dtype,
            device,
            kw.get("op", t.op),
            t.offset if "kind" not in kw else (),
            t.support,
        )
        tasks.append(nt)
        return nt.id

    def local(old: int, d: int) -> int:
        """The id of a task holding old task's value on device d (a leaf copy or a move)."""
        key = (old, d)
        if key in local_memo:
            return local_memo[key]
        t = tg.tasks[old]
        if t.kind in ("input", "fill"):
            r = add(t, (), d)
        elif tasks[new[old]].device == d:
            return new[old]
        else:
            r = add(t, (new[old],), d, kind="move")
        local_memo[key] = r
        return r

    for t in tg.tasks:
        if t.kind in ("input", "fill"):
            continue
        d = int(devices[t.id])
        if not 0 <= d < ndev:
            raise CompileError(f"task t{t.id} placed on device {d}, outside 0..{ndev - 1}")
        if t.kind == "assemble":
            ins, pieces = [], []
            for p in t.op:
                old = t.inputs[p.src]
                src = tg.tasks[old]
                whole = p.size == src.shape
                if src.kind in ("input", "fill") or whole or tasks[new[old]].device == d:
                    ins.append(local(old, d))
                    pieces.append(p)
                    continue
                key = (old, (p.src_offset, p.size), d)
                if key not in cut_memo:  # cut the piece where it lives, then ship only it
                    e = tasks[new[old]].device
                    cut = add(
                        src,
                        (new[old],),
                        e,
                        kind="assemble",
                        shape=p.size,
                        op=(Piece(0, p.src_offset, (0,) * len(p.size), p.size),),
                    )
                    cut_memo[key] = add(tasks[cut], (cut,), d, kind="move")
                ins.append(cut_memo[key])
                pieces.append(Piece(len(ins) - 1, (0,) * len(p.size), p.dst_offset, p.size))
            pieces = [Piece(i, p.src_offset, p.dst_offset, p.size) for i, p in enumerate(pieces)]
            new[t.id] = add(t, ins, d, op=tuple(pieces))
        elif t.kind == "agg":
            by_dev: dict[int, list[int]] = {}
            for old in t.inputs:
                src = tg.tasks[old]
                e = d if src.kind in ("input", "fill") else tasks[new[old]].device
                by_dev.setdefault(e, []).append(local(old, e) if e == d else new[old])
            ins = []
            for e, ids in sorted(by_dev.items(), key=lambda kv: kv[0] != d):
                if e != d and len(ids) > 1:  # sum co-located partials before they travel
                    ids = [add(t, ids, e)]
                ins.extend(ids if e == d else [add(tasks[ids[0]], (ids[0],), d, kind="move")])
            new[t.id] = ins[0] if len(ins) == 1 else add(t, ins, d)
        else:
            new[t.id] = add(t, [local(i, d) for i in t.inputs], d)
    outputs = []
    for blocks in tg.outputs:
        row = []
        for old, off in blocks:
            if old not in new:  # a leaf that is itself an output
                new[old] = local(old, 0)
            row.append((new[old], off))
        outputs.append(tuple(row))
    placed = TaskGraph(tg.graph, tuple(tasks), tuple(outputs), ndev)
    placed.validate()
    return placed
