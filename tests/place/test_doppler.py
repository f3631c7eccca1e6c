"""Doppler's learned placer: features, networks, rollouts, training, policy files, placers."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from einrel.errors import CompileError, EinrelError
from einrel.place import PlaceGraph, get_placer, load_graph_file
from einrel.place.dag import b_levels
from einrel.place.doppler import (
    DopplerPolicy,
    find_policy,
    fingerprint,
    graph_features,
    il_loss,
    load_policy,
    placer,
    train,
)
from einrel.place.doppler.env import rollout
from einrel.place.doppler.evaluate import side_by_side
from einrel.place.doppler.model import GraphTensors, PlcNumpy
from einrel.place.doppler.placer import policy_for
from einrel.place.doppler.policy import POLICY_DIR, cache_dir
from einrel.place.graphfile import RELEASED_DIR, RELEASED_GRAPHS
from einrel.place.simulate import check_assignment, make_simulator

DATA = RELEASED_DIR  # Doppler's released graphs, shipped inside the package
GRAPHS = RELEASED_GRAPHS


def diamond_ladder(width: int = 3, depth: int = 4) -> PlaceGraph:
    """`depth` layers of `width` ops, each op feeding the two ops below it; uneven costs."""
    edges = []
    for layer in range(depth - 1):
        for i in range(width):
            a = layer * width + i
            edges += [(a, (layer + 1) * width + i), (a, (layer + 1) * width + (i + 1) % width)]
    n = width * depth
    comp = [1.0 + (v * 7 % 5) for v in range(n)]
    comm = [4.0 * c for c in comp]
    return PlaceGraph(tuple(comp), tuple(comm), tuple(edges), name="ladder")


@pytest.fixture(scope="module")
def chain_mm() -> PlaceGraph:
    return load_graph_file(DATA / "chain_mm_112nodes.txt")


def test_features_and_fingerprint(chain_mm: PlaceGraph) -> None:
    gf = graph_features(chain_mm)
    assert gf.x.shape == (chain_mm.num_ops, 5)
    assert np.allclose(gf.x.mean(axis=0), 0, atol=1e-5)
    assert len(gf.src) == len(gf.dst) == 2 * len(set(chain_mm.edges))
    np.testing.assert_allclose(gf.b_path.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(gf.t_path.sum(axis=1), 1.0, rtol=1e-6)
    # the b-level path of an entry op runs down to a sink through max-b children
    b = b_levels(chain_mm)
    v = int(np.argmax(b))
    path = np.flatnonzero(gf.b_path[v])
    assert v in path and any(not chain_mm.succs[u] for u in path)
    assert fingerprint(chain_mm) == gf.fingerprint
    other = PlaceGraph(chain_mm.comp[:-1] + (1.0,), chain_mm.comm, chain_mm.edges)
    assert fingerprint(other) != fingerprint(chain_mm)


def test_encoder_formulations_agree() -> None:
    g = diamond_ladder(4, 5)
    gt = GraphTensors(graph_features(g))
    policy = DopplerPolicy(2, seed=3)
    with torch.no_grad():
        grouped = policy.encoder(gt, grouped=True)
        low_rank = policy.encoder(gt, grouped=False)
    torch.testing.assert_close(grouped, low_rank, rtol=1e-4, atol=1e-5)


def test_rollout_head_matches_batched_head(chain_mm: PlaceGraph) -> None:
    """The numpy PLC head used in rollouts and the batched torch head used in the loss agree."""
    gf = graph_features(chain_mm)
    gt = GraphTensors(gf)
    policy = DopplerPolicy(4, seed=1)
    with torch.no_grad():
        scores, h, c = policy.forward(gt)
        plc = PlcNumpy(policy.plc, h, c)
        ep = rollout(gf, 4, scores.numpy(), plc, 0.3, 0.3, random.Random(0))
        batched = policy.plc(
            h, c, torch.from_numpy(ep.order), torch.from_numpy(ep.dyn), torch.from_numpy(ep.devices)
        ).numpy()
    sums = np.zeros((4, h.shape[1]), dtype=np.float32)
    for t, (v, d) in enumerate(zip(ep.order, ep.devices)):
        np.testing.assert_allclose(
            plc.logits(int(v), ep.dyn[t], sums) + float(policy.plc.l2.bias.detach()),
            batched[t],
            rtol=1e-4,
            atol=1e-4,
        )
        sums[d] += plc.h[v]
    assert sorted(ep.order.tolist()) == list(range(chain_mm.num_ops))
    check_assignment(chain_mm, ep.assignment, 4)


def test_rollout_respects_dependencies_and_cp_sets(chain_mm: PlaceGraph) -> None:
    gf = graph_features(chain_mm)
    ep = rollout(gf, 4, None, None, 1.0, 1.0, random.Random(5))
    pos = {int(v): t for t, v in enumerate(ep.order)}
    assert all(pos[a] < pos[b] for a, b in chain_mm.edges)
    legal = ep.legal_mask()
    assert legal[np.arange(len(ep.order)), ep.order].all()
    star = ep.sel_star(legal, gf.blevel)
    assert (star <= legal).all() and star.any(axis=1).all()
    assert ep.plc_star().any(axis=1).all()


def test_short_imitation_lowers_il_loss() -> None:
    g = diamond_ladder(4, 6)
    policy = DopplerPolicy(3, seed=0)
    before = il_loss(policy, g, episodes=6)
    log = train(policy, g, 1, episodes=40, eval_every=40, batch=2)
    after = il_loss(policy, g, episodes=6)
    assert log.episodes == 40
    assert after < 0.8 * before
    assert policy.fingerprint == fingerprint(g)


def test_stage2_keeps_the_best_greedy_checkpoint() -> None:
    g = diamond_ladder(4, 6)
    policy = DopplerPolicy(3, seed=0)
    train(policy, g, 1, episodes=20, batch=2)
    log = train(policy, g, 2, episodes=16, eval_every=2, batch=2, self_imitation=1.0)
    sim = make_simulator(g)
    assert sim(policy.place(g)) == log.best <= log.start_greedy
    # the cheapest-episode trace only goes down and includes the greedy checkpoints
    cheapest = [c for _, c in log.cheapest]
    assert cheapest == sorted(cheapest, reverse=True) and cheapest[-1] <= log.best
    assert [h["stage"] for h in policy.history] == [1, 2]
    assert policy.history[-1]["options"]["self_imitation"] == 1.0


def test_stage2_batch_advantage_time_limit_and_options() -> None:
    g = diamond_ladder(4, 6)
    policy = DopplerPolicy(3, seed=0)
    train(policy, g, 1, episodes=20, batch=4, keep_best=True)
    log = train(
        policy,
        g,
        2,
        episodes=16,
        eval_every=2,
        batch=4,
        eps=0.05,
        advantage="batch",
        gamma=1.0,
        self_imitation=2.0,
        clip=1.0,
        entropy=1e-3,
    )
    sim = make_simulator(g)
    assert log.episodes == 16
    assert sim(policy.place(g)) == log.best <= log.start_greedy
    opts = policy.history[-1]["options"]
    assert opts["advantage"] == "batch" and opts["gamma"] == 1.0 and opts["clip"] == 1.0
    assert opts["entropy"] == 1e-3
    # a spent time budget stops the stage before its first update
    stopped = train(policy, g, 2, episodes=40, time_limit=0.0, advantage="batch", batch=4)
    assert stopped.episodes == 0
    with pytest.raises(CompileError, match="advantage"):
        train(policy, g, 2, episodes=4, advantage="mean")


def test_polish_hands_the_cheapest_episode_to_greedy_decoding() -> None:
    """With wide exploration the cheapest episode is rarely the greedy one; polishing imitates
    it until greedy decoding costs no more."""
    g = diamond_ladder(4, 6)
    policy = DopplerPolicy(3, seed=0)
    # a time limit far beyond the episodes' needs, so neither the 24 episodes nor polishing are
    # cut short by a loaded machine (polishing stops once greedy decoding matches)
    log = train(policy, g, 2, episodes=24, eps=0.5, batch=4, polish=0.99, seed=3, time_limit=3000)
    cheapest = log.cheapest[-1][1]
    assert log.polish_updates > 0
    assert make_simulator(g)(policy.place(g)) == log.best <= cheapest
    assert policy.history[-1]["polish_updates"] == log.polish_updates
    for bad in (-0.1, 1.0):
        with pytest.raises(CompileError, match="polish"):
            train(policy, g, 2, episodes=4, polish=bad)


def test_side_by_side_cancels_drift_between_rounds() -> None:
    """A machine whose speed changes from round to round (but not within one) still gives the
    exact cost ratios; the order within a round rotates."""
    calls: list[int] = []

    def drifting(assignment: list[int]) -> float:
        calls.append(assignment[0])
        return (1 + assignment[0]) * (1.0 + 0.5 * ((len(calls) - 1) // 3))

    ratios = side_by_side([drifting], [[[0]], [[1]], [[3]]], rounds=4)
    assert ratios == [1.0, 2.0, 4.0]
    assert calls[:6] == [0, 1, 3, 1, 3, 0]


def test_choose_devices_picks_the_measured_cheapest_device_count() -> None:
    g = diamond_ladder(4, 6)
    policy = DopplerPolicy(4, seed=0)

    def two_is_best(assignment: list[int]) -> float:  # e.g. logical devices sharing 2 cores
        return 1.0 + abs(len(set(assignment)) - 2)

    log = train(policy, g, 3, episodes=4, batch=2, oracle=two_is_best, choose_devices=2)
    assert policy.active == log.active == 2
    assert log.device_ratios[2] < log.device_ratios[4] == 1.0
    assert set(policy.place(g)) <= {0, 1}
    assert policy.history[-1]["active_devices"] == 2
    assert policy.history[-1]["options"]["choose_devices"] == 2
    with pytest.raises(CompileError, match="rounds"):
        train(policy, g, 3, episodes=2, oracle=two_is_best, confirm=-1)
    # even random rollouts place on those devices only
    for seed in range(3):
        assert set(policy.decode(g, eps=1.0, seed=seed).assignment) <= {0, 1}


def test_confirm_rematch_rejects_a_lucky_checkpoint() -> None:
    """An oracle that flatters each assignment the first time it sees it: the best checkpoint
    of training measured cheaper than the start only by luck, and the rematch finds that out."""
    g = diamond_ladder(4, 6)
    policy = DopplerPolicy(3, seed=0)
    train(policy, g, 1, episodes=20, batch=2)
    start = policy.place(g)
    seen: set[tuple[int, ...]] = set()

    def flattering(assignment: list[int]) -> float:
        key = tuple(assignment)
        true = 1.0 + sum(a != b for a, b in zip(assignment, start))
        lucky = key not in seen
        seen.add(key)
        return true * (0.1 if lucky and key != tuple(start) else 1.0)

    # a greedy decode after every update, so some checkpoint meets a new, flattered assignment
    log = train(
        policy, g, 3, episodes=24, batch=2, eps=0.5, oracle=flattering, confirm=3, eval_every=1
    )
    assert log.best < log.start_greedy and log.confirm_ratio is not None
    assert log.confirm_ratio > 1.0
    assert policy.place(g) == start


@pytest.mark.parametrize(("key", "legacy"), [("device_features", 5), ("node_noise", 0)])
def test_older_policy_files_still_load(
    tmp_path: Path, chain_mm: PlaceGraph, key: str, legacy: int
) -> None:
    """Files written before the co-parent device feature or the random node features (config
    without that key) load with the value they were trained with and decode as before."""
    from einrel.place.doppler.model import NetConfig

    old = DopplerPolicy(4, NetConfig(**{key: legacy}), seed=1)
    path = old.save(tmp_path / "old.pt")
    payload = torch.load(path, weights_only=True)
    del payload["config"][key]
    torch.save(payload, path)
    loaded = load_policy(path, 4)
    assert getattr(loaded.config, key) == legacy
    assert loaded.place(chain_mm) == old.place(chain_mm)


def test_active_device_count_is_saved_and_checked(tmp_path: Path, chain_mm: PlaceGraph) -> None:
    policy = DopplerPolicy(4, seed=1)
    assert policy.active == 4
    policy.active = 2
    path = policy.save(tmp_path / "two.pt")
    loaded = load_policy(path, 4)
    assert loaded.active == 2 and loaded.place(chain_mm) == policy.place(chain_mm)
    assert set(loaded.place(chain_mm)) <= {0, 1}
    payload = torch.load(path, weights_only=True)
    del payload["active"]  # files written before it: every device
    torch.save(payload, path)
    assert load_policy(path, 4).active == 4
    payload["active"] = 5
    torch.save(payload, path)
    with pytest.raises(CompileError, match=r"two\.pt.*active devices 5"):
        load_policy(path, 4)


def test_random_node_features_break_symmetry() -> None:
    """Structurally identical ops get identical embeddings without random node features and
    distinct ones with them; the features are fixed by the graph's fingerprint."""
    from einrel.place.doppler.model import NetConfig, random_node_features

    edges = [(0, 1), (0, 2), (1, 3), (2, 3)]  # a diamond: ops 1 and 2 are interchangeable
    g = PlaceGraph((1.0, 2.0, 2.0, 1.0), (4.0, 8.0, 8.0, 4.0), tuple(edges), name="diamond")
    gt = GraphTensors(graph_features(g))
    with torch.no_grad():
        plain = DopplerPolicy(2, NetConfig(node_noise=0), seed=0).encoder(gt)
        noisy = DopplerPolicy(2, NetConfig(node_noise=8), seed=0).encoder(gt)
    torch.testing.assert_close(plain[1], plain[2], rtol=0, atol=0)
    assert not torch.allclose(noisy[1], noisy[2], rtol=1e-3, atol=1e-3)
    fp = fingerprint(g)
    np.testing.assert_array_equal(random_node_features(fp, 4), random_node_features(fp, 4))
    assert not np.array_equal(random_node_features(fp, 4), random_node_features("0" + fp[1:], 4))
    with pytest.raises(ValueError, match="node_noise"):
        DopplerPolicy(2, NetConfig(node_noise=99))


