"""Extreme classification side by side: einrel's label-hashed model (einrel.workloads.xc, R
hashes into B buckets) against the full softmax, and both against the same models written by
hand in torch (torch.sparse CSR input layer, autograd, torch.optim.Adam).

At L = 10^4 labels all four train on the same synthetic multi-label set (power-law labels,
sparse features) with the same batches, initial weights and rate: precision@1 and @5 on
held-out examples (every label scored), seconds per epoch, parameter bytes and the einrel
step's peak bytes (its memory plan's high-water mark, summed over devices). L = 10^5 and
10^6 train the hashed model only (a full softmax's logits alone would be batch x L floats).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/xc.py

Writes benchmarks/results/xc.json and xc.png (`--quick`: small sizes); `--replot` redraws.
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


class TorchXC:
    """The same model, loss, batches and initial weights written in torch, with the
    interface of einrel.workloads.xc.Trainer."""

    def __init__(self, data: Any, cfg: Any, seed: int, eval_limit: int) -> None:
        import torch

        from einrel.workloads import labels, xc

        self.torch, self.data, self.cfg = torch, data, cfg
        init = xc.init_params(data, cfg, seed)
        self.p = {k: torch.nn.Parameter(torch.from_numpy(v)) for k, v in init.items()}
        self.opt = torch.optim.Adam(list(self.p.values()), lr=cfg.lr)
        self.hashes = torch.from_numpy(
            labels.label_hashes(data.labels, cfg.hashes, cfg.buckets, cfg.seed).astype(np.int64)
        )
        self.rng = np.random.default_rng(seed + 1)  # the batches einrel's Trainer draws
        self.test = data.test.take(np.arange(min(eval_limit, data.test.n)))

    def logits(self, rows: Any) -> Any:
        t = self.torch
        x = t.sparse_csr_tensor(
            t.from_numpy(rows.x_ptr.astype(np.int64)),
            t.from_numpy(rows.x_idx.astype(np.int64)),
            t.from_numpy(rows.x_val),
            (rows.n, self.data.features),
            check_invariants=False,  # built from sorted, in-range rows
        )
        h = t.relu(t.sparse.mm(x, self.p["W1"]) + self.p["b1"])
        W2 = self.p["W2"]
        z = (h @ W2.reshape(W2.shape[0], -1)).reshape(rows.n, *W2.shape[1:])
        return z + self.p["b2"]

    def step(self, rows: Any) -> float:
        t = self.torch
        logp = t.log_softmax(self.logits(rows), -1)
        n = t.from_numpy(rows.row_of(rows.y_ptr).astype(np.int64))
        share = t.from_numpy((1.0 / np.diff(rows.y_ptr)).astype(np.float32))[n]
        y = t.from_numpy(rows.y_idx.astype(np.int64))
        picked = logp[n[None, :], t.arange(self.cfg.hashes)[:, None], self.hashes[:, y]]
        loss = -(picked * share).sum() / (rows.n * self.cfg.hashes)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def epoch(self, e: int = 0) -> float:
        order = self.rng.permutation(self.data.train.n)
        b = self.cfg.batch
        steps = max(1, order.size // b)
        return float(np.mean([self.step(self.data.train.take(order[k * b : (k + 1) * b]))
                              for k in range(steps)]))  # fmt: skip

    def measure(self) -> dict[str, float]:
        from einrel.workloads.labels import precision_at

        t, parts = self.torch, []
        with t.no_grad():
            for lo in range(0, self.test.n, 256):
                rows = self.test.take(np.arange(lo, min(lo + 256, self.test.n)))
                p = t.softmax(self.logits(rows), -1)
                s = p[:, t.arange(self.cfg.hashes)[:, None], self.hashes].mean(1).numpy()
                parts.append((rows.n, precision_at(s, rows)))
        total = sum(n for n, _ in parts)
        return {k: sum(n * m[k] for n, m in parts) / total for k in parts[0][1]}

    def close(self) -> None:
        pass


def run(name: str, data: Any, cfg: Any, epochs: int, seed: int, eval_limit: int) -> dict:
    import einrel as er
    from einrel.workloads import xc
    from einrel.workloads.training import fit

    t: Any = (
        xc.Trainer(data, cfg, er.cpu(2), seed, eval_limit)
        if name == "einrel"
        else TorchXC(data, cfg, seed, eval_limit)
    )
    try:
        h = fit(name, epochs, t.epoch, t.measure, max(1, epochs // 3), progress=False)
        peak = sum(t.stepper.program.report.peak_bytes.values()) if name == "einrel" else None
    finally:
        t.close()
    return {
        "history": h.to_dict(),
        "metrics": {k: v[-1] for k, v in h.metrics.items()},
        "epoch_s": statistics.median(h.seconds),
        "step_peak_bytes": peak,
        "parameter_bytes": xc.parameter_bytes(data, cfg),
    }


def plot(doc: dict[str, Any], path: Any) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [(k, s, r) for k, v in doc["runs"].items() for s, r in v["systems"].items()]
    fig = Figure(figsize=(15, 4.4))
    FigureCanvasAgg(fig)
    labels_ = [f"{k}\n{s}" for k, s, _ in rows]
    colors = ["#1f77b4" if s == "einrel" else "#9e9e9e" for _, s, _ in rows]
    x = np.arange(len(rows))
    panels = [
        ("precision@1 (held out)", lambda r: r["metrics"]["p@1"]),
        ("precision@5 (held out)", lambda r: r["metrics"]["p@5"]),
        ("seconds per epoch", lambda r: r["epoch_s"]),
        ("output-layer MiB", lambda r: r["parameter_bytes"]["output_layer"] / 2**20),
    ]
    for i, (title, get) in enumerate(panels):
        ax = fig.add_subplot(1, 4, i + 1)
        vals = [get(r) for _, _, r in rows]
        ax.bar(x, vals, color=colors)
        for j, v in enumerate(vals):
            ax.text(j, v, f"{v:.3g}", ha="center", va="bottom", fontsize="x-small")
        ax.set_xticks(x)
        ax.set_xticklabels(labels_, fontsize=6, rotation=60)
        ax.set_title(title, loc="left", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    from einrel.workloads import labels
    from einrel.workloads.xc import XCConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    p.add_argument("--replot", action="store_true")
    a = p.parse_args()
    name = "xc_quick" if a.quick else "xc"
    if a.replot:
        doc = json.loads((common.RESULTS / f"{name}.json").read_text())
        return plot(doc, common.RESULTS / f"{name}.png")
    import torch

    torch.set_num_threads(2)
    common.warn_env()
    scale = 0.02 if a.quick else 1.0
    # (labels, examples, features, hashes, buckets, epochs, systems and their hashing)
    plans = [
        (10**4, 10**5, 2**15, [("mlh", 4, 500), ("full softmax", 1, 10**4)], a.epochs),
        (10**5, 3 * 10**5, 2**16, [("mlh", 4, 5000)], max(1, a.epochs // 2)),
        (10**6, 5 * 10**5, 2**17, [("mlh", 4, 8192)], 1),
    ]
    doc: dict[str, Any] = {"machine": common.machine(2), "runs": {}}
    runs_labels = []
    for L, n, feats, models, epochs in plans[:1] if a.quick else plans:
        t0 = time.perf_counter()
        data = labels.synthetic(
            max(2000, int(n * scale)), max(100, int(L * scale)), feats, seed=a.seed
        )
        made = time.perf_counter() - t0
        runs_labels.append(data.labels)
        for model, R, B in models:
            B = min(B, data.labels)
            cfg = XCConfig(hashes=R, buckets=B, hidden=128, batch=1024, lr=1e-2)
            key = f"L={data.labels} {model} R={R} B={B}"
            systems = ("einrel", "torch") if L <= 10**5 else ("einrel",)
            print(f"  {key}", file=sys.stderr)
            doc["runs"][key] = {
                "data": f"{data!r} (made in {made:.0f} s)",
                "config": repr(cfg),
                "size_ratio_BR_over_L": R * B / data.labels,
                "systems": {s: run(s, data, cfg, epochs, a.seed, 2000) for s in systems},
            }
            print(json.dumps({s: r["metrics"] for s, r in doc["runs"][key]["systems"].items()}),
                  file=sys.stderr)  # fmt: skip
    runs = doc["runs"]
    small = [k for k in runs if k.startswith(f"L={runs_labels[0]} ")]
    doc["verdict"] = {
        "precision": {k: v["systems"]["einrel"]["metrics"] for k, v in runs.items()},
        "einrel_speed_over_torch": {
            k: v["systems"]["torch"]["epoch_s"] / v["systems"]["einrel"]["epoch_s"]
            for k, v in runs.items() if "torch" in v["systems"]
        },
    }  # fmt: skip
    if len(small) == 2:
        mlh, full = (runs[k]["systems"]["einrel"] for k in small)
        doc["verdict"]["mlh_over_full"] = {
            "output_layer_bytes": mlh["parameter_bytes"]["output_layer"]
            / full["parameter_bytes"]["output_layer"],
            "model_bytes": mlh["parameter_bytes"]["model"] / full["parameter_bytes"]["model"],
            "step_peak_bytes": mlh["step_peak_bytes"] / full["step_peak_bytes"],
            "BR_over_L": runs[small[0]]["size_ratio_BR_over_L"],
            "p@1": (mlh["metrics"]["p@1"], full["metrics"]["p@1"]),
            "p@5": (mlh["metrics"]["p@5"], full["metrics"]["p@5"]),
        }
    print(json.dumps(doc["verdict"], indent=1), file=sys.stderr)
    common.finish(name, doc, plot)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
