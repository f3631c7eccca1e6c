"""The GCN workload: its data, its gradients against torch autograd, the same training on
every engine, and a model that learns (the karate club, a stochastic block model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import einrel as er
from einrel.workloads import gcn, graphs
from einrel.workloads.training import plot_curves


def small(seed: int = 0) -> graphs.GraphData:
    return graphs.sbm(600, 6000, classes=3, features=8, train_per_class=10, seed=seed)


def test_block_model_data_is_a_symmetric_simple_graph_with_a_disjoint_split() -> None:
    d = small()
    u, v = d.edges
    assert (u != v).all() and d.edges.dtype == np.int32
    flat = u.astype(np.int64) * d.nodes + v
    assert (np.diff(flat) > 0).all()  # sorted, no repeated edge
    assert np.isin(v.astype(np.int64) * d.nodes + u, flat).all()  # both directions
    assert not (d.train & d.val).any() and not (d.train & d.test).any()
    assert (d.train | d.val | d.test).all() and d.train.sum() == 30
    same = (d.labels[u] == d.labels[v]).mean()
    assert same > 0.5  # the blocks hold most edges


def test_normalized_adjacency_is_the_dense_formula() -> None:
    d = small()
    idx, vals = graphs.normalized_adjacency(d.edges, d.nodes)
    a = np.zeros((d.nodes, d.nodes))
    a[d.edges[0], d.edges[1]] = 1
    a += np.eye(d.nodes)
    s = 1 / np.sqrt(a.sum(0))
    want = s[:, None] * a * s[None, :]
    got = np.zeros_like(want)
    got[idx[0], idx[1]] = vals
    np.testing.assert_allclose(got, want, rtol=1e-6)


def torch_grads(d: graphs.GraphData, params: dict[str, np.ndarray], hidden: int) -> list:
    """The loss and the gradients by torch autograd on the dense normalised adjacency."""
    idx, vals = graphs.normalized_adjacency(d.edges, d.nodes)
    a = torch.zeros((d.nodes, d.nodes), dtype=torch.float64)
    a[idx[0], idx[1]] = torch.from_numpy(vals.astype(np.float64))
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    x = torch.from_numpy(d.features.astype(np.float64))
    h = torch.relu(a.T @ (x @ p["W0"]) + p["b0"])  # out[v] = sum_u A[u, v] h[u]
    z = a.T @ (h @ p["W1"]) + p["b1"]
    train = torch.from_numpy(d.train)
    loss = torch.nn.functional.cross_entropy(z[train], torch.from_numpy(d.labels)[train])
    loss.backward()
    return [float(loss.detach()), *(p[k].grad.numpy() for k in gcn.PARAMS)]


@pytest.mark.parametrize("devices", [er.cpu(1), er.cpu(3), er.cpu(2, memory="256KiB")])
def test_gradients_equal_torch_autograd_on_every_engine(devices: er.Devices) -> None:
    d = small()
    model = gcn.build(d, hidden=8)
    grads = er.grad(model.loss, model.params)
    params = gcn.init_params(d, 8, 1)
    feeds = {**gcn.data_feeds(d), **params}
    want = torch_grads(d, params, 8)
    prog = er.compile([model.loss, *grads], devices=devices)
    got = prog(feeds)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=1e-6)  # float32 against float64
    prog.close()


def test_training_gives_the_same_weights_on_every_engine() -> None:
    d = small(1)
    runs = [
        gcn.train(d, 5, hidden=8, devices=devs, progress=False, every=5)
        for devs in (er.cpu(1), er.cpu(2), er.cpu(2, memory="256KiB"))
    ]
    for r in runs[1:]:
        for k in gcn.PARAMS:
            np.testing.assert_allclose(r.params[k], runs[0].params[k], rtol=1e-4, atol=1e-6)


def test_the_karate_club_is_learned() -> None:
    t = gcn.train(graphs.karate(), 100, hidden=16, progress=False, every=20)
    assert t.history.loss[-1] < 0.3 * t.history.loss[0]
    assert t.test_accuracy >= 0.9  # the GCN paper's demonstration separates the two clubs


def test_a_block_model_is_learned_with_dropout_and_the_curves_are_drawn(tmp_path) -> None:
    d = graphs.sbm(3000, 30000, seed=2)
    t = gcn.train(d, 60, hidden=16, dropout=0.3, progress=False, every=20)
    chance = 1 / d.classes
    assert t.test_accuracy > 3 * chance and t.history.measured == [20, 40, 60]
    png = plot_curves([t.history], tmp_path / "gcn.png", "gcn")
    assert png.stat().st_size > 10_000


def test_bad_options_are_refused() -> None:
    d = small()
    with pytest.raises(er.EinrelError, match="dropout"):
        gcn.build(d, dropout=1.0)
    with pytest.raises(er.EinrelError, match="optimizer"):
        gcn.build(d, optimizer="lbfgs")
