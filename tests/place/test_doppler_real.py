"""Doppler on einrel's own task graphs: er.compile(placer="doppler") and stage III on the engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import einrel as er
from einrel.place.doppler import DopplerPolicy, find_policy, fingerprint, placer, train
from einrel.workloads import ffnn_train
from einrel.workloads.targets import is_workload_spec, workload_target


def test_compile_with_doppler_placer_runs_correctly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # no stored policy fits this graph: the placer trains a short one (kept short here)
    monkeypatch.setattr(placer, "SHORT_EPISODES", {1: 8, 2: 8})
    wl = ffnn_train("tiny", "float64", with_grads=True)
    feeds = wl.make_feeds(0)
    want = wl.torch_reference(feeds)
    prog = er.compile(
        wl.outputs, er.cpu(2), placer="doppler", placer_options={"cache": tmp_path / "pol"}
    )
    try:
        got = prog.run(feeds)
    finally:
        prog.close()
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    devices = {t.device for t in prog.plan.tasks.tasks}
    assert devices <= {0, 1}
    # the short policy trained for this graph is kept in the named cache: a second compile
    # with that cache reuses it, and one without any cache never sees it
    target = workload_target("ffnn_train:tiny", 2, dtype="float64")
    assert find_policy(fingerprint(target.graph), 2, [tmp_path / "pol"]) is not None


def test_stage3_uses_measured_wall_time() -> None:
    assert is_workload_spec("llama_block:medium") and not is_workload_spec("nope:tiny")
    target = workload_target("ffnn_train:tiny", 2)
    policy = DopplerPolicy(2)
    train(policy, target.graph, 1, episodes=6, batch=2)
    calls: list[float] = []

    def measured(assignment: list[int]) -> float:
        calls.append(target.run(assignment))
        return calls[-1]

    log = train(policy, target.graph, 3, episodes=4, oracle=measured, eval_every=2, batch=2)
    assert log.episodes == 4 and len(log.costs) == 4
    assert (
        all(c > 0 for c in calls) and len(calls) == 4 + 2
    )  # 4 episodes, greedy at the start and after 2 updates
    assert [h["stage"] for h in policy.history] == [1, 3]
    with pytest.raises(er.CompileError, match="stage 3 needs a measured cost"):
        train(policy, target.graph, 3, episodes=1)
