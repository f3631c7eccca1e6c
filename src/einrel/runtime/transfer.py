"""Host <-> device transfers for the memory engines, optionally throttled like a PCIe link.

A `Link` copies bytes between an arena region and host memory and, when given a bandwidth,
stretches every copy to `nbytes / (bandwidth * U(1 - jitter, 1 + jitter))` seconds: it copies
first and then sleeps until that deadline (a copy that is already slower than the link is not
stretched further). The jitter makes completion times vary from run to run, which is what a
run-time ordering has to cope with on a real bus. Each channel owns its `Link` and its random
generator, so channels never contend for a lock.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..devices import read_quantity
from ..errors import CompileError


def parse_bandwidth(
    value: float | int | str | None, what: str = "transfer_bandwidth"
) -> float | None:
    """`None` (unthrottled), bytes per second as a number, or a string such as "4GB/s",
    "12 GiB/s", "500MB/s" (the "/s" is optional)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise CompileError(f"{what}: expected bytes per second or a rate string, got {value!r}")
    if isinstance(value, int | float):
        rate = float(value)
    elif isinstance(value, str):
        q = read_quantity(value, per_second=True)
        if q is None:
            raise CompileError(f"{what}: cannot read {value!r} as a rate (e.g. '4GB/s')")
        rate = q
    else:
        raise CompileError(f"{what}: expected bytes per second or a rate string, got {value!r}")
    if not rate > 0 or rate == float("inf"):
        raise CompileError(f"{what}: a bandwidth must be positive and finite, got {value!r}")
    return rate


def check_jitter(jitter: float) -> float:
    j = float(jitter)
    if not 0.0 <= j < 1.0:
        raise CompileError(f"jitter must be in [0, 1), got {jitter!r}")
    return j


@dataclass
class Link:
    """One transfer channel: `bandwidth` bytes/s (None: as fast as the copy), ± `jitter`."""

    bandwidth: float | None = None
    jitter: float = 0.0
    seed: int | None = None
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(init=False, repr=False)
    busy_s: float = field(default=0.0, init=False)
    nbytes: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.jitter = check_jitter(self.jitter)
        self.rng = random.Random(self.seed)

    def seconds(self, nbytes: int) -> float:
        """The modelled duration of one transfer of `nbytes` (drawn afresh: it jitters)."""
        if self.bandwidth is None:
            return 0.0
        factor = 1.0 + self.jitter * (2.0 * self.rng.random() - 1.0) if self.jitter else 1.0
        return nbytes / (self.bandwidth * factor)

    def transfer(self, copy: Callable[[], object], nbytes: int) -> None:
        """Run `copy()` (which moves `nbytes`) and hold the channel for the link's time."""
        start = time.perf_counter()
        deadline = start + self.seconds(nbytes)
        copy()
        left = deadline - time.perf_counter()
        if left > 0:
            self.sleep(left)
        self.busy_s += time.perf_counter() - start
        self.nbytes += nbytes


def host_links(ndev: int, bandwidth: float | None, jitter: float, seed: int) -> dict[int, Link]:
    """One link per host channel resource of a memory schedule: h2d of device d is resource
    ndev + d, d2h is 2 ndev + d (each its own random stream)."""
    return {r: Link(bandwidth, jitter, seed + r) for r in range(ndev, 3 * ndev)}
