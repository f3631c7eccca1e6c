"""GCN training side by side: einrel on er.cpu(2), torch_geometric's GCNConv and a hand-written
torch.sparse model, on the same graph, split, initial weights, optimiser and epochs.

The model is the workload's (einrel.workloads.gcn): two layers, hidden 16, ReLU, no dropout (so
the three runs compute the same function from the same start), softmax cross entropy on the
training nodes, Adam at lr 0.01. Data: a stochastic block model of `--nodes` nodes and
`--edges` directed edges with 64 block-correlated features and 10 classes (fixed seed), 20
training nodes per class, 10% of the rest for validation, the rest for testing; and Zachary's
karate club. Each system runs in a process of its own: it trains for `--epochs` epochs (one
full-graph step each: forward, backward, update), timing each epoch, and reports the test
accuracy of the final weights and the peak resident set of training above the process's own
before any data existed. How memory grows: every system trains a few epochs with the edges
and with twice the edges, and the difference of the peaks per added edge is set against the
4·hidden bytes an E × d message tensor would cost.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/gcn.py

Writes benchmarks/results/gcn.json and gcn.png (training curves and per-system bars;
`--quick`: small sizes, gcn_quick.*); `--replot` redraws the PNG from the JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import common  # benchmarks/common.py: the script's own directory is on sys.path

SYSTEMS = ("einrel", "torch.sparse", "torch_geometric")
HIDDEN, LR = 16, 0.01


def make_data(nodes: int, edges: int, seed: int) -> Any:
    from einrel.workloads import graphs

    return graphs.karate(seed) if nodes == 0 else graphs.sbm(nodes, edges, seed=seed)


def torch_train(data: Any, epochs: int, system: str, every: int) -> Any:
    """The same GCN written in torch: torch.sparse CSR products, or torch_geometric GCNConv."""
    import torch

    from einrel.workloads import gcn, graphs
    from einrel.workloads.training import fit

    init = gcn.init_params(data, HIDDEN, 0)
    x = torch.from_numpy(data.features)
    y = torch.from_numpy(data.labels)
    train = torch.from_numpy(data.train)
    if system == "torch_geometric":
        from torch_geometric.nn import GCNConv

        convs = [
            GCNConv(x.shape[1], HIDDEN, cached=True),
            GCNConv(HIDDEN, data.classes, cached=True),
        ]
        for conv, w in zip(convs, ("W0", "W1")):
            conv.lin.weight.data = torch.from_numpy(init[w].T.copy())
        edge_index = torch.from_numpy(data.edges.astype(np.int64))
        params = [p for c in convs for p in c.parameters()]

        def forward() -> Any:
            h = torch.relu(convs[0](x, edge_index))
            return convs[1](h, edge_index)

    else:
        idx, vals = graphs.normalized_adjacency(data.edges, data.nodes)
        order = np.argsort(idx[1], kind="stable")  # rows: the target v
        crow = np.zeros(data.nodes + 1, np.int64)
        np.cumsum(np.bincount(idx[1], minlength=data.nodes), out=crow[1:])
        col = torch.from_numpy(idx[0][order].astype(np.int64))
        a = torch.sparse_csr_tensor(torch.from_numpy(crow), col, torch.from_numpy(vals[order]))
        ps = {k: torch.from_numpy(v.copy()).requires_grad_() for k, v in init.items()}
        params = list(ps.values())

        def forward() -> Any:
            h = torch.relu(torch.sparse.mm(a, x @ ps["W0"], "sum") + ps["b0"])
            return torch.sparse.mm(a, h @ ps["W1"], "sum") + ps["b1"]

    opt = torch.optim.Adam(params, lr=LR)

    def epoch(e: int) -> float:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(forward()[train], y[train])
        loss.backward()
        opt.step()
        return float(loss)

    def measure() -> dict[str, float]:
        with torch.no_grad():
            logits = forward().numpy()
        masks = {"val": data.val, "test": data.test}
        return {k: gcn.accuracy(logits, data, m) for k, m in masks.items() if m.any()}

    return fit(system, epochs, epoch, measure, every, progress=False)


def worker(a: argparse.Namespace) -> None:
    """One system's training run in its own process; prints a JSON line."""
    import torch

    torch.set_num_threads(2)
    import einrel as er
    from einrel.workloads import gcn

    if a.worker == "torch_geometric":
        import torch_geometric  # noqa: F401
    base = common.process_bytes()
    data = make_data(a.nodes, a.edges, a.seed)
    t0 = time.perf_counter()
    if a.worker == "einrel":
        common.reset_peak()
        trained = gcn.train(
            data, a.epochs, HIDDEN, LR, devices=er.cpu(2), every=a.every, progress=False
        )
        hist, extra = trained.history, {"compile_s": trained.compile_s}
    else:
        common.reset_peak()
        hist, extra = torch_train(data, a.epochs, a.worker, a.every), {}
    doc = {
        "history": hist.to_dict(),
        "test_accuracy": hist.last("test"),
        "epoch_s": statistics.median(hist.seconds[1:] or hist.seconds),
        "first_epoch_s": hist.seconds[0],
        "total_s": time.perf_counter() - t0,
        "peak_bytes": common.process_bytes("VmHWM") - base,
        "edges": int(data.edges.shape[1]),
        **extra,
    }
    print(json.dumps(doc, default=float))


