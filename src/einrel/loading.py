"""`er.load`: a program saved with `Program.save`, checked against what it is asked to run on.

The plan is reused as saved; only the engine is started anew. A plan is tied to its device
count (and, when memory-planned, to its budgets) and to its graph's shapes: anything else is
refused with a ProgramFileError that says what differs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .devices import Devices
from .errors import ProgramFileError
from .frontend.tensor import Tensor, build_graph
from .ir.fuse import fuse_elementwise
from .program import Plan, Program
from .runtime.engines import start_engine
from .saving import read_program_header, unpickle
from .version import __version__


def load(
    path: str | Path,
    devices: Devices | None = None,
    *,
    outputs: Tensor | Sequence[Tensor] | None = None,
) -> Program:
    """A program saved with `Program.save`, ready to run without compiling again.

    `devices` (default: those it was compiled for) must match the plan: as many devices, and
    for a memory plan the same kind and budgets; without one, `er.cpu(n)` and `er.ray(n)`
    run the same plan. With `outputs` (the tensors it was compiled from), the saved graph must
    be theirs: same inputs, shapes, dtypes and operations. Unpickling runs code: load only
    files you trust.

    Raises
    ------
    ProgramFileError
        Not a saved program, another einrel version, or devices / tensors it was not
        planned for.
    """
    header, body = read_program_header(path)
    if header.get("einrel") != __version__:
        raise ProgramFileError(
            f"{str(path)!r} was saved by einrel {header.get('einrel')}, this is einrel "
            f"{__version__}; plans are not portable between versions: compile again and save"
        )
    saved = unpickle(path, body)
    plan: Plan = saved["plan"]
    devs = saved["devices"] if devices is None else _check_devices(plan, saved["devices"], devices)
    if outputs is not None:
        _check_outputs(plan, outputs, path)
    engine = start_engine(
        devs,
        saved["priority"],
        saved["cost_model"],
        plan.memgraph is not None,
        saved["engine_options"],
    )
    outs: list[Tensor] = []
    return Program(
        outs,
        devs,
        plan,
        engine,
        saved["cost_model"],
        saved["priority"],
        saved["single"],
        saved["engine_options"],
    )


def _check_devices(plan: Plan, saved: Devices, devs: Any) -> Devices:
    if not isinstance(devs, Devices):
        raise ProgramFileError(f"devices must be er.cpu(n), er.gpu(...) or er.ray(n), got {devs}")
    if devs.n != plan.tasks.ndev:
        raise ProgramFileError(
            f"the saved plan places its tasks on {plan.tasks.ndev} device(s), not {devs.n} "
            f"({devs}); load it on {saved} or compile again for {devs}"
        )
    if plan.memgraph is not None:
        if devs.kind != saved.kind or devs.memory != saved.memory:
            raise ProgramFileError(
                f"the saved plan is memory-planned for {saved} (kind {saved.kind}, budget "
                f"{saved.memory} bytes per device); {devs} differs: compile again for it"
            )
    elif devs.kind == "gpu" or (devs.kind == "cpu" and devs.memory is not None):
        raise ProgramFileError(
            f"{devs} runs memory plans, and the saved plan has none (it was compiled for "
            f"{saved}): compile again for {devs}"
        )
    return devs


def _check_outputs(plan: Plan, outputs: Tensor | Sequence[Tensor], path: str | Path) -> None:
    """The saved graph must be the one `outputs` build: inputs first (the usual mismatch is a
    shape), then every operation."""
    outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    graph = build_graph(outs)
    if plan.fused:
        graph = fuse_elementwise(graph)
    have = {n.name: (n.shape, n.dtype) for n in plan.graph.inputs}
    want = {n.name: (n.shape, n.dtype) for n in graph.inputs}
    if have != want:
        diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
        raise ProgramFileError(
            f"{str(path)!r} was planned for other inputs: "
            + "; ".join(f"{k}: saved {have.get(k)}, asked {want.get(k)}" for k in diff)
        )
    old, new = str(plan.graph).splitlines(), str(graph).splitlines()
    if old != new:
        line = next((a, b) for a, b in zip([*old, ""], [*new, ""]) if a != b)
        raise ProgramFileError(
            f"{str(path)!r} was planned for another graph: saved {line[0].strip()!r}, "
            f"asked {line[1].strip()!r}"
        )
