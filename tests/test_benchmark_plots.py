"""The benchmarks' charts draw from their JSON results: each plotting function, given a tiny
synthetic result shaped like the one its script writes, saves a PNG."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A benchmark script as a module (its folder on sys.path, for `import common`)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG header: the file is a real image, not an empty one."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _timed(median: float) -> dict[str, Any]:
    runs = [median * f for f in (0.9, 1.0, 1.05, 1.3)]
    return {"median_s": median, "min_s": min(runs), "max_s": max(runs), "runs_s": runs}


def test_ffnn_plot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ffnn = _load("ffnn", monkeypatch)
    results = {k: _timed(t) for k, t in (("einrel", 0.5), ("numpy", 0.45), ("torch", 1.0))}
    results["dask rows=1024"] = _timed(0.6)
    doc = {
        "gemm_gflop": 170.0,
        "runs": 4,
        "workload": {"batch": 4096, "widths": [1024, 4096, 1024], "dtype": "float32"},
        "machine": {"threads": 2},
        "sgemm_peak": {"gflops": 430.0},
        "results": results,
        "verdict": {
            "faster_of_numpy_torch": "numpy",
            "einrel_over_faster_of_numpy_torch": 0.9,
            "best_dask": "dask rows=1024",
            "einrel_over_best_dask": 1.2,
            "einrel_fraction_of_sgemm_peak": 0.8,
        },
    }
    path = tmp_path / "ffnn.png"
    ffnn.plot(doc, path)
    width, height = _png_size(path)
    assert width > 600 and height > 250


def test_ray_overhead_plot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    ray_overhead = _load("ray_overhead", monkeypatch)
    overhead = [
        {"engine": e, "graph": g, "tasks": 100, "median_wall_s": w, "us_per_task": w * 1e4}
        for e, scale in (("einrel-ray", 1.0), ("plain-ray", 10.0))
        for g, w in (("chain", 0.02 * scale), ("wide", 0.03 * scale), ("pingpong", 0.2))
    ]
    overhead[2]["moves"] = 49
    doc = {
        "meta": {"cores": 2, "ray": "2.x", "load_avg_before": [1.0], "load_avg_after": [1.5]},
        "ffnn": {
            "batch": 1024,
            "widths": [256, 1024, 256],
            "cpu_wall_s": [0.3, 0.31, 0.35],
            "ray_wall_s": [0.33, 0.34, 0.4],
            "ratio_ray_over_cpu": 1.1,
            "bytes_equal": True,
        },
        "overhead": overhead,
    }
    path = tmp_path / "ray_overhead.png"
    ray_overhead.plot(doc, path)
    width, height = _png_size(path)
    assert width > 600 and height > 250


def test_decompose_plot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    decompose = _load("decompose", monkeypatch)
    rows = [
        {"workload": w, "ndev": n, "partitioner": p, "cost": 100.0 * (1 + k), "speedup_bound": n}
        for w in ("matmul_chain", "ffnn_train")
        for n in (2, 4)
        for k, p in enumerate(decompose.PARTITIONERS)
    ]
    path = tmp_path / "decompose.png"
    decompose.plot(rows, path)
    width, height = _png_size(path)
    assert width > 600 and height > 250


def test_sparse_plot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sparse = _load("sparse", monkeypatch)
    peak = {"peak_bytes": 1.2e9, "first_s": 3.0}
    rows = {"einrel": {**_timed(1.0), **peak}, "torch.sparse.mm": {**_timed(2.0), **peak}}
    budget = {"unconstrained_peak": 1.6e9, "budget": 4e8, "report_peak": {"0": 3.8e8, "1": 3.7e8}}
    doc = {
        "shapes": {"spmm": "N=1e6 E=1e7 d=64", "budget": "N=1e6 E=5e7 d=64"},
        "tasks": {
            "spmm": {"rows": rows, "bytes": {"csr": 1.3e8, "inputs": 5e8, "outputs": 5e8}},
            "budget": {"rows": {"einrel": {**_timed(7.0), **peak, **budget}}, "bytes": {}},
        },
    }
    path = tmp_path / "sparse.png"
    sparse.plot(doc, path)
    width, height = _png_size(path)
    assert width > 600 and height > 250


def test_sparse_benchmark_worker_runs_and_checks_itself(tmp_path: Path) -> None:
    """One einrel worker of benchmarks/sparse.py on a small relation: it times, reads its
    peak memory and samples its outputs, as the full run does."""
    import json
    import subprocess
    import sys

    sys.path.insert(0, str(BENCHMARKS))
    try:
        import sparse

        sparse.make_data(tmp_path, 300, 2000, 8)
    finally:
        sys.path.remove(str(BENCHMARKS))
    cmd = [sys.executable, str(BENCHMARKS / "sparse.py"), "--worker", "einrel", "--task", "spmm"]
    cmd += ["--data", str(tmp_path), "--nodes", "300", "--dim", "8", "--iters", "2"]
    got = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    assert len(got["times_s"]) == 2 and got["peak_bytes"] > 0
    assert len(got["sample"]) == 2 and "over A" in got["plan"]


def test_gcn_benchmark_worker_trains_and_the_plot_draws(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """One einrel worker of benchmarks/gcn.py (the karate club, 3 epochs), then its plot from
    runs shaped like the worker's."""
    import json
    import subprocess
    import sys

    cmd = [sys.executable, str(BENCHMARKS / "gcn.py"), "--worker", "einrel", "--nodes", "0"]
    cmd += ["--edges", "0", "--epochs", "3", "--every", "1"]
    got = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    assert got["history"]["epochs"] == [1, 2, 3] and 0 <= got["test_accuracy"] <= 1
    gcn = _load("gcn", monkeypatch)
    doc = {"shape": "karate", "sbm": {"einrel": got, "torch.sparse": got}}
    path = tmp_path / "gcn.png"
    gcn.plot(doc, path)
    width, height = _png_size(path)
    assert width > 600 and height > 250


