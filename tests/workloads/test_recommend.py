"""The recommendation workloads: their data and metrics, every loss's gradients against torch
autograd (matrix factorisation and LightGCN), the same training on every engine, and learning."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import einrel as er
from einrel.workloads import interactions
from einrel.workloads import recommend as rec


def small() -> interactions.Interactions:
    return interactions.power_law(300, 120, 6000, seed=0)


def test_leave_out_holds_out_a_share_of_every_user() -> None:
    d = small()
    train = set(map(tuple, d.train.T))
    test = set(map(tuple, d.test.T))
    assert not train & test
    for a in (d.train, d.test):
        flat = a[0].astype(np.int64) * d.items + a[1]
        assert (np.diff(flat) > 0).all()  # sorted, distinct
    per_user = np.bincount(d.train[0], minlength=d.users) + np.bincount(
        d.test[0], minlength=d.users
    )
    held = np.bincount(d.test[0], minlength=d.users)
    busy = per_user >= 5
    assert np.all(held[busy] == np.floor(0.2 * per_user[busy]))


def test_power_law_fits_fewer_items_than_taste_groups() -> None:
    d = interactions.power_law(50, 10, 400, seed=1)
    assert d.items == 10 and d.train.shape[1] + d.test.shape[1] > 0
    assert d.train[1].max() < 10


def test_ranking_metrics_on_a_hand_made_case() -> None:
    d = interactions.Interactions(
        "hand", 1, 6, np.array([[0], [0]], np.int32), np.array([[0, 0], [3, 5]], np.int32)
    )
    scores = np.array([[9.0, 1.0, 2.0, 8.0, 3.0, 0.5]])  # item 0 is trained on: not ranked
    m = interactions.ranking_metrics(scores, np.array([0]), d, k=2)
    assert m["recall@2"] == 0.5  # top 2: items 3, 4; held out: 3 and 5
    assert m["ndcg@2"] == pytest.approx(1.0 / (1.0 + 1.0 / np.log2(3)))


def test_movielens_is_read_from_an_installed_recbole(tmp_path: Path, monkeypatch) -> None:
    pkg = tmp_path / "recbole"
    (pkg / "dataset_example" / "ml-100k").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    rows = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    rows += [f"{10 + u}\t{100 + (u * 7 + k) % 30}\t4\t0" for u in range(20) for k in range(6)]
    (pkg / "dataset_example" / "ml-100k" / "ml-100k.inter").write_text("\n".join(rows) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "recbole", raising=False)
    d = interactions.movielens_100k()
    assert d is not None and d.users == 20 and d.train.shape[1] + d.test.shape[1] == 120


@pytest.mark.parametrize("layers", [0, 1])
@pytest.mark.parametrize("loss", rec.LOSSES)
def test_every_loss_has_the_gradients_of_torch_autograd(loss: str, layers: int) -> None:
    d = small()
    cfg = rec.RecConfig(dim=8, batch=64, negatives=1 if loss == "bpr" else 5, loss=loss,
                        layers=layers, margin=0.05)  # fmt: skip
    model = rec.build(d, cfg)
    grads = er.grad(model.loss, model.params)
    params = rec.init_params(d, cfg.dim, 3)
    rng = np.random.default_rng(4)
    feeds = {**params, **rec.batch_feeds(d.train[:, :48], cfg, d.items, rng)}  # a short batch
    if layers:
        feeds["R"] = rec.graph_feed(d)
    prog = er.compile([model.loss, *grads], devices=er.cpu(2))
    got = prog(feeds, strict=False)
    prog.close()
    want = rec.torch_twin(d, cfg, feeds, params)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-7)


def test_training_gives_the_same_embeddings_on_every_engine() -> None:
    d = small()
    cfg = rec.RecConfig(dim=8, batch=256, negatives=4, loss="ssm", layers=1, lr=1e-2)
    runs = [
        rec.train(d, cfg, 2, devices=devs, progress=False, every=2)
        for devs in (er.cpu(1), er.cpu(3), er.cpu(2, memory="128KiB"))
    ]
    for r in runs[1:]:
        for k in ("P", "Q"):
            np.testing.assert_allclose(r.params[k], runs[0].params[k], rtol=1e-4, atol=1e-6)


def test_simce_matrix_factorisation_learns_held_out_items() -> None:
    d = small()
    cfg = rec.RecConfig(dim=16, batch=512, negatives=16, loss="simce", lr=1e-2)
    users = rec.eval_users(d, 1000, 0)
    params = rec.init_params(d, 16, 0)
    before = rec.evaluate(params["P"], params["Q"], d, users)
    after = rec.train(d, cfg, 8, progress=False, every=8).metrics
    assert after["recall@20"] > 1.5 * before["recall@20"] and after["ndcg@20"] > before["ndcg@20"]


def test_bad_configurations_are_refused() -> None:
    with pytest.raises(er.EinrelError, match="one negative"):
        rec.RecConfig(loss="bpr", negatives=4)
    with pytest.raises(er.EinrelError, match="loss"):
        rec.RecConfig(loss="hinge")