def test_discounted_returns() -> None:
    from einrel.place.doppler.losses import discounted as _discounted

    assert _discounted(2.0, 3, 1.0).tolist() == [2.0, 2.0, 2.0]
    assert _discounted(1.0, 2, 0.5).tolist() == [0.5, 1.0]


def test_retrain_writes_a_policy_with_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from einrel.place.doppler import retrain

    monkeypatch.setattr(retrain, "COMMITTED_EPISODES", {1: 8, 2: 8})
    f = tmp_path / "ladder.txt"
    g = diamond_ladder(3, 3)
    src = [a for a, _ in g.edges]
    dst = [b for _, b in g.edges]
    lines = [str(g.num_ops), "", ", ".join(map(str, src)), ", ".join(map(str, dst))]
    lines += [f"{c}, {m}" for c, m in zip(g.comp, g.comm)]
    f.write_text("\n".join(lines) + "\n")
    row = retrain.retrain(f, 3, 60.0, tmp_path / "out")
    assert [s["stage"] for s in row["stages"]] == [1, 2]
    assert row["stages"][0]["episodes"] == 8
    policy = load_policy(row["file"], 3)
    assert [h["stage"] for h in policy.history] == [1, 2]
    loaded = load_graph_file(f)
    assert row["doppler"] * 1e10 == pytest.approx(make_simulator(loaded)(policy.place(loaded)))
    # restarts train side by side in their own processes and keep the cheapest greedy policy
    best = retrain.retrain(f, 3, 3.0, tmp_path / "best", seed=5, restarts=2)
    runs = best["restarts"]
    assert [r["seed"] for r in runs] == [5, 6]
    assert best["ratio"] == min(r["ratio"] for r in runs) and Path(best["file"]).is_file()
    assert Path(best["file"]).parent == tmp_path / "best"
    with pytest.raises(CompileError, match="restart"):
        retrain.retrain(f, 3, 3.0, tmp_path / "none", restarts=0)
    # an earlier recipe and network configuration, as the history records
    old = retrain.retrain(f, 3, 3.0, tmp_path / "old", recipe="einrel-1", node_noise=0)
    assert old["recipe"] == "einrel-1" and old["node_noise"] == 0
    policy = load_policy(old["file"], 3)
    assert policy.config.node_noise == 0
    assert policy.history[-1]["options"]["self_imitation"] == 2.0
    with pytest.raises(CompileError, match="unknown recipe"):
        retrain.retrain(f, 3, 3.0, tmp_path / "none", recipe="nope")


