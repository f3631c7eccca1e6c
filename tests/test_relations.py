"""Relations through the compiled pipeline: every placer and device count computes what the
reference interpreter does (relation outputs as Coo in the source's tuple order), with
gradients; traces and explain() name them; what is not built yet is a clear CompileError."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

import einrel as er

N, D = 30, 6


def model() -> tuple[list[er.Tensor], dict]:
    rng = np.random.default_rng(0)
    idx = np.stack(np.unravel_index(rng.choice(N * N, 150, replace=False), (N, N)))
    A = er.relation("A", keys={"u": N, "v": N}, nnz=160, dtype="float64")
    H = er.input("H", (N, D), "float64")
    W = er.input("W", (D, D), "float64")
    X = er.relu(H @ W)
    Z = er.einsum("uv,ud->vd", A, X, name="message")
    S = er.einsum("uv,ud,vd->uv", A, X, X, name="score")
    M = er.einsum("uv->v", S, agg="max")
    P = er.einsum("uv,v->uv", S, M, join=lambda s, m: er.exp(s - m))
    att = er.einsum("uv,v->uv", P, er.einsum("uv->v", P), join=lambda p, z: p / z)
    out = er.einsum("uv,ud->vd", att, X)
    loss = (Z * Z).sum() + (out * out).sum()
    gW, gA = er.grad(loss, [W, A])
    feeds = {"A": er.coo(idx, rng.standard_normal(150)), "H": rng.standard_normal((N, D))}
    feeds["W"] = rng.standard_normal((D, D)) / 3
    return [loss, gW, gA, att], feeds


def values(x: object) -> np.ndarray:
    return x.values if isinstance(x, er.Coo) else np.asarray(x)


@pytest.mark.parametrize("placer", ["critical-path", "round-robin", "heft"])
@pytest.mark.parametrize("ndev", [1, 2, 3])
def test_compiled_relations_match_the_reference(placer: str, ndev: int) -> None:
    outs, feeds = model()
    want = er.evaluate(outs, feeds)
    prog = er.compile(outs, devices=er.cpu(ndev), placer=placer)
    got = prog(feeds)
    for a, b in zip(got, want):
        np.testing.assert_allclose(values(a), values(b), rtol=1e-12, atol=1e-12)
    assert isinstance(got[2], er.Coo) and np.array_equal(got[2].indices, feeds["A"].indices)
    again = prog({**feeds, "A": er.coo(feeds["A"].indices[:, :40], feeds["A"].values[:40])})
    smaller = er.evaluate(
        outs, {**feeds, "A": er.coo(feeds["A"].indices[:, :40], feeds["A"].values[:40])}
    )
    for a, b in zip(again, smaller):  # another structure within nnz, same program
        np.testing.assert_allclose(values(a), values(b), rtol=1e-12, atol=1e-12)
    prog.close()


def test_traces_explain_and_saving_know_relations(tmp_path: Path) -> None:
    outs, feeds = model()
    prog = er.compile(outs, devices=er.cpu(2))
    prog.run(feeds, trace=str(tmp_path / "t.json"))
    names = {e["name"] for e in json.loads((tmp_path / "t.json").read_text())["traceEvents"]}
    assert "sparse message [uv,ud->vd]" in names and "input A" in names
    buf = io.StringIO()
    prog.explain(Console(file=buf, width=200))
    assert "u:key v:key" in buf.getvalue() and "over A" in buf.getvalue()
    loaded = er.load(prog.save(tmp_path / "p.einrel"), outputs=outs)
    for a, b in zip(loaded(feeds), prog(feeds)):
        np.testing.assert_array_equal(values(a), values(b))
    loaded.close()
    prog.close()


def test_memory_budgets_for_relations_are_refused_clearly() -> None:
    outs, _ = model()
    with pytest.raises(er.CompileError, match=r"memory plans .* for relations are not built yet"):
        er.compile(outs, devices=er.cpu(2, memory="1MiB"))
