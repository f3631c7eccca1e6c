"""Which engine runs a compiled program, and which options and priorities it accepts.

`er.compile` and `er.load` both end here: the devices and whether there is a memory plan pick
the engine; a misspelt option or priority fails before any engine starts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..devices import Devices
from ..errors import CompileError, EinrelError


def engine_kind(devs: Devices, memory: bool) -> str:
    if devs.kind == "cpu":
        return "memory" if memory else "local"
    return devs.kind


def engine_class(kind: str) -> Any:
    if kind == "memory":
        from .mem.engine import MemEngine

        return MemEngine
    if kind == "local":
        from .local import LocalEngine

        return LocalEngine
    if kind == "gpu":
        from .gpu import GpuEngine

        return GpuEngine
    from .ray.engine import RayEngine

    return RayEngine


def check_engine(kind: str, priority: Any, options: Mapping[str, Any]) -> None:
    """An unknown priority or engine option fails now, naming what the engine accepts."""
    from .core import TASK_PRIORITIES as CORE
    from .mem.schedule import MEM_PRIORITIES as MEMORY

    valid = MEMORY if kind in ("memory", "gpu") else CORE
    if isinstance(priority, str) and priority not in valid:
        raise CompileError(
            f"unknown priority {priority!r} for the {kind} engine; expected one of {valid}"
        )
    allowed = engine_options(kind)
    bad = sorted(set(options) - set(allowed))
    if bad:
        hint = ""
        if kind == "local" and set(bad) <= set(engine_options("memory")):
            hint = (
                "; they apply to the memory engine: set a memory budget "
                "(memory_limit=... or er.cpu(n, memory=...)) to use it"
            )
        raise CompileError(
            f"unknown engine option(s) {bad} for the {kind} engine; "
            f"valid: {', '.join(allowed)}{hint}"
        )


def engine_options(kind: str) -> list[str]:
    """The keyword options `engine_options` may give the engine of `kind`."""
    import inspect

    params = inspect.signature(engine_class(kind).__init__).parameters
    taken = {"self", "ndev", "devices", "priority", "cost_model", "runner"}  # runner: tests' hook
    return [p for p, v in params.items() if p not in taken and v.kind is not v.VAR_KEYWORD]


def make_engine(
    devs: Devices, priority: str, model: Any, memory: bool, options: Mapping[str, Any]
) -> Any:
    if devs.kind == "cpu" and memory:
        from .mem.engine import MemEngine

        return MemEngine(devs.n, priority=priority, cost_model=model, **options)
    if devs.kind == "cpu":
        from .core import task_priority
        from .local import LocalEngine

        return LocalEngine(devs.n, priority=task_priority(priority), cost_model=model, **options)
    if devs.kind == "gpu":
        from .backends.torch_arenas import cuda_available
        from .gpu import GpuEngine

        opts = dict(options)
        if opts.get("device") is None and not cuda_available():
            raise CompileError(
                "er.gpu(...): no CUDA device is visible; pass engine_options={'device': 'cpu'} "
                "to run the GPU code path on CPU tensors"
            )
        return GpuEngine(devs, priority=priority, cost_model=model, **opts)
    if devs.kind == "ray":
        from .core import task_priority
        from .ray.engine import RayEngine

        return RayEngine(devs, priority=task_priority(priority), cost_model=model, **options)
    raise EinrelError(f"unknown device kind {devs.kind!r}")


def start_engine(
    devs: Devices, priority: str, model: Any, memory: bool, options: Mapping[str, Any]
) -> Any:
    """The engine for `devs` (the memory engine when there is a memory plan), its priority and
    options checked first."""
    check_engine(engine_kind(devs, memory), priority, options)
    return make_engine(devs, priority, model, memory, options)