def _history(metrics: dict[str, float]) -> dict[str, Any]:
    return {"epochs": [1, 2], "loss": [1.0, 0.5], "seconds": [1.0, 1.0], "measured": [2],
            "metrics": {k: [v] for k, v in metrics.items()}}  # fmt: skip


def test_recommend_plot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    rec = _load("recommend", monkeypatch)
    m = {"recall@20": 0.2, "ndcg@20": 0.1}
    run = {"history": _history(m), "metrics": m, "epoch_s": 1.0}
    doc = {
        "quality_data": "ml",
        "quality": {"mf bpr": {"einrel": run, "torch": run}},
        "speed": {"bpr": {"einrel": {"epoch_s": 1.0}, "torch": {"epoch_s": 1.2}}},
    }
    rec.plot(doc, tmp_path / "r.png")
    assert _png_size(tmp_path / "r.png")[0] > 600


def test_kge_plot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    kge = _load("kge", monkeypatch)
    run = {"metrics": {"mrr": 0.5}, "triples_per_s": 1e5}
    doc = {
        "quality": {"transe nations": {"einrel": run, "pykeen": run}},
        "scale": {"transe": {"einrel": {"triples_per_s": 2e5}, "pykeen": {"triples_per_s": 1e5}}},
        "scale_data": "synthetic",
    }
    kge.plot(doc, tmp_path / "k.png")
    assert _png_size(tmp_path / "k.png")[0] > 600


def test_xc_peer_trains_the_same_weights_and_the_plot_draws(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """benchmarks/xc.py's torch model is the einrel model: from the same weights on the same
    batches both reach the same weights and precision; then the plot draws their runs."""
    import numpy as np

    from einrel.workloads import labels
    from einrel.workloads.xc import XCConfig

    xc = _load("xc", monkeypatch)
    d = labels.synthetic(1200, 200, 512, seed=3)
    cfg = XCConfig(hashes=2, buckets=40, hidden=8, batch=256, lr=1e-2)
    runs = {s: xc.run(s, d, cfg, 2, 0, 100) for s in ("einrel", "torch")}
    assert runs["einrel"]["metrics"] == pytest.approx(runs["torch"]["metrics"], abs=0.011)
    loss = [r["history"]["loss"] for r in runs.values()]
    np.testing.assert_allclose(loss[0], loss[1], rtol=1e-4)
    doc = {"runs": {"L=200 mlh": {"systems": runs}}}
    xc.plot(doc, tmp_path / "x.png")
    assert _png_size(tmp_path / "x.png")[0] > 600
