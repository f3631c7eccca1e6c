"""The knowledge-graph embedding workloads: their data and filtered ranks, TransE's and
DistMult's loss, gradients and constrained update against torch, the same training on every
engine, and learning."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import einrel as er
from einrel.workloads import kge, triples


def small() -> triples.Triples:
    return triples.synthetic(300, 6, 6000, groups=8, exponent=0.5, held=0.05, seed=0)


def test_synthetic_triples_are_distinct_and_split() -> None:
    d = small()
    every = np.concatenate([d.train, d.valid, d.test], axis=1).astype(np.int64)
    flat = (every[0] * d.relations + every[1]) * d.entities + every[2]
    assert np.unique(flat).size == flat.size
    assert d.valid.shape[1] == d.test.shape[1] == int(0.05 * flat.size)
    assert every[0].max() < d.entities and every[1].max() < d.relations


def test_pykeen_sets_are_read_from_an_installed_package(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "pykeen" / "datasets" / "nations"
    folder.mkdir(parents=True)
    (tmp_path / "pykeen" / "__init__.py").write_text("")
    (folder / "train.txt").write_text("a\tlikes\tb\nb\tlikes\tc\nc\thates\ta\n")
    (folder / "valid.txt").write_text("a\thates\tc\n")
    (folder / "test.txt").write_text("b\thates\ta\nz\tlikes\ta\n")  # z is unseen: dropped
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "pykeen", raising=False)
    d = triples.pykeen_dataset("nations")
    assert d is not None and (d.entities, d.relations) == (3, 2)
    assert d.test.tolist() == [[1], [0], [0]]  # b hates a, with sorted ids
    with pytest.raises(er.EinrelError, match="unknown triple set"):
        triples.pykeen_dataset("fb15k")


def test_filtered_ranks_on_a_hand_made_case() -> None:
    z = np.zeros((3, 0), np.int32)
    d = triples.Triples("hand", 5, 1, np.array([[0], [0], [1]], np.int32), z,
                        np.array([[0], [0], [2]], np.int32))  # fmt: skip
    table = np.array([[0.0, 9.0, 5.0, 5.0, 7.0]])  # scores of every entity, either side

    def scorer(fixed: np.ndarray, rel: np.ndarray, side: str) -> np.ndarray:
        return np.repeat(table, fixed.size, 0)

    ranks = triples.filtered_ranks(scorer, d, d.test)
    # tail of (0, 0, ·): entity 1 is a known true tail (filtered); 4 is better, 3 ties: 2.5
    # head of (·, 0, 2): true head 0 scores 0; 1, 2, 3, 4 all better: 5
    assert ranks.tolist() == [[2.5], [5.0]]
    m = triples.rank_metrics(ranks, hits=(3,))
    assert m == {"mrr": pytest.approx((1 / 2.5 + 1 / 5) / 2), "hits@3": 0.5}


@pytest.mark.parametrize("model", kge.MODELS)
def test_loss_gradients_and_update_match_torch(model: str) -> None:
    d = small()
    cfg = kge.KGEConfig(model=model, dim=8, batch=64, negatives=3, margin=2.0, lr=0.5,
                        optimizer="sgd")  # fmt: skip
    m = kge.build(d.entities, d.relations, cfg)
    params = kge.init_params(d.entities, d.relations, cfg.dim, 1)
    feeds = {**params, **kge.batch_feeds(d.train[:, :50], d.entities, 3, np.random.default_rng(2))}
    grads = er.grad(m.loss, m.params)
    prog = er.compile([m.loss, *grads, *m.update.params], devices=er.cpu(2))
    run = {**feeds, **m.update.init_state(), "lr": cfg.lr, **m.update.variables(1)}
    got = prog(run)
    prog.close()
    loss, dE, dR = kge.torch_twin(cfg, feeds, params)
    E = params["E"] - cfg.lr * dE  # SGD (Adam's first step divides by |g|, so a gradient
    E /= np.linalg.norm(E, axis=1, keepdims=True)  # that cancels to 1e-9 in float32 and to 0
    R = params["R"] - cfg.lr * dR  # in float64 moves a tenth of the rate in one only)
    for g, w in zip(got, [loss, dE, dR, E, R], strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got[3], axis=1), 1.0, rtol=1e-5)


def test_corruptions_replace_the_head_or_the_tail_by_another_entity() -> None:
    d = small()
    batch = d.train[:, :2000]
    h, o = kge.corrupt(batch, d.entities, 3, np.random.default_rng(0))
    h0, o0 = np.repeat(batch[0], 3), np.repeat(batch[2], 3)
    changed_h, changed_o = h != h0, o != o0
    assert np.all(changed_h ^ changed_o)  # exactly one side, never to itself
    assert 0.45 < changed_o.mean() < 0.55
    assert h.min() >= 0 and max(h.max(), o.max()) < d.entities


def test_training_gives_the_same_embeddings_on_every_engine() -> None:
    d = small()
    cfg = kge.KGEConfig(model="transe", dim=8, batch=1024, negatives=2, lr=1e-2)
    runs = [
        kge.train(d, cfg, 2, devices=devs, progress=False, eval_limit=50)
        for devs in (er.cpu(1), er.cpu(3), er.cpu(2, memory="96KiB"))
    ]
    for r in runs[1:]:
        for k in ("E", "R"):
            np.testing.assert_allclose(r.params[k], runs[0].params[k], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("model", kge.MODELS)
def test_embeddings_learn_the_held_out_triples(model: str) -> None:
    d = small()
    cfg = kge.KGEConfig(model=model, dim=16, batch=512, negatives=4, lr=2e-2)
    init = kge.init_params(d.entities, d.relations, 16, 0)
    before = kge.evaluate(model, init["E"], init["R"], d, d.test)
    after = kge.train(d, cfg, 10, progress=False, every=10).metrics
    assert before["mrr"] < 0.1 and after["mrr"] > 3 * before["mrr"]
    assert after["hits@10"] > 0.2


def test_bad_configurations_are_refused() -> None:
    with pytest.raises(er.EinrelError, match="model"):
        kge.KGEConfig(model="rotate")
    with pytest.raises(er.EinrelError, match="positive"):
        kge.KGEConfig(negatives=0)
    with pytest.raises(er.EinrelError, match="entities"):
        triples.synthetic(10, 2, 100)


def test_steps_write_new_tables_over_the_old_unless_someone_holds_them() -> None:
    """The Stepper hands the arrays a step replaced back to the next step (`run(out=...)`):
    two buffers per table alternate, the results equal fresh arrays', and a table the user
    holds is never written over."""
    d = small()
    cfg = kge.KGEConfig(model="distmult", dim=8, batch=512, negatives=2)
    batches = [d.train[:, k * 512 : (k + 1) * 512] for k in range(6)]
    recycled, fresh = (kge.Trainer(d, cfg, er.cpu(2), 0, eval_limit=10) for _ in range(2))
    seen = set()
    for b in batches:
        recycled.step(b)
        fresh.stepper.spare = []  # nothing to write over: new arrays every step
        fresh.step(b)
        seen.add(id(recycled.stepper.feeds["E"]))
    assert len(seen) == 2 and all(a is not None for a in recycled.stepper.spare)
    for k in ("E", "R"):
        np.testing.assert_array_equal(recycled.params[k], fresh.params[k])
    held = recycled.params["E"]
    kept = held.copy()
    for b in batches[:3]:
        recycled.step(b)
    np.testing.assert_array_equal(held, kept)
    recycled.close()
    fresh.close()
