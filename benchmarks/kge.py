"""Knowledge-graph embeddings side by side: einrel (einrel.workloads.kge) and PyKEEN's own
pipeline, TransE (L1) and DistMult with the same dimensions, epochs, batch, corruptions per
triple (head or tail, uniformly), margin ranking loss, Adam rate and unit-length entities.

Quality: Nations, Kinships and UMLS, read from the installed `pykeen` package (`pip install
pykeen`; when it is absent the benchmark says so and stops). Both systems' embeddings are
ranked by the same filtered evaluator (einrel.workloads.triples: realistic ranks, both sides);
PyKEEN's own evaluator's MRR is recorded next to it as a cross-check. Throughput: training
triples per second over the run (PyKEEN's `train_seconds`, einrel's epoch times on
er.cpu(2), and on er.cpu(1) over a tenth of the epochs).

Scale: a synthetic set (`--entities`, `--relations`, `--triples`), each system training on the
same slices of `--scale-steps` batches in interleaved rounds, PyKEEN through the SLCWA
training loop its pipeline uses; medians of the rounds.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/kge.py

Writes benchmarks/results/kge.json and kge.png (`--quick`: small sizes); `--replot` redraws.
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

MODELS = {"transe": "TransE", "distmult": "DistMult"}


def pykeen_parts(data: Any, cfg: Any, seed: int) -> tuple[Any, Any, Any]:
    """PyKEEN's model, optimiser and negative sampler for `cfg` (the entity constraint is the
    models' default; DistMult's relation regulariser is switched off, as einrel has none)."""
    import torch
    from pykeen.losses import MarginRankingLoss
    from pykeen.models import DistMult, TransE
    from pykeen.sampling import BasicNegativeSampler
    from pykeen.triples import CoreTriplesFactory
    from pykeen.utils import set_random_seed

    set_random_seed(seed)
    tf = CoreTriplesFactory(
        torch.from_numpy(data.train.T.astype(np.int64)), data.entities, data.relations
    )
    loss = MarginRankingLoss(margin=cfg.margin)
    if cfg.model == "transe":
        model = TransE(triples_factory=tf, embedding_dim=cfg.dim, scoring_fct_norm=1, loss=loss)
    else:
        model = DistMult(triples_factory=tf, embedding_dim=cfg.dim, regularizer=None, loss=loss)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sampler = BasicNegativeSampler(mapped_triples=tf.mapped_triples, num_negs_per_pos=cfg.negatives)
    return tf, model, (opt, sampler)


def pykeen_embeddings(model: Any) -> tuple[np.ndarray, np.ndarray]:
    e = model.entity_representations[0](indices=None).detach().numpy()
    r = model.relation_representations[0](indices=None).detach().numpy()
    return e, r


def pykeen_quality(data: Any, cfg: Any, epochs: int, seed: int) -> dict[str, Any]:
    """PyKEEN's pipeline on the same setting; its MRR by our evaluator and by its own."""
    import torch
    from pykeen.pipeline import pipeline
    from pykeen.triples import CoreTriplesFactory

    from einrel.workloads import kge

    def factory(a: np.ndarray) -> Any:
        return CoreTriplesFactory(
            torch.from_numpy(a.T.astype(np.int64)), data.entities, data.relations
        )

    kwargs: dict[str, Any] = {"embedding_dim": cfg.dim}
    kwargs.update({"scoring_fct_norm": 1} if cfg.model == "transe" else {"regularizer": None})
    res = pipeline(
        training=factory(data.train),
        validation=factory(data.valid),
        testing=factory(data.test),
        model=MODELS[cfg.model],
        model_kwargs=kwargs,
        loss="marginranking",
        loss_kwargs={"margin": cfg.margin},
        optimizer="adam",
        optimizer_kwargs={"lr": cfg.lr},
        negative_sampler="basic",
        negative_sampler_kwargs={"num_negs_per_pos": cfg.negatives},
        training_loop="slcwa",
        training_kwargs={"num_epochs": epochs, "batch_size": cfg.batch, "use_tqdm": False},
        evaluation_kwargs={"use_tqdm": False},
        random_seed=seed,
        device="cpu",
        use_tqdm=False,
    )
    e, r = pykeen_embeddings(res.model)
    ours = kge.evaluate(cfg.model, e, r, data, data.test)
    own = res.metric_results.get_metric("both.realistic.inverse_harmonic_mean_rank")
    return {
        "metrics": ours,
        "pykeen_evaluator_mrr": float(own),
        "train_s": float(res.train_seconds),
        "triples_per_s": data.train.shape[1] * epochs / float(res.train_seconds),
        "loss": [float(x) for x in res.losses],
    }