def test_saved_and_loaded_policies_decode_identically(tmp_path: Path, chain_mm: PlaceGraph) -> None:
    policy = DopplerPolicy(4, seed=2)
    train(policy, chain_mm, 1, episodes=8, batch=2)
    path = policy.save(tmp_path / "p.pt")
    loaded = load_policy(path, 4)
    assert loaded.place(chain_mm) == policy.place(chain_mm)
    assert loaded.ndev == 4 and loaded.fingerprint == fingerprint(chain_mm)
    assert loaded.history == policy.history
    assert path.stat().st_size < 1_500_000
    half = load_policy(policy.save(tmp_path / "half.pt", half=True))
    assert half.place(chain_mm) == policy.place(chain_mm)  # saving in float16 rounded `policy`


def test_policy_device_count_mismatch(tmp_path: Path, chain_mm: PlaceGraph) -> None:
    path = DopplerPolicy(4).save(tmp_path / "four.pt")
    with pytest.raises(CompileError, match=r"four\.pt was trained for 4 devices, but 8"):
        load_policy(path, 8)
    with pytest.raises(CompileError, match="trained for 4 devices"):
        get_placer("doppler", policy=path)(chain_mm, 8, 0)
    with pytest.raises(EinrelError, match="not a Doppler policy"):
        (tmp_path / "junk.pt").write_text("junk")
        load_policy(tmp_path / "junk.pt")
    with pytest.raises(EinrelError, match="no such policy"):
        load_policy(tmp_path / "missing.pt")