def run(system: str, a: argparse.Namespace, nodes: int, edges: int, epochs: int) -> Any:
    cmd = [sys.executable, __file__, "--worker", system, "--nodes", str(nodes), "--edges"]
    cmd += [str(edges), "--epochs", str(epochs), "--every", str(a.every), "--seed", str(a.seed)]
    print(f"  {system}: {nodes} nodes, {edges} edges, {epochs} epochs", file=sys.stderr)
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{system} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def plot(doc: dict[str, Any], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    runs = doc["sbm"]
    fig = Figure(figsize=(15, 4.2))
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, 4, i + 1) for i in range(4)]
    for name, r in runs.items():
        h = r["history"]
        axes[0].plot(h["epochs"], h["loss"], label=name)
        axes[1].plot(h["measured"], h["metrics"]["test"], marker="o", ms=2, label=name)
    axes[0].set_title("training loss", loc="left", fontsize="medium")
    axes[1].set_title("test accuracy", loc="left", fontsize="medium")
    for ax in axes[:2]:
        ax.set_xlabel("epoch")
    axes[0].legend(fontsize="small")
    names = list(runs)
    colors = ["#1f77b4" if n == "einrel" else "#9e9e9e" for n in names]
    for ax, key, label, scale in (
        (axes[2], "epoch_s", "seconds per epoch (median)", 1.0),
        (axes[3], "peak_bytes", "peak MiB", 2**-20),
    ):
        vals = [runs[n][key] * scale for n in names]
        ax.bar(range(len(names)), vals, 0.6, color=colors)
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:.3g}", ha="center", va="bottom", fontsize="small")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, fontsize="small")
        ax.set_title(label, loc="left", fontsize="medium")
    fig.suptitle(f"GCN on {doc['shape']}", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nodes", type=lambda s: int(float(s)), default=10**6)
    p.add_argument("--edges", type=lambda s: int(float(s)), default=10**7)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    p.add_argument("--replot", action="store_true")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--only", choices=("memory",), help="measure the memory growth again")
    a = p.parse_args()
    if a.worker:
        return worker(a)
    name = "gcn_quick" if a.quick else "gcn"
    if a.replot:
        doc = json.loads((common.RESULTS / f"{name}.json").read_text())
        return plot(doc, common.RESULTS / f"{name}.png")
    if a.quick:
        a.nodes, a.edges, a.epochs = 5000, 50000, 30
    common.warn_env()
    systems = [s for s in SYSTEMS if s != "torch_geometric" or importlib.util.find_spec(s)]
    left_out = sorted(set(SYSTEMS) - set(systems))
    if left_out:
        print(f"left out (not installed): {left_out}; pip install 'einrel[bench]'", file=sys.stderr)
    if a.only:
        doc = common.keep_measured(name, {"machine": common.machine(2)}, a.only)
    else:
        doc = {
            "machine": common.machine(2),
            "shape": f"SBM N={a.nodes:.0e} E={a.edges:.0e}, 64 features, 10 classes, "
            f"hidden {HIDDEN}",
            "epochs": a.epochs,
            "left_out": left_out,
            "karate": {s: run(s, a, 0, 0, a.epochs) for s in systems},
            "sbm": {s: run(s, a, a.nodes, a.edges, a.epochs) for s in systems},
        }
    doc["memory_growth"] = {"message_bytes_per_edge": 4 * HIDDEN, "epochs": max(3, a.epochs // 10)}
    short = doc["memory_growth"]["epochs"]
    for s in systems:  # the same training with twice the edges: what an edge costs
        once = run(s, a, a.nodes, a.edges, short)
        twice = run(s, a, a.nodes, 2 * a.edges, short)
        added = twice["edges"] - once["edges"]
        doc["memory_growth"][s] = {
            "edges": [once["edges"], twice["edges"]],
            "peak_bytes": [once["peak_bytes"], twice["peak_bytes"]],
            "bytes_per_added_edge": (twice["peak_bytes"] - once["peak_bytes"]) / added,
        }
    e = doc["sbm"]["einrel"]
    peers = [s for s in systems if s != "einrel"]
    best = min(peers, key=lambda s: doc["sbm"][s]["epoch_s"])
    acc = {s: doc["sbm"][s]["test_accuracy"] for s in systems}
    doc["verdict"] = {
        "faster_peer": best,
        "einrel_speed_over_faster_peer": doc["sbm"][best]["epoch_s"] / e["epoch_s"],
        "target_speed_1x": doc["sbm"][best]["epoch_s"] >= e["epoch_s"],
        "test_accuracy": acc,
        "within_1_point_of_torch_geometric": (
            abs(acc["einrel"] - acc["torch_geometric"]) <= 0.01
            if "torch_geometric" in acc
            else None
        ),
        "karate_test_accuracy": {s: doc["karate"][s]["test_accuracy"] for s in systems},
        "bytes_per_added_edge": {
            s: doc["memory_growth"][s]["bytes_per_added_edge"] for s in systems
        },
    }
    print(json.dumps(doc["verdict"]), file=sys.stderr)
    common.finish(name, doc, plot)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
