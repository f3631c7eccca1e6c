"""Helpers several test modules share."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def local_ray(num_cpus: int) -> Iterator[Any]:
    """A fresh local Ray runtime with `num_cpus` CPUs for the duration of the block."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def place_by(name: str, tg: Any, ndev: int, **options: Any) -> list[int]:
    """A device per task of an unplaced task graph, from the placer `name` (built-in costs)."""
    from einrel.place.placers import get_placer, place
    from einrel.taskgraph.cost import CostModel

    return place(get_placer(name, **options), tg, ndev, CostModel.default())


def round_robin(tg: Any, ndev: int) -> list[int]:
    return place_by("round-robin", tg, ndev)
