"""Relations through the compiled pipeline: every placer and device count computes what the
reference interpreter does (relation outputs as Coo in the source's tuple order), with
gradients; traces and explain() name them; what is not built yet is a clear CompileError."""

from __future__ import annotations

import io
import json
import re
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
    assert re.search(r"u:key×\d v:key×\d", buf.getvalue()) and "over A" in buf.getvalue()
    loaded = er.load(prog.save(tmp_path / "p.einrel"), outputs=outs)
    for a, b in zip(loaded(feeds), prog(feeds)):
        np.testing.assert_array_equal(values(a), values(b))
    loaded.close()
    prog.close()


def test_relations_run_under_memory_budgets_with_offload() -> None:
    outs, feeds = model()
    want = er.evaluate(outs, feeds)
    for ndev, budget in [(1, 16 << 10), (2, 12 << 10), (3, 16 << 10)]:
        prog = er.compile(outs, devices=er.cpu(ndev, memory=budget))
        for _ in range(2):
            for a, b in zip(prog(feeds), want):
                np.testing.assert_allclose(values(a), values(b), rtol=1e-12, atol=1e-12)
        assert max(prog.report.peak_bytes.values()) <= budget
        assert prog.report.bytes_offloaded > 0
        prog.close()


def skewed(n: int = 100, e: int = 300) -> tuple[er.Tensor, er.Coo, np.ndarray]:
    """Every tuple's u in the first tenth of the keys: a uniform plan is far off."""
    rng = np.random.default_rng(1)
    flat = rng.choice(n * (n // 10), e, replace=False)
    v, u = np.divmod(flat, n // 10)
    A = er.relation("A", keys={"u": n, "v": n}, nnz=e)
    H = er.input("H", (n, 8))
    Z = er.einsum("uv,ud->vd", A, H)
    feed = er.coo(np.stack([u, v]), rng.standard_normal(e).astype("f4"))
    return Z, feed, rng.standard_normal((n, 8)).astype("f4")


def test_a_block_over_its_planned_tuples_is_a_feed_error_and_structure_fixes_it() -> None:
    Z, feed, h = skewed()
    chunks = {"partitioner": "data-parallel"}
    prog = er.compile(Z, devices=er.cpu(4, memory="64KiB"), **chunks)
    with pytest.raises(
        er.FeedError, match=r"block of relation A with .*u in \[0, 25\).* tuples.*structure="
    ):
        prog({"A": feed, "H": h})
    prog.close()
    prog = er.compile(Z, devices=er.cpu(4, memory="64KiB"), structure={"A": feed}, **chunks)
    np.testing.assert_allclose(
        prog({"A": feed, "H": h}), er.evaluate(Z, {"A": feed, "H": h}), rtol=1e-5, atol=1e-6
    )
    caps = [t.support.capacity for t in prog.plan.tasks.tasks if t.kind == "input" and t.support]
    assert max(caps) >= 300 and min(caps) < 100  # counted per block, not spread evenly
    prog.close()
    with pytest.raises(er.CompileError, match=r"structure names \['B'\]"):
        er.compile(Z, devices=er.cpu(2), structure={"B": feed})


def test_gpu_and_torch_arena_backends_refuse_relations_clearly() -> None:
    Z, feed, h = skewed()
    with pytest.raises(er.CompileError, match=r"numpy memory engine"):
        er.compile(Z, devices=er.cpu(2, memory="1MiB"), engine_options={"backend": "torch"})(
            {"A": feed, "H": h}
        )


def power_law(n: int = 200, e: int = 1500) -> tuple[list[er.Tensor], dict, list[er.Tensor]]:
    """A two-layer GCN-like program over a relation whose first keys have most tuples."""
    rng = np.random.default_rng(3)
    w = 1.0 / np.arange(1, n + 1) ** 1.2
    flat = rng.choice(n * n, e, replace=False, p=np.repeat(w / w.sum() / n, n))
    u, v = np.divmod(flat, n)
    A = er.relation("A", keys={"u": n, "v": n}, nnz=e, dtype="float64")
    H = er.input("H", (n, 4), "float64")
    W = er.input("W", (4, 4), "float64")
    Z1 = er.relu(er.einsum("uv,ud->vd", A, H @ W))
    Z2 = er.einsum("uv,ud->vd", A, Z1)  # layer 1's v is layer 2's u: one key class
    loss = (Z2 * Z2).sum()
    gW, gA = er.grad(loss, [W, A])
    feeds = {"A": er.coo(np.stack([u, v]), rng.random(e)), "H": rng.standard_normal((n, 4))}
    feeds["W"] = rng.standard_normal((4, 4)) / 2
    return [loss, Z2, gW, gA], feeds, [A, H]


def test_relabeled_keys_balance_the_cut_and_change_no_result() -> None:
    outs, feeds, _ = power_law()
    want = er.evaluate(outs, feeds)
    for devices in (er.cpu(4), er.cpu(2, memory="96KiB")):
        prog = er.compile(outs, devices=devices, partitioner="data-parallel", relabel=True)
        for a, b in zip(prog(feeds), want):
            if isinstance(b, er.Coo):
                assert np.array_equal(a.indices, b.indices)
            np.testing.assert_allclose(values(a), values(b), rtol=1e-10, atol=1e-12)
        (cls,) = prog.plan.relabeling.classes  # u and v are one class
        assert {k for _, k in cls.keys} == {0, 1} and cls.parts > 1
        new = prog.plan.relabeling.labels({"A": feeds["A"]})[0]
        bounds = np.linspace(0, cls.size, cls.parts + 1).round().astype(int)
        keys = feeds["A"].indices.ravel()  # both keys: the class deals their summed degrees
        before = np.histogram(keys, bounds)[0]
        after = np.histogram(new[keys], bounds)[0]
        heaviest = np.bincount(keys).max()  # no range can do better than the mean plus one key
        assert after.max() <= after.mean() + heaviest < before.max()
        prog.close()


def test_a_skewed_feed_fits_its_plan_once_relabeled() -> None:
    Z, feed, h = skewed()
    prog = er.compile(Z, devices=er.cpu(4, memory="64KiB"), partitioner="data-parallel")
    with pytest.raises(er.FeedError, match="structure="):
        prog({"A": feed, "H": h})
    prog = er.compile(
        Z, devices=er.cpu(4, memory="64KiB"), partitioner="data-parallel", relabel=["A"]
    )
    want = er.evaluate(Z, {"A": feed, "H": h})
    np.testing.assert_allclose(prog({"A": feed, "H": h}), want, rtol=1e-5, atol=1e-6)


def test_a_relation_fed_again_follows_labels_dealt_with_a_changing_one() -> None:
    """A key class dealt from two relations is dealt anew every run; a relation fed the same
    object again must be mapped with the new labels, not the ones it was first mapped with."""
    rng = np.random.default_rng(5)
    n = 40
    G = er.relation("G", keys={"u": n, "v": n}, nnz=200)
    B = er.relation("B", keys={"t": 8, "u": n}, nnz=8)
    H = er.input("H", (n, 3))
    Z = er.einsum("tu,ud->td", B, er.einsum("uv,vd->ud", G, H))
    prog = er.compile(Z, devices=er.cpu(2), relabel=True)
    graph = er.coo(np.unique(rng.integers(0, n, (2, 200)), axis=1), shape=(n, n))
    h = rng.standard_normal((n, 3)).astype(np.float32)
    for _ in range(3):
        batch = er.coo(np.stack([np.arange(8), rng.zipf(1.5, 8) % n]), shape=(8, n))
        feeds = {"G": graph, "B": batch, "H": h}
        np.testing.assert_allclose(prog(feeds), er.evaluate(Z, feeds), rtol=1e-5, atol=1e-6)
    prog.close()


def test_column_blocks_of_a_table_read_at_few_rows_are_gathered_not_copied() -> None:
    """EinDecomp splitting even small joins cuts the table's columns here: each block is a
    strided view of the feed, read at 50 of its 4000 rows by both rules (a CSR product, and
    the chunked join of three)."""
    rng = np.random.default_rng(0)
    n, d, b = 4000, 8, 50
    A = er.relation("A", keys={"u": n, "v": n}, nnz=b)
    T = er.relation("T", keys={"t": b, "u": n, "v": n}, nnz=b)
    H, g = er.input("H", (n, d)), er.input("g", (b,))
    outs = [er.einsum("uv,ud->vd", A, H), er.einsum("t,tuv,ud->vd", g, T, H)]
    split = er.partitioners.EinDecomp(small_join=0)
    prog = er.compile(outs, devices=er.cpu(2), partitioner=split, progress=False)
    cut = [t.offset for t in prog.plan.tasks.tasks if t.kind == "input" and t.shape == (n, d // 2)]
    assert (0, d // 2) in cut  # column blocks
    for _ in range(2):
        uv = np.stack([rng.integers(0, n, b), rng.integers(0, n, b)])
        feeds = {"A": er.coo(np.unique(uv, axis=1), shape=(n, n)),
                 "T": er.coo(np.stack([np.arange(b), *uv]), shape=(b, n, n)),
                 "H": rng.standard_normal((n, d)).astype(np.float32),
                 "g": rng.standard_normal(b).astype(np.float32)}  # fmt: skip
        for got, want in zip(prog(feeds), er.evaluate(outs, feeds), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    prog.close()


def test_relabeling_refuses_keys_that_positions_read() -> None:
    A = er.relation("A", keys={"u": 10, "v": 10}, nnz=20)
    H = er.input("H", (10, 3))
    Z = er.einsum("uv,ud->vd", A, H)[:5]
    with pytest.raises(er.CompileError, match=r"relabel: key 1 of relation 'A' flows into a slice"):
        er.compile(Z, devices=er.cpu(2), relabel=True)
    with pytest.raises(er.CompileError, match=r"relabel names \['B'\]"):
        er.compile(Z, devices=er.cpu(2), relabel=["B"])
