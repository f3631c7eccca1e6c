"""Ray programs share the cluster: on a 2-CPU cluster several `er.ray(2)` programs live side by
side on the same device actors, run from several threads at once, and the last to close frees
the CPUs; a cluster that truly lacks the CPUs still fails at once."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

import einrel as er
from helpers import local_ray

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.ray, pytest.mark.xdist_group("ray")]


@pytest.fixture(scope="module")
def two_cpus() -> Any:
    with local_ray(2) as r:
        yield r


def mlp(seed: int) -> tuple[list[er.Tensor], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    x = er.input("x", (16, 8), "float64")
    w = er.input("w", (8, 12), "float64")
    loss = er.sum(er.tanh(x @ w) ** 2)
    outs = [loss, *er.grad(loss, [w])]
    return outs, {"x": rng.standard_normal((16, 8)), "w": rng.standard_normal((8, 12))}


def check(prog: er.Program, outs: list[er.Tensor], feeds: dict[str, np.ndarray]) -> None:
    for got, want in zip(prog.run(feeds), er.evaluate(outs, feeds)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def run_in_threads(jobs: list[Any], timeout: float = 60) -> list[BaseException]:
    errors: list[BaseException] = []

    def wrap(job: Any) -> None:
        try:
            job()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(j,), daemon=True) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a run hung"
    return errors


def test_programs_share_the_device_actors(two_cpus: Any) -> None:
    outs_a, feeds_a = mlp(0)
    outs_b, feeds_b = mlp(1)
    a = er.compile(outs_a, devices=er.ray(2))
    b = er.compile(outs_b, devices=er.ray(2), partitioner="data-parallel")
    try:
        assert [x._actor_id for x in a.engine.actors] == [x._actor_id for x in b.engine.actors]
        check(a, outs_a, feeds_a)
        check(b, outs_b, feeds_b)
        # Runs of both programs at once, and of one program from two threads.
        jobs = [lambda: check(a, outs_a, feeds_a), lambda: check(b, outs_b, feeds_b)] * 3
        assert run_in_threads(jobs) == []
        assert run_in_threads([lambda: check(a, outs_a, feeds_a)] * 4) == []
        with pytest.raises(er.CompileError, match="lacks the resources"):
            er.compile(outs_a, devices=er.ray(3))
        a.close()
        check(b, outs_b, feeds_b)  # the other program keeps its actors
    finally:
        a.close()
        b.close()
    deadline = time.perf_counter() + 20
    while ray.available_resources().get("CPU", 0) < 2 and time.perf_counter() < deadline:
        time.sleep(0.1)
    assert ray.available_resources().get("CPU", 0) == 2  # the last one out freed the CPUs
    c = er.compile(outs_a, devices=er.ray(2))  # and new actors start
    try:
        check(c, outs_a, feeds_a)
    finally:
        c.close()


def test_a_budget_on_ray_is_refused_and_memory_is_a_reservation(two_cpus: Any) -> None:
    outs, feeds = mlp(2)
    with pytest.raises(er.CompileError, match="Ray engine does not do"):
        er.compile(outs, devices=er.ray(2), memory_limit="1MiB")
    prog = er.compile(outs, devices=er.ray(2, memory="32MiB"))
    try:
        assert prog.plan.memgraph is None  # nothing planned that the actors would not run
        check(prog, outs, feeds)
        assert prog.simulate() > 0
    finally:
        prog.close()
