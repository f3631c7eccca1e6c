"""`einrel demo --workload gcn`: a relational workload at a small size, checked and trained.

The demo builds the workload's training step, checks its loss and gradients (compiled for
`er.cpu(n)`) against the reference interpreter and against torch autograd on the dense
equivalent in float64, trains it for some epochs with a progress bar, prints the held-out
metric and writes the training curves. A failed check exits non-zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from ..frontend.reference import evaluate
from ..workloads import max_rel_error

TOLERANCE = 1e-4  # float32 against float64 and against the float32 reference: summation order


@dataclass(frozen=True)
class RelationalDemo:
    """What a relational workload gives the demo: the gradient check and the training run."""

    title: str
    check: Callable[[int, int], tuple[list[Any], list[Any], list[Any], list[str]]]
    train: Callable[[int, int, bool], Any]
    metric: str


def _compiled_and_reference(outs: list[Any], feeds: dict[str, Any], devices: int) -> tuple:
    from .. import compile as er_compile
    from ..devices import cpu

    prog = er_compile(outs, devices=cpu(devices), progress=False)
    try:
        got = prog(feeds)
    finally:
        prog.close()
    return got, evaluate(outs, feeds)


def gcn_check(devices: int, seed: int) -> tuple[list[Any], list[Any], list[Any], list[str]]:
    """Compiled, reference and torch-autograd loss and gradients of the GCN on a small SBM."""
    from ..frontend.autodiff import grad
    from ..workloads import gcn, graphs

    d = graphs.sbm(2000, 20000, seed=seed)
    model = gcn.build(d, hidden=16)
    outs = [model.loss, *grad(model.loss, model.params)]
    params = gcn.init_params(d, 16, seed)
    feeds = {**gcn.data_feeds(d), **params}
    got, ref = _compiled_and_reference(outs, feeds, devices)
    idx, vals = graphs.normalized_adjacency(d.edges, d.nodes)
    rows_v = torch.from_numpy(np.stack([idx[1], idx[0]]).astype(np.int64))  # out[v] = sum_u
    vals64 = torch.from_numpy(vals.astype(np.float64))
    a = torch.sparse_coo_tensor(rows_v, vals64, (d.nodes,) * 2, check_invariants=True)
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    x = torch.from_numpy(d.features.astype(np.float64))
    h = torch.relu(torch.sparse.mm(a, x @ p["W0"]) + p["b0"])
    z = torch.sparse.mm(a, h @ p["W1"]) + p["b1"]
    train = torch.from_numpy(d.train)
    loss = torch.nn.functional.cross_entropy(z[train], torch.from_numpy(d.labels)[train])
    loss.backward()
    want = [loss.detach().numpy(), *(np.asarray(p[k].grad) for k in gcn.PARAMS)]
    return got, ref, want, ["loss", *(f"d{k}" for k in gcn.PARAMS)]


def gcn_train(devices: int, seed: int, progress: bool) -> Any:
    from ..devices import cpu
    from ..workloads import gcn, graphs

    d = graphs.sbm(5000, 50000, seed=seed)
    return gcn.train(d, 60, hidden=16, devices=cpu(devices), seed=seed, progress=progress, every=10)


def mf_check(devices: int, seed: int) -> tuple[list[Any], list[Any], list[Any], list[str]]:
    """LightGCN with SimCE on a small power-law set: one step's loss and gradients."""
    from ..frontend.autodiff import grad
    from ..workloads import interactions
    from ..workloads import recommend as rec

    d = interactions.power_law(1000, 300, 20000, seed=seed)
    cfg = rec.RecConfig(dim=16, batch=256, negatives=8, loss="simce", layers=2, margin=0.1)
    model = rec.build(d, cfg)
    outs = [model.loss, *grad(model.loss, model.params)]
    params = rec.init_params(d, cfg.dim, seed)
    rng = np.random.default_rng(seed)
    feeds = {
        **params,
        "R": rec.graph_feed(d),
        **rec.batch_feeds(d.train[:, :256], cfg, d.items, rng),
    }
    got, ref = _compiled_and_reference(outs, feeds, devices)
    want = rec.torch_twin(d, cfg, feeds, params)
    return got, ref, want, ["loss", "dP", "dQ"]


def mf_train(devices: int, seed: int, progress: bool) -> Any:
    from ..devices import cpu
    from ..workloads import interactions
    from ..workloads import recommend as rec

    d = interactions.power_law(5000, 1000, 100_000, seed=seed)
    cfg = rec.RecConfig(dim=32, batch=1024, negatives=16, loss="simce", lr=1e-2)
    return rec.train(d, cfg, 10, devices=cpu(devices), seed=seed, progress=progress, every=2)


