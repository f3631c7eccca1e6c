"""The GPU code path of the memory engine: torch arenas, per-thread streams, pinned host pool.

Everything here except the `gpu`-marked tests runs on CPU tensors standing in for CUDA
(`GpuEngine(device="cpu")`), so the path is exercised on every machine; the `gpu` tests run the
same checks on a real CUDA device and skip, with the reason, where there is none.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import einrel as er
from einrel.frontend.reference import bind_feeds, interpret
from einrel.memory import min_budget, plan_memory
from einrel.runtime.backends.torch_arenas import TorchArenas, cuda_available
from einrel.runtime.gpu import GpuEngine
from einrel.runtime.mem.engine import MemEngine
from einrel.taskgraph.interpret import assemble_outputs
from einrel.workloads import get_workload, max_rel_error
from helpers import check_result, feeds_for, random_budgets, random_graph, random_placed

ROOT = Path(__file__).resolve().parents[2]
needs_cuda = pytest.mark.skipif(not cuda_available(), reason="no CUDA device is visible")


@pytest.mark.parametrize("seed", range(16))
def test_torch_arenas_on_cpu_match_reference(seed: int) -> None:
    r = random.Random(1000 + seed)
    g = random_graph(r)
    tg = random_placed(r, g)
    feeds = feeds_for(r, g)
    mg = plan_memory(tg, random_budgets(r, tg))
    inputs, variables = bind_feeds(g, feeds)
    eng = GpuEngine(
        tg.ndev,
        device="cpu",
        priority=["given", "critical-path", "fixed", "random"][seed % 4],
        transfer_bandwidth="50MB/s",
        jitter=0.4,
        seed=seed,
    )
    check_result(mg, eng.run(mg, inputs, variables), interpret(g, feeds))


def test_torch_arenas_are_one_buffer_per_device_with_typed_views() -> None:
    r = random.Random(5)
    g = random_graph(r)
    tg = random_placed(r, g, ndev=2)
    mg = plan_memory(tg, min_budget(tg))
    eng = GpuEngine(2, device="cpu")
    feeds = feeds_for(r, g)
    inputs, variables = bind_feeds(g, feeds)
    check_result(mg, eng.run(mg, inputs, variables), interpret(g, feeds))
    backend = eng.backend
    assert isinstance(backend, TorchArenas)
    assert [a.dtype for a in backend.arenas] == [torch.uint8, torch.uint8]
    assert [a.numel() for a in backend.arenas] == list(mg.budgets)
    n = next(x for x in mg.nodes if x.kind == "compute")
    v = backend.view(n.block, n.region)
    assert v.dtype == torch.float64
    assert v.data_ptr() == backend.arenas[n.device].data_ptr() + n.region.offset


def small_net(dtype: str) -> list[er.Tensor]:
    x = er.input("x", (16, 12), dtype)
    w = er.input("w", (12, 10), dtype)
    y = er.softmax(er.relu(x @ w), axis=1)
    loss = er.einsum("ij->", y * y)
    return [loss, er.grad(loss, [w])[0]]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_torch_and_numpy_arenas_agree_in_low_precision(dtype: str) -> None:
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((16, 12)), "w": rng.standard_normal((12, 10))}
    low = {k: v.astype(dtype) for k, v in feeds.items()}
    want = er.evaluate(small_net("float64"), {k: v.astype(np.float64) for k, v in low.items()})
    outs = small_net(dtype)
    prog = er.compile(outs, devices=er.cpu(2), partitioner="largest-dim")
    mg = plan_memory(prog.plan.tasks, min_budget(prog.plan.tasks))
    inputs, variables = bind_feeds(prog.plan.graph, low)
    a = GpuEngine(2, device="cpu").run(mg, inputs, variables)
    b = MemEngine(2).run(mg, inputs, variables)
    tol = 1e-5 if dtype == "float32" else 2e-2
    for got_t, got_n, ref in zip(
        assemble_outputs(mg.taskgraph, a.values), assemble_outputs(mg.taskgraph, b.values), want
    ):
        assert got_t.dtype == np.dtype(dtype)
        assert max_rel_error(got_t, ref) < tol
        assert max_rel_error(got_n, ref) < tol


def test_compile_for_gpu_devices_on_cpu_tensors() -> None:
    w = get_workload("llama_block", size="tiny", mode="train", dtype="float32")
    feeds = w.make_feeds(0)
    want = er.evaluate(w.outputs, feeds)
    free = er.compile(w.outputs, devices=er.cpu(1))
    peak = max(plan_memory(free.plan.tasks, None).stats.peak_bytes)
    prog = er.compile(
        w.outputs,
        devices=er.gpu(2, memory=peak // 3),
        engine_options={"device": "cpu", "seed": 0},
        transfer_bandwidth="200MB/s",
        jitter=0.3,
    )
    assert isinstance(prog.engine, GpuEngine)
    got = prog.run(feeds)
    for a, b in zip(got, want, strict=True):
        assert max_rel_error(a, b) < 1e-5
    assert all(v <= peak // 3 for v in prog.report.peak_bytes.values())
    assert prog.report.bytes_offloaded == sum(prog.plan.memgraph.stats.evicted_bytes)


def test_gpu_devices_without_cuda_say_how_to_use_cpu_tensors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import einrel.runtime.backends.torch_arenas as arenas
    import einrel.runtime.gpu as gpu

    for module in (gpu, arenas):  # engines.py imports it from torch_arenas when it runs
        monkeypatch.setattr(module, "cuda_available", lambda: False)
    x = er.input("x", (4,), "float32")
    with pytest.raises(er.CompileError, match="device': 'cpu'"):
        er.compile(er.relu(x), devices=er.gpu(1, memory="1MiB"))


def test_gpu_benchmark_smoke_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu_offload.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "gpu_offload.py"),
        "--device",
        "cpu",
        "--quick",
    ]
    proc = subprocess.run(
        [*cmd, "--out", str(out)], capture_output=True, text=True, timeout=240, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["device"] == "cpu"
    for key in ("einrel", "einrel_unconstrained", "torch_unconstrained"):
        assert report[key]["median_s"] > 0
    for variant in ("recompute", "saved"):
        assert report["torch_layerwise"][variant]["median_s"] > 0
        assert report["torch_layerwise"][variant]["max_rel_error_vs_torch"] < 5e-2
    assert report["einrel"]["peak_bytes"] <= report["budget_bytes"]
    assert report["einrel"]["max_rel_error_vs_torch"] < 5e-2


# --- real GPUs ------------------------------------------------------------------------------


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("seed", range(6))
def test_cuda_arenas_match_reference(seed: int) -> None:
    r = random.Random(2000 + seed)
    g = random_graph(r)
    tg = random_placed(r, g, ndev=1)
    feeds = feeds_for(r, g)
    mg = plan_memory(tg, random_budgets(r, tg))
    inputs, variables = bind_feeds(g, feeds)
    eng = GpuEngine(1, device="cuda", priority=["given", "fixed"][seed % 2], seed=seed)
    check_result(mg, eng.run(mg, inputs, variables), interpret(g, feeds))


@pytest.mark.gpu
@needs_cuda
def test_cuda_compile_with_budget_equals_evaluate() -> None:
    w = get_workload("llama_block", size="small", mode="train", dtype="float32")
    feeds = w.make_feeds(0)
    want = er.evaluate(w.outputs, feeds)
    free = er.compile(w.outputs, devices=er.cpu(1))
    peak = max(plan_memory(free.plan.tasks, None).stats.peak_bytes)
    prog = er.compile(w.outputs, devices=er.gpu(1, memory=peak // 4))
    got = prog.run(feeds)
    for a, b in zip(got, want, strict=True):
        assert max_rel_error(a, b) < 1e-4
    assert prog.report.peak_bytes[0] <= peak // 4
    assert prog.report.bytes_offloaded > 0


def test_memory_engine_takes_the_torch_backend_by_name() -> None:
    r = random.Random(77)
    g = random_graph(r)
    tg = random_placed(r, g, ndev=2)
    mg = plan_memory(tg, min_budget(tg))
    feeds = feeds_for(r, g)
    inputs, variables = bind_feeds(g, feeds)
    eng = MemEngine(2, backend="torch", workers_per_device=2, transfer_bandwidth="50MB/s")
    assert isinstance(eng.backend, TorchArenas)
    check_result(mg, eng.run(mg, inputs, variables), interpret(g, feeds))
    with pytest.raises(er.CompileError, match="backend"):
        MemEngine(1, backend="tpu")
