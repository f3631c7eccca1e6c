"""Named, configurable strategies: the shared base of placers and partitioners.

A strategy is a frozen dataclass whose fields are its options, registered by name; `resolve`
turns a name or an instance plus keyword options into one, refusing unknown names and options
with a CompileError that lists the valid ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from .errors import CompileError


class Strategy:
    """Mixin for a frozen dataclass of options with a registry `name`."""

    name: ClassVar[str] = ""

    def options(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def __str__(self) -> str:
        """The name, with the options that differ from their defaults."""
        changed = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
            if getattr(self, f.name) != f.default
        }
        opts = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        return f"{self.name}({opts})" if opts else self.name


S = TypeVar("S", bound=Strategy)


def resolve(
    kind: str,
    base: type[S],
    registry: Mapping[str, type[S]],
    spec: str | S,
    options: Mapping[str, Any],
) -> S:
    """The `kind` (placer, partitioner) `spec` names, or `spec` itself, with `options` set."""
    if isinstance(spec, base):
        cls: type[S] = type(spec)
        given = spec.options()
    else:
        found = registry.get(spec) if isinstance(spec, str) else None
        if found is None:
            raise CompileError(f"unknown {kind} {spec!r}; valid {kind}s: {', '.join(registry)}")
        cls, given = found, {}
    valid = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    bad = sorted(set(options) - set(valid))
    if bad:
        raise CompileError(
            f"{kind} {cls.name!r} has no option(s) {bad}; its options: {', '.join(valid) or 'none'}"
        )
    if not options and isinstance(spec, base):
        return spec
    return cls(**{**given, **options})