def kge_check(devices: int, seed: int) -> tuple[list[Any], list[Any], list[Any], list[str]]:
    """TransE on a small synthetic triple set: one step's loss and gradients."""
    from ..frontend.autodiff import grad
    from ..workloads import kge, triples

    d = triples.synthetic(2000, 20, 20000, seed=seed)
    cfg = kge.KGEConfig(model="transe", dim=16, batch=512, negatives=4)
    model = kge.build(d.entities, d.relations, cfg)
    params = kge.init_params(d.entities, d.relations, cfg.dim, seed)
    rng = np.random.default_rng(seed)
    feeds = {**params, **kge.batch_feeds(d.train[:, :500], d.entities, cfg.negatives, rng)}
    got, ref = _compiled_and_reference(
        [model.loss, *grad(model.loss, model.params)], feeds, devices
    )
    return got, ref, kge.torch_twin(cfg, feeds, params), ["loss", "dE", "dR"]


def kge_train(devices: int, seed: int, progress: bool) -> Any:
    from ..devices import cpu
    from ..workloads import kge, triples

    d = triples.synthetic(5000, 20, 100_000, seed=seed)
    cfg = kge.KGEConfig(model="transe", dim=32, batch=2048, negatives=4, lr=1e-2)
    return kge.train(d, cfg, 10, cpu(devices), seed, progress, every=2, eval_limit=500)


def xc_check(devices: int, seed: int) -> tuple[list[Any], list[Any], list[Any], list[str]]:
    """Label hashing on a small multi-label set: loss, gradients and every label's score."""
    from ..frontend.autodiff import grad
    from ..workloads import labels, xc

    d = labels.synthetic(2000, 1000, 4096, seed=seed)
    cfg = xc.XCConfig(hashes=4, buckets=50, hidden=16, batch=128)
    model = xc.build(d, cfg)
    params = xc.init_params(d, cfg, seed)
    hashes = labels.label_hashes(d.labels, cfg.hashes, cfg.buckets, cfg.seed)
    rows = d.train.take(np.arange(cfg.batch))
    feeds = {**params, "X": xc.features_feed(rows), "T": xc.targets_feed(rows, hashes),
             "H": xc.hash_feed(hashes)}  # fmt: skip
    outs = [model.loss, *grad(model.loss, model.params), model.scores]
    got, ref = _compiled_and_reference(outs, feeds, devices)
    want = xc.torch_twin(d, cfg, rows, params, hashes)
    return got, ref, want, ["loss", *(f"d{k}" for k in xc.PARAMS), "scores"]


def xc_train(devices: int, seed: int, progress: bool) -> Any:
    from ..devices import cpu
    from ..workloads import labels, xc

    d = labels.synthetic(20000, 5000, 2**14, seed=seed)
    cfg = xc.XCConfig(hashes=4, buckets=250, hidden=64, batch=512, lr=1e-2)
    return xc.train(d, cfg, 6, cpu(devices), seed, progress, every=2)


DEMOS = {
    "gcn": RelationalDemo("GCN on a 5000-node block model", gcn_check, gcn_train, "test"),
    "mf": RelationalDemo(
        "matrix factorisation with SimCE on 5000 users x 1000 items (power law); the gradient "
        "check on LightGCN",
        mf_check,
        mf_train,
        "recall@20",
    ),
    "kge": RelationalDemo(
        "TransE on 5000 entities x 20 relations (synthetic, 10^5 triples)",
        kge_check,
        kge_train,
        "mrr",
    ),
    "xc": RelationalDemo(
        "extreme classification of 5000 labels hashed 4 x 250 (synthetic, 20000 examples)",
        xc_check,
        xc_train,
        "p@1",
    ),
}


def relational_demo(
    workload: str, devices: int = 2, seed: int = 0, out: str | Path = "out", console: Any = None
) -> int:
    """Check, train and report workload `workload`; 0 when every check passed."""
    from ..workloads.training import plot_curves

    console = console or Console()
    demo = DEMOS[workload]
    console.print(f"[bold]einrel demo[/]: {demo.title}, er.cpu({devices})")
    got, ref, want, names = demo.check(devices, seed)
    ok = True
    for name, g, r, w in zip(names, got, ref, want):
        e_ref, e_torch = max_rel_error(g, r), max_rel_error(g, w)
        good = e_ref <= TOLERANCE and e_torch <= TOLERANCE
        ok &= good
        mark = "[green]ok[/]" if good else "[bold red]FAILED[/]"
        console.print(
            f"  {name:>6}: vs reference {e_ref:.1e}, vs torch autograd (float64) {e_torch:.1e} "
            f"{mark}"
        )
    trained = demo.train(devices, seed, console.is_terminal)
    hist = trained.history
    png = plot_curves([hist], Path(out) / f"{workload}_curves.png", demo.title)
    console.print(
        f"trained {hist.epochs[-1]} epochs (median {np.median(hist.seconds) * 1e3:.0f} ms "
        f"each): loss {hist.loss[0]:.4f} -> {hist.loss[-1]:.4f}, {demo.metric} "
        f"{hist.last(demo.metric):.4f}; curves in {png}"
    )
    console.print("[bold green]PASSED[/]" if ok else "[bold red]FAILED[/]")
    return 0 if ok else 1
