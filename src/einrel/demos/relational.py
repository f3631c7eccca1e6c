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


def gcn_check(devices: int, seed: int) -> tuple[list[Any], list[Any], list[Any], list[str]]:
    """Compiled, reference and torch-autograd loss and gradients of the GCN on a small SBM."""
    from .. import compile as er_compile
    from ..devices import cpu
    from ..frontend.autodiff import grad
    from ..workloads import gcn, graphs

    d = graphs.sbm(2000, 20000, seed=seed)
    model = gcn.build(d, hidden=16)
    outs = [model.loss, *grad(model.loss, model.params)]
    params = gcn.init_params(d, 16, seed)
    feeds = {**gcn.data_feeds(d), **params}
    prog = er_compile(outs, devices=cpu(devices), progress=False)
    try:
        got = prog(feeds)
    finally:
        prog.close()
    ref = evaluate(outs, feeds)
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


DEMOS = {"gcn": RelationalDemo("GCN on a 5000-node block model", gcn_check, gcn_train, "test")}


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
