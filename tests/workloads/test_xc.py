"""Extreme classification with label hashing: the data, hashes and precision@k, the loss,
gradients and label scores against torch, the same training on every engine, and learning."""

from __future__ import annotations

import numpy as np
import pytest

import einrel as er
from einrel.workloads import labels, xc


def small() -> labels.MultiLabel:
    return labels.synthetic(3000, 400, 2048, seed=0)


def test_synthetic_rows_and_take() -> None:
    d = small()
    assert d.train.n + d.test.n == 3000
    for rows in (d.train, d.test):
        assert rows.x_ptr[-1] == rows.x_idx.size and rows.y_ptr[-1] == rows.y_idx.size
        np.testing.assert_allclose(np.add.reduceat(rows.x_val**2, rows.x_ptr[:-1]), 1.0, rtol=1e-5)
    sub = d.train.take(np.array([5, 2]))
    for k, n in enumerate((5, 2)):
        lo, hi = d.train.y_ptr[n], d.train.y_ptr[n + 1]
        assert sub.y_idx[sub.y_ptr[k] : sub.y_ptr[k + 1]].tolist() == d.train.y_idx[lo:hi].tolist()
        lo, hi = d.train.x_ptr[n], d.train.x_ptr[n + 1]
        assert sub.x_idx[sub.x_ptr[k] : sub.x_ptr[k + 1]].tolist() == d.train.x_idx[lo:hi].tolist()


def test_label_hashes_spread_labels_and_differ() -> None:
    h = labels.label_hashes(10_000, 3, 64, seed=1)
    assert h.shape == (3, 10_000) and h.min() == 0 and h.max() == 63
    counts = np.bincount(h[0], minlength=64)
    assert counts.min() > 100 and counts.max() < 220  # about 156 a bucket
    assert (h[0] != h[1]).mean() > 0.9
    assert labels.label_hashes(50, 1, 50).tolist() == [list(range(50))]  # full softmax
    with pytest.raises(er.EinrelError, match="buckets"):
        labels.label_hashes(50, 2, 0)


def test_precision_at_k_on_a_hand_made_case() -> None:
    z = np.zeros(0, np.float32)
    rows = labels.Rows(np.array([0, 0, 0]), z.astype(np.int32), z, np.array([0, 1, 3]),
                       np.array([2, 0, 4], np.int32))  # fmt: skip
    scores = np.array([[0.1, 0.2, 0.9, 0.3, 0.0, 0.5], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]])
    m = labels.precision_at(scores, rows, ks=(1, 5))
    assert m["p@1"] == pytest.approx(0.5 * (1 + 1))  # label 2 first; label 0 first
    assert m["p@5"] == pytest.approx(0.5 * (1 / 5 + 2 / 5))


@pytest.mark.parametrize("hashes,buckets", [(3, 16), (1, 400)])
def test_loss_gradients_and_scores_match_torch(hashes: int, buckets: int) -> None:
    d = small()
    cfg = xc.XCConfig(hashes=hashes, buckets=buckets, hidden=8, batch=64)
    m = xc.build(d, cfg)
    params = xc.init_params(d, cfg, 1)
    hashes_ = labels.label_hashes(d.labels, hashes, buckets, cfg.seed)
    rows = d.train.take(np.arange(40))  # a short batch
    feeds = {**params, "X": xc.features_feed(rows), "T": xc.targets_feed(rows, hashes_),
             "H": xc.hash_feed(hashes_)}  # fmt: skip
    prog = er.compile([m.loss, *er.grad(m.loss, m.params), m.scores], devices=er.cpu(2))
    got = prog(feeds)
    prog.close()
    got[-1] = got[-1][: rows.n]
    for g, w in zip(got, xc.torch_twin(d, cfg, rows, params, hashes_), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)


def test_training_gives_the_same_weights_on_every_engine() -> None:
    d = small()
    cfg = xc.XCConfig(hashes=2, buckets=32, hidden=8, batch=512, lr=1e-2)
    runs = [
        xc.train(d, cfg, 2, devices=devs, progress=False, every=2, eval_limit=100)
        for devs in (er.cpu(1), er.cpu(3), er.cpu(2, memory="256KiB"))
    ]
    for r in runs[1:]:
        for k in xc.PARAMS:
            np.testing.assert_allclose(r.params[k], runs[0].params[k], rtol=1e-4, atol=1e-6)


def test_hashed_outputs_learn_the_labels_in_a_fifth_of_the_size() -> None:
    d = labels.synthetic(8000, 500, 2048, seed=2)
    cfg = xc.XCConfig(hashes=4, buckets=25, hidden=32, batch=256, lr=1e-2)
    popular = np.bincount(d.train.y_idx, minlength=d.labels)
    base = labels.precision_at(np.tile(popular, (d.test.n, 1)).astype(float), d.test)
    got = xc.train(d, cfg, 6, progress=False, every=6).metrics
    assert got["p@1"] > base["p@1"] + 0.3 and got["p@5"] > base["p@5"] + 0.05
    size = xc.parameter_bytes(d, cfg)["output_layer"]
    full = xc.parameter_bytes(d, xc.XCConfig(hashes=1, buckets=500, hidden=32))["output_layer"]
    assert size / full == pytest.approx(4 * 25 / 500)


def test_bad_configurations_are_refused() -> None:
    with pytest.raises(er.EinrelError, match="positive"):
        xc.XCConfig(hashes=0)
    with pytest.raises(er.EinrelError, match="keep"):
        labels.synthetic(10, 10, 10, keep=0.0)
