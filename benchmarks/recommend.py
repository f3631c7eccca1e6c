"""Collaborative filtering side by side: einrel (einrel.workloads.recommend) and the same models
written by hand in torch, with BPR, sampled softmax (SSM) and SimCE.

Quality: matrix factorisation and LightGCN (2 layers) with each loss on MovieLens-100k, read
from an installed `recbole` package (`pip install --no-deps recbole`; when it is absent the
benchmark says so and uses a synthetic set of the same size), Recall@20 and NDCG@20 on a 20%
leave-out split, the same epochs, batches, negatives, learning rate and initial embeddings
for both systems. Speed: MF with each loss on a synthetic power-law set (`--users`,
`--items`, `--interactions`), einrel on er.cpu(2) against torch with 2 threads, steps
interleaved on the same batches; an epoch's time is the median step times the steps of an
epoch (an epoch at this size is hundreds of steps, each dominated by the dense Adam update
of the embedding tables).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/recommend.py

Writes benchmarks/results/recommend.json and recommend.png (`--quick`: small sizes);
`--replot` redraws the PNG from the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

import numpy as np

import common  # benchmarks/common.py: the script's own directory is on sys.path

LOSSES = ("bpr", "ssm", "simce")


class TorchTrainer:
    """The same model, loss, batches and negatives written in torch (autograd, torch.optim),
    with the interface of einrel.workloads.recommend.Trainer."""

    def __init__(self, data: Any, cfg: Any, seed: int) -> None:
        import torch

        from einrel.workloads import recommend as rec

        self.torch, self.rec, self.data, self.cfg = torch, rec, data, cfg
        init = rec.init_params(data, cfg.dim, seed)
        self.P = torch.nn.Parameter(torch.from_numpy(init["P"]))
        self.Q = torch.nn.Parameter(torch.from_numpy(init["Q"]))
        self.opt = torch.optim.Adam([self.P, self.Q], lr=cfg.lr)
        self.a = None
        if cfg.layers:  # the bipartite graph as one square adjacency over users, then items
            r = rec.graph_feed(data)
            n = data.users + data.items
            rows = np.concatenate([r.indices[0], r.indices[1] + data.users]).astype(np.int64)
            cols = np.concatenate([r.indices[1] + data.users, r.indices[0]]).astype(np.int64)
            vals = torch.from_numpy(np.concatenate([r.values, r.values]))
            a = torch.sparse_coo_tensor(torch.from_numpy(np.stack([rows, cols])), vals, (n, n))
            self.a = a.coalesce().to_sparse_csr()
        self.rng = np.random.default_rng(seed + 1)  # the draws einrel's Trainer makes
        self.users = rec.eval_users(data, 10_000, seed + 2)

    def embeddings(self) -> tuple[Any, Any]:
        if self.a is None:
            return self.P, self.Q
        e = total = self.torch.cat([self.P, self.Q])
        for _ in range(self.cfg.layers):
            e = self.torch.sparse.mm(self.a, e)
            total = total + e
        total = total / (self.cfg.layers + 1)
        return total[: self.data.users], total[self.data.users :]

    def step(self, pairs: np.ndarray) -> float:
        torch, cfg = self.torch, self.cfg
        feeds = self.rec.batch_feeds(pairs, cfg, self.data.items, self.rng)
        j = torch.from_numpy(feeds["Neg"].indices[3].astype(np.int64)).view(-1, cfg.negatives)
        u = torch.from_numpy(pairs[0].astype(np.int64))
        i = torch.from_numpy(pairs[1].astype(np.int64))
        ue, ie = self.embeddings()
        loss = self.rec.torch_loss(cfg, ue, ie, u, i, j)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def epoch(self, e: int = 0) -> float:
        order = self.rng.permutation(self.data.train.shape[1])
        b = self.cfg.batch
        steps = self.rec.steps_per_epoch(self.data, self.cfg)
        return float(
            np.mean(
                [self.step(self.data.train[:, order[k * b : (k + 1) * b]]) for k in range(steps)]
            )
        )

    def measure(self) -> dict[str, float]:
        with self.torch.no_grad():
            ue, ie = self.embeddings()
        return self.rec.evaluate(ue.detach().numpy(), ie.detach().numpy(), self.data, self.users)

    def close(self) -> None:
        pass


def trainers(data: Any, cfg: Any, seed: int) -> dict[str, Any]:
    import einrel as er
    from einrel.workloads import recommend as rec

    return {
        "einrel": rec.Trainer(data, cfg, er.cpu(2), seed),
        "torch": TorchTrainer(data, cfg, seed),
    }


def quality(data: Any, cfg: Any, epochs: int, seed: int, every: int) -> dict[str, Any]:
    """Both systems trained for `epochs` on the same batches and negatives."""
    from einrel.workloads.training import fit

    out = {}
    for name, t in trainers(data, cfg, seed).items():
        try:
            h = fit(name, epochs, t.epoch, t.measure, every, progress=False)
        finally:
            t.close()
        secs = h.seconds
        out[name] = {
            "history": h.to_dict(),
            "metrics": {k: v[-1] for k, v in h.metrics.items()},
            "epoch_s": statistics.median(secs[1:] or secs),
        }
    return out


def speed(data: Any, cfg: Any, steps: int, seed: int) -> dict[str, Any]:
    """Seconds per step of both systems, interleaved, after two warm-up steps; an epoch is
    that times the steps of an epoch."""
    from einrel.workloads import recommend as rec

    ts = trainers(data, cfg, seed)
    order = np.random.default_rng(seed).permutation(data.train.shape[1])
    b = cfg.batch
    batches = [data.train[:, order[k * b : (k + 1) * b]] for k in range(steps + 2)]
    times: dict[str, list[float]] = {k: [] for k in ts}
    for k, pairs in enumerate(batches):
        for name, t in ts.items():
            t0 = time.perf_counter()
            t.step(pairs)
            if k >= 2:
                times[name].append(time.perf_counter() - t0)
    for t in ts.values():
        t.close()
    per_epoch = rec.steps_per_epoch(data, cfg)
    return {
        name: {
            **common.summary(v),
            "steps_per_epoch": per_epoch,
            "epoch_s": statistics.median(v) * per_epoch,
        }
        for name, v in times.items()
    }


def plot(doc: dict[str, Any], path: Any) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    quality = doc["quality"]
    fig = Figure(figsize=(14, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 3, 1)
    for name, res in quality.items():
        h = res["einrel"]["history"]
        ax.plot(h["measured"], h["metrics"]["recall@20"], marker="o", ms=2, label=name)
    ax.set_title(f"einrel Recall@20 on {doc['quality_data']}", loc="left", fontsize="medium")
    ax.set_xlabel("epoch")
    ax.legend(fontsize="x-small")
    ax = fig.add_subplot(1, 3, 2)
    names = list(quality)
    x = np.arange(len(names))
    for k, (sys_name, color) in enumerate((("einrel", "#1f77b4"), ("torch", "#9e9e9e"))):
        vals = [quality[n][sys_name]["metrics"]["ndcg@20"] for n in names]
        ax.bar(x + 0.38 * k, vals, 0.38, color=color, label=sys_name)
    ax.set_xticks(x + 0.19)
    ax.set_xticklabels(names, fontsize="x-small", rotation=30)
    ax.set_title("NDCG@20 after the same epochs", loc="left", fontsize="medium")
    ax.legend(fontsize="small")
    ax = fig.add_subplot(1, 3, 3)
    speed = doc["speed"]
    names = list(speed)
    for k, (sys_name, color) in enumerate((("einrel", "#1f77b4"), ("torch", "#9e9e9e"))):
        vals = [speed[n][sys_name]["epoch_s"] for n in names]
        ax.bar(np.arange(len(names)) + 0.38 * k, vals, 0.38, color=color, label=sys_name)
        for i, v in enumerate(vals):
            ax.text(i + 0.38 * k, v, f"{v:.3g}", ha="center", va="bottom", fontsize="x-small")
    ax.set_xticks(np.arange(len(names)) + 0.19)
    ax.set_xticklabels(names, fontsize="small")
    ax.set_title("seconds per epoch (median step x steps)", loc="left", fontsize="medium")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    from einrel.workloads import interactions
    from einrel.workloads.recommend import RecConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=lambda s: int(float(s)), default=10**6)
    p.add_argument("--items", type=lambda s: int(float(s)), default=10**5)
    p.add_argument("--interactions", type=lambda s: int(float(s)), default=10**7)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--speed-steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    p.add_argument("--replot", action="store_true")
    p.add_argument(
        "--only", choices=("quality", "speed"), help="measure one part again, keep the other"
    )
    a = p.parse_args()
    name = "recommend_quick" if a.quick else "recommend"
    if a.replot:
        doc = json.loads((common.RESULTS / f"{name}.json").read_text())
        return plot(doc, common.RESULTS / f"{name}.png")
    if a.quick:
        a.users, a.items, a.interactions, a.epochs, a.speed_steps = 3000, 500, 30000, 3, 3
    import torch

    torch.set_num_threads(2)
    common.warn_env()
    ml = interactions.movielens_100k(seed=a.seed)
    if ml is None:
        print(
            "MovieLens-100k is not here (pip install --no-deps recbole to read it from its "
            "package); using a synthetic set of its size",
            file=sys.stderr,
        )
        ml = interactions.power_law(943, 1682, 100_000, seed=a.seed)
    doc: dict[str, Any] = {"machine": common.machine(2), "quality_data": repr(ml), "quality": {}}
    if a.only:
        common.keep_measured(name, doc, a.only)
    for layers in (0, 2) if a.only != "speed" else ():
        for loss in LOSSES:
            cfg = RecConfig(dim=64, batch=2048, negatives=1 if loss == "bpr" else 64, loss=loss,
                            layers=layers, lr=1e-3)  # fmt: skip
            key = f"{'lightgcn' if layers else 'mf'} {loss}"
            print(f"  quality: {key}", file=sys.stderr)
            doc["quality"][key] = quality(ml, cfg, a.epochs, a.seed, max(1, a.epochs // 10))
    t0 = time.perf_counter()
    big = interactions.power_law(a.users, a.items, a.interactions, seed=a.seed)
    doc["speed_data"] = f"{big!r} (made in {time.perf_counter() - t0:.0f} s)"
    if a.only != "quality":
        doc["speed"] = {}
    for loss in LOSSES if a.only != "quality" else ():
        cfg = RecConfig(dim=64, batch=8192, negatives=1 if loss == "bpr" else 64, loss=loss)
        print(f"  speed: mf {loss}", file=sys.stderr)
        doc["speed"][loss] = speed(big, cfg, a.speed_steps, a.seed)
    doc["verdict"] = {
        "ndcg@20": {k: v["einrel"]["metrics"]["ndcg@20"] for k, v in doc["quality"].items()},
        "recall@20": {k: v["einrel"]["metrics"]["recall@20"] for k, v in doc["quality"].items()},
        "einrel_speed_over_torch": {
            k: v["torch"]["epoch_s"] / v["einrel"]["epoch_s"] for k, v in doc["speed"].items()
        },
    }
    print(json.dumps(doc["verdict"]), file=sys.stderr)
    common.finish(name, doc, plot)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