def einrel_quality(data: Any, cfg: Any, epochs: int, seed: int) -> dict[str, Any]:
    import einrel as er
    from einrel.workloads import kge

    run = kge.train(data, cfg, epochs, er.cpu(2), seed, progress=False, every=max(1, epochs // 10))
    secs = sum(run.history.seconds)
    return {
        "metrics": run.metrics,
        "history": run.history.to_dict(),
        "train_s": secs,
        "triples_per_s": data.train.shape[1] * epochs / secs,
        "compile_s": run.compile_s,
    }


def einrel_one_device(data: Any, cfg: Any, epochs: int, seed: int) -> float:
    """Training triples per second on er.cpu(1): a set this small gains nothing from a second
    worker but its per-task overhead (the results are the same on any device count)."""
    import einrel as er
    from einrel.workloads import kge

    run = kge.train(data, cfg, epochs, er.cpu(1), seed, progress=False, every=epochs)
    return data.train.shape[1] * epochs / sum(run.history.seconds)


def scale(data: Any, cfg: Any, steps: int, rounds: int, seed: int) -> dict[str, Any]:
    """Triples per second of both systems on the same slices of `steps` batches, one slice
    per round and system in turn, after a warm-up slice."""
    import torch
    from pykeen.training import SLCWATrainingLoop
    from pykeen.triples import CoreTriplesFactory

    import einrel as er
    from einrel.workloads import kge

    ein = kge.Trainer(data, cfg, er.cpu(2), seed, eval_limit=1)
    tf0, model, (opt, sampler) = pykeen_parts(data, cfg, seed)
    loop = SLCWATrainingLoop(model=model, triples_factory=tf0, optimizer=opt,
                             negative_sampler=sampler)  # fmt: skip
    order = np.random.default_rng(seed).permutation(data.train.shape[1])
    n = steps * cfg.batch
    times: dict[str, list[float]] = {"einrel": [], "pykeen": []}
    try:
        for k in range(rounds + 1):
            part = data.train[:, order[(k * n) % order.size :][:n]]
            t0 = time.perf_counter()
            for lo in range(0, n, cfg.batch):
                ein.step(part[:, lo : lo + cfg.batch])
            t1 = time.perf_counter()
            tf = CoreTriplesFactory(
                torch.from_numpy(part.T.astype(np.int64)), data.entities, data.relations
            )
            losses = loop.train(tf, num_epochs=k + 1, batch_size=cfg.batch, use_tqdm=False,
                                use_tqdm_batch=False, continue_training=k > 0)  # fmt: skip
            assert losses is not None and len(losses) == k + 1  # one more epoch was trained
            t2 = time.perf_counter()
            if k:
                times["einrel"].append(n / (t1 - t0))
                times["pykeen"].append(n / (t2 - t1))
    finally:
        ein.close()
    return {name: {"triples_per_s": statistics.median(v), "rounds": v} for name, v in times.items()}


def plot(doc: dict[str, Any], path: Any) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    q = doc["quality"]
    names = list(q)
    fig = Figure(figsize=(14, 4.2))
    FigureCanvasAgg(fig)
    x = np.arange(len(names))
    panels = [
        ("filtered MRR (same evaluator)", lambda r: r["metrics"]["mrr"]),
        ("training triples / s", lambda r: r["triples_per_s"]),
    ]
    for i, (title, get) in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1)
        for k, (sys_name, color) in enumerate((("einrel", "#1f77b4"), ("pykeen", "#9e9e9e"))):
            vals = [get(q[n][sys_name]) for n in names]
            ax.bar(x + 0.38 * k, vals, 0.38, color=color, label=sys_name)
        ax.set_xticks(x + 0.19)
        ax.set_xticklabels(names, fontsize="x-small", rotation=30)
        ax.set_title(title, loc="left", fontsize="medium")
        ax.legend(fontsize="small")
    ax = fig.add_subplot(1, 3, 3)
    s = doc.get("scale", {})
    names = list(s)
    for k, (sys_name, color) in enumerate((("einrel", "#1f77b4"), ("pykeen", "#9e9e9e"))):
        vals = [s[n][sys_name]["triples_per_s"] for n in names]
        ax.bar(np.arange(len(names)) + 0.38 * k, vals, 0.38, color=color, label=sys_name)
        for j, v in enumerate(vals):
            ax.text(j + 0.38 * k, v, f"{v:.3g}", ha="center", va="bottom", fontsize="x-small")
    ax.set_xticks(np.arange(len(names)) + 0.19)
    ax.set_xticklabels(names, fontsize="small")
    ax.set_title(f"triples / s at scale: {doc.get('scale_data', '')[:40]}", loc="left",
                 fontsize="small")  # fmt: skip
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    import importlib.util

    from einrel.workloads import triples
    from einrel.workloads.kge import KGEConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--entities", type=lambda s: int(float(s)), default=10**6)
    p.add_argument("--relations", type=int, default=1000)
    p.add_argument("--triples", type=lambda s: int(float(s)), default=10**7)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--scale-batch", type=int, default=32768)
    p.add_argument("--scale-steps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    p.add_argument("--replot", action="store_true")
    p.add_argument(
        "--only", choices=("quality", "scale"), help="measure one part again, keep the other"
    )
    a = p.parse_args()
    name = "kge_quick" if a.quick else "kge"
    if a.replot:
        doc = json.loads((common.RESULTS / f"{name}.json").read_text())
        return plot(doc, common.RESULTS / f"{name}.png")
    if importlib.util.find_spec("pykeen") is None:
        sys.exit(
            "pykeen is not installed (pip install pykeen): its datasets and pipeline are the peer"
        )
    if a.quick:
        a.entities, a.relations, a.triples, a.epochs, a.scale_batch = 5000, 20, 50_000, 3, 1024
    import torch

    torch.set_num_threads(2)
    common.warn_env()
    doc: dict[str, Any] = {"machine": common.machine(2), "epochs": a.epochs, "quality": {}}
    if a.only:
        common.keep_measured(name, doc, a.only)
    sets = triples.PYKEEN_SETS[:1] if a.quick else triples.PYKEEN_SETS
    sets = () if a.only == "scale" else sets
    for set_name in sets:
        data = triples.pykeen_dataset(set_name)
        assert data is not None
        for model in MODELS:
            cfg = KGEConfig(model=model, dim=64, batch=256, negatives=4, lr=1e-2)
            key = f"{model} {set_name}"
            print(f"  quality: {key}", file=sys.stderr)
            doc["quality"][key] = {
                "config": repr(cfg),
                "einrel": einrel_quality(data, cfg, a.epochs, a.seed),
                "pykeen": pykeen_quality(data, cfg, a.epochs, a.seed),
                "einrel_cpu1_triples_per_s": einrel_one_device(
                    data, cfg, max(1, a.epochs // 10), a.seed
                ),
            }
    if a.only != "quality":
        t0 = time.perf_counter()
        big = triples.synthetic(a.entities, a.relations, a.triples, seed=a.seed)
        doc["scale_data"] = f"{big!r} (made in {time.perf_counter() - t0:.0f} s)"
        doc["scale"] = {}
        for model in MODELS:
            cfg = KGEConfig(model=model, dim=64, batch=a.scale_batch, negatives=4, lr=1e-2)
            print(f"  scale: {model}", file=sys.stderr)
            run = scale(big, cfg, a.scale_steps, a.rounds, a.seed)
            doc["scale"][model] = {"config": repr(cfg), **run}
    q, s = doc["quality"], doc["scale"]
    doc["verdict"] = {
        "mrr_minus_pykeen": {k: v["einrel"]["metrics"]["mrr"] - v["pykeen"]["metrics"]["mrr"]
                             for k, v in q.items()},
        "throughput_over_pykeen": {k: v["einrel"]["triples_per_s"] / v["pykeen"]["triples_per_s"]
                                   for k, v in q.items()},
        "throughput_over_pykeen_cpu1": {
            k: v["einrel_cpu1_triples_per_s"] / v["pykeen"]["triples_per_s"] for k, v in q.items()
        },
        "scale_throughput_over_pykeen": {
            k: v["einrel"]["triples_per_s"] / v["pykeen"]["triples_per_s"] for k, v in s.items()
        },
    }  # fmt: skip
    print(json.dumps(doc["verdict"], indent=1), file=sys.stderr)
    common.finish(name, doc, plot)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
