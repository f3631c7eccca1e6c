"""Device sets: where a compiled program runs and how much memory each device may use."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Literal

from .errors import CompileError

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def read_quantity(text: str, per_second: bool = False) -> float | None:
    """`text` as a number of bytes ("2GiB", "512 MB", "1.5e9"; with `per_second`, an optional
    "/s" may follow), or None when it cannot be read."""
    rate = r"(?:/\s*s)?" if per_second else ""
    m = re.fullmatch(rf"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*?)\s*{rate}\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        return None
    return float(m.group(1)) * _UNITS[m.group(2).lower()]


def parse_bytes(value: int | float | str | None, what: str = "memory") -> int | None:
    """`None` (unlimited), an int of bytes, or a string such as "2GiB", "512 MB", "1.5e9"."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise CompileError(f"{what}: expected bytes or a size string, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise CompileError(f"{what}: a budget must be a finite number of bytes, got {value!r}")
    if isinstance(value, int | float):
        n = int(value)
    elif isinstance(value, str):
        q = read_quantity(value)
        if q is None or not math.isfinite(q):
            raise CompileError(f"{what}: cannot read {value!r} as a size (e.g. '2GiB', '512MB')")
        n = int(q)
    else:
        raise CompileError(f"{what}: expected bytes or a size string, got {value!r}")
    if n <= 0:
        raise CompileError(f"{what}: a budget must be positive, got {value!r}")
    return n


DeviceKind = Literal["cpu", "gpu", "ray"]


@dataclass(frozen=True)
class Devices:
    """`n` devices of one kind; `memory` is the per-device budget in bytes (None: unlimited).

    kind "cpu": logical devices as worker threads in this process (host RAM is the offload
    tier); "gpu": CUDA devices; "ray": one pinned Ray actor per device.
    """

    kind: DeviceKind
    n: int
    memory: int | None = None
    address: str | None = None
    ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 1:
            raise CompileError(f"{self.kind}: the device count must be an int >= 1, got {self.n!r}")

    def with_memory(self, memory: int | str | None) -> Devices:
        """The same devices with a per-device memory budget of `memory` bytes."""
        return Devices(self.kind, self.n, parse_bytes(memory), self.address, self.ids)

    def __str__(self) -> str:
        mem = f", memory={self.memory}" if self.memory else ""
        return f"{self.kind}({self.n}{mem})"


def cpu(n: int = 1, memory: int | str | None = None) -> Devices:
    """n logical devices on this machine, each a worker with its own memory budget."""
    return Devices("cpu", n, parse_bytes(memory, f"cpu({n}) memory"))


def gpu(
    n: int | None = None, memory: int | str | None = None, ids: tuple[int, ...] | None = None
) -> Devices:
    """CUDA devices (all visible ones by default)."""
    count = n
    if count is None:
        try:
            import torch

            count = torch.cuda.device_count()
        except ImportError:  # pragma: no cover - torch is a dependency
            count = 0
        if count == 0:
            raise CompileError("er.gpu(): no CUDA device is visible")
    return Devices(
        "gpu",
        count,
        parse_bytes(memory, "gpu memory"),
        None,
        tuple(ids) if ids else tuple(range(count)),
    )


def ray(n: int, address: str | None = None, memory: int | str | None = None) -> Devices:
    """n devices as pinned Ray actors (a local cluster, or `address` such as "auto")."""
    return Devices("ray", n, parse_bytes(memory, f"ray({n}) memory"), address)


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)