def test_every_placer_gives_a_valid_assignment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(placer, "SHORT_EPISODES", {1: 20, 2: 20})
    g = diamond_ladder()
    a = get_placer("doppler")(g, 3, 0)  # trained for this call, kept nowhere
    assert check_assignment(g, a, 3) == tuple(a)
    assert find_policy(fingerprint(g), 3) is None and not cache_dir().exists()
    names = ["round-robin", "random", "critical-path", "heft", "search", "doppler"]
    for name in [*names, "doppler+search"]:
        options: dict = {"budget_s": 0.2} if "search" in name else {}
        if "doppler" in name:
            options["cache"] = tmp_path / "policies"
        a = get_placer(name, **options)(g, 3, 0)
        assert check_assignment(g, a, 3) == tuple(a), name
    # the short policy trained for "doppler" was kept in the named folder and is found again
    assert find_policy(fingerprint(g), 3, [tmp_path / "policies"]) is not None


def test_committed_policies_match_the_released_graphs() -> None:
    for stem, ndev in GRAPHS.items():
        g = load_graph_file(DATA / f"{stem}.txt")
        path = find_policy(fingerprint(g), ndev, [POLICY_DIR])
        assert path is not None, stem
        policy = policy_for(g, ndev, train_missing=False)
        assert policy.ndev == ndev and fingerprint(g) in policy.graphs
        a = policy.place(g, ndev)
        assert check_assignment(g, a, ndev) == tuple(a)
