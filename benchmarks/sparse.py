"""Sparse relations side by side: einrel on er.cpu(2) next to torch.sparse and torch_geometric.

Three measurements, each system in a process of its own so that its memory can be read:

1. `spmm`: forward and backward of `Z = einsum("uv,ud->vd", A, H)` (a GCN aggregation) with
   N keys, E tuples, d features, float32, and the cotangent G of Z given: Z and dL/dH = A·G.
   Peers: `torch.sparse.mm` on A's CSR (rows v, built once, outside the timing) with its
   autograd, plain and with `reduce="sum"` (torch's row-parallel kernel); torch_geometric's
   scatter aggregation (`H[u] * a` gathered, `scatter(..., v, reduce="sum")`), with autograd.
2. `sddmm`: forward and backward of `S = einsum("uv,ud,vd->uv", A, X, Y)` with loss sum(S):
   S on A's tuples, dL/dX and dL/dY. Peer: the same by hand in torch, a chunk of tuples at a
   time (gather, multiply, sum; `index_add_` back), the way one avoids E×d temporaries.
3. `budget`: the aggregation of 1. at a larger E under a memory budget of a quarter of its
   unconstrained peak (`er.cpu(2, memory=...)`), which must complete with its peak under it.

Timing: each system's process makes its structures (einrel: a first run, which checks the
feed and cuts and sorts it once; torch: the CSR), then times `--iters` steps; processes of the
systems alternate over `--rounds` rounds, and the median over all timed steps is reported.
Memory: the peak resident set of the timed steps (the high-water mark is reset after set-up)
above the process's resident set before any data existed; the target compares it with
1.3 x (CSR bytes + inputs + outputs). Outputs are checked against einrel's on sampled rows.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/sparse.py

Writes benchmarks/results/sparse.json and sparse.png (`--quick`: small sizes, sparse_quick.*);
`--replot` redraws the PNG from the JSON already there.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import common  # benchmarks/common.py: the script's own directory is on sys.path

SYSTEMS = {
    "spmm": ("einrel", "torch.sparse.mm", "torch.sparse.mm(reduce=sum)", "torch_geometric"),
    "sddmm": ("einrel", "torch chunked gather"),
    "budget": ("einrel",),
}
CHUNK = 1 << 18  # tuples per chunk of the hand-written SDDMM
SAMPLE = 2000  # rows (and tuples) of every output compared across systems
TOLERANCE = 1e-4  # float32 sums in another order: max |a - b| / max |b|


# --- data ----------------------------------------------------------------------------------------
def make_data(path: Path, n: int, e: int, d: int, seed: int = 0) -> None:
    """E distinct (u, v) pairs, sorted by (u, v), uniform over N x N; values, H, G, X, Y."""
    rng = np.random.default_rng(seed)
    flat = np.unique(rng.integers(0, n * n, int(e * 1.01) + 1000, dtype=np.int64))
    flat = np.sort(rng.choice(flat, e, replace=False))
    np.save(path / "u.npy", (flat // n).astype(np.int32))
    np.save(path / "v.npy", (flat % n).astype(np.int32))
    del flat
    np.save(path / "a.npy", rng.random(e, dtype=np.float32))
    for name in ("H", "G"):
        np.save(path / f"{name}.npy", rng.standard_normal((n, d), dtype=np.float32) / 4)


def load(path: Path, *names: str) -> list[np.ndarray]:
    return [np.load(path / f"{x}.npy") for x in names]


# --- the systems, one per worker process --------------------------------------------------------
def einrel_spmm(path: Path, n: int, d: int, budget_fraction: float | None) -> Any:
    import einrel as er

    u, v, a = load(path, "u", "v", "a")
    idx = np.stack([u, v])
    idx.flags.writeable = a.flags.writeable = False  # er.coo keeps read-only arrays as they are
    del u, v
    e = a.size
    A = er.relation("A", keys={"u": n, "v": n}, nnz=e)
    H, G = er.input("H", (n, d)), er.input("G", (n, d))
    Z = er.einsum("uv,ud->vd", A, H, name="Z")
    (gH,) = er.grad(er.einsum("vd,vd->", Z, G), [H])
    feeds = {"A": er.coo(idx, a), "H": load(path, "H")[0], "G": load(path, "G")[0]}
    prog = er.compile([Z, gH], devices=er.cpu(2), progress=False)
    info: dict[str, Any] = {"plan": str(prog.plan)}
    if budget_fraction is not None:
        prog(feeds)
        free_peak = max(prog.report.peak_bytes.values())
        prog.close()
        budget = int(free_peak * budget_fraction)
        prog = er.compile([Z, gH], devices=er.cpu(2, memory=budget), progress=False)
        info.update(unconstrained_peak=free_peak, budget=budget, plan=str(prog.plan))

    def step() -> list[np.ndarray]:
        return prog(feeds)

    def after() -> dict[str, Any]:
        r = prog.report
        out = {**info, "report_peak": dict(r.peak_bytes), "offloaded": r.bytes_offloaded}
        if budget_fraction is not None:
            out["under_budget"] = max(r.peak_bytes.values()) <= info["budget"]
        return out

    return step, after


def torch_spmm(path: Path, n: int, d: int, reduce: str | None) -> Any:
    import torch

    u, v, a = load(path, "u", "v", "a")
    order = np.argsort(v, kind="stable")  # rows v: Z = A^T H is a row product
    crow = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(v, minlength=n), out=crow[1:])
    col = torch.from_numpy(u[order].astype(np.int64))
    vals = torch.from_numpy(a[order])
    del u, v, a, order
    At = torch.sparse_csr_tensor(torch.from_numpy(crow), col, vals, (n, n))
    H0, G = (torch.from_numpy(x) for x in load(path, "H", "G"))

    def step() -> list[np.ndarray]:
        H = H0.detach().requires_grad_()
        Z = torch.sparse.mm(At, H) if reduce is None else torch.sparse.mm(At, H, reduce)
        Z.backward(G)
        return [Z.detach().numpy(), H.grad.numpy()]

    return step, dict


def pyg_spmm(path: Path, n: int, d: int) -> Any:
    import torch
    from torch_geometric.utils import scatter

    u, v, a = (torch.from_numpy(x) for x in load(path, "u", "v", "a"))
    src, dst = u.long(), v.long()
    H0, G = (torch.from_numpy(x) for x in load(path, "H", "G"))

    def step() -> list[np.ndarray]:
        H = H0.detach().requires_grad_()
        Z = scatter(H[src] * a[:, None], dst, dim=0, dim_size=n, reduce="sum")
        Z.backward(G)
        return [Z.detach().numpy(), H.grad.numpy()]

    return step, dict


def einrel_sddmm(path: Path, n: int, d: int) -> Any:
    import einrel as er

    u, v, a = load(path, "u", "v", "a")
    idx = np.stack([u, v])
    idx.flags.writeable = a.flags.writeable = False
    del u, v
    A = er.relation("A", keys={"u": n, "v": n}, nnz=a.size)
    X, Y = er.input("X", (n, d)), er.input("Y", (n, d))
    S = er.einsum("uv,ud,vd->uv", A, X, Y, name="S")
    gX, gY = er.grad(er.einsum("uv->", S), [X, Y])
    feeds = {"A": er.coo(idx, a), "X": load(path, "H")[0], "Y": load(path, "G")[0]}
    prog = er.compile([S, gX, gY], devices=er.cpu(2), progress=False)

    def step() -> list[np.ndarray]:
        s, gx, gy = prog(feeds)
        return [s.values, gx, gy]

    return step, lambda: {"plan": str(prog.plan)}


def torch_sddmm(path: Path, n: int, d: int) -> Any:
    import torch

    u, v, a = (torch.from_numpy(x) for x in load(path, "u", "v", "a"))
    u, v = u.long(), v.long()
    X, Y = (torch.from_numpy(x) for x in load(path, "H", "G"))

    def step() -> list[np.ndarray]:
        s = torch.empty_like(a)
        gx, gy = torch.zeros_like(X), torch.zeros_like(Y)
        for lo in range(0, a.numel(), CHUNK):
            c = slice(lo, lo + CHUNK)
            xu, yv, ac = X[u[c]], Y[v[c]], a[c, None]
            s[c] = (xu * yv).sum(1) * a[c]
            gx.index_add_(0, u[c], yv * ac)
            gy.index_add_(0, v[c], xu * ac)
        return [s.numpy(), gx.numpy(), gy.numpy()]

    return step, dict


def worker(args: argparse.Namespace) -> None:
    """One system's process: set up, run, time; print a JSON line."""
    import torch

    torch.set_num_threads(2)
    import einrel  # noqa: F401  (imported before the baseline, as every system's libraries)

    if args.system == "torch_geometric":
        import torch_geometric  # noqa: F401
    base = common.process_bytes("VmRSS")
    path, n, d = Path(args.data), args.nodes, args.dim
    t0 = time.perf_counter()
    system = args.system
    if args.task == "spmm" and system == "einrel":
        step, after = einrel_spmm(path, n, d, None)
    elif args.task == "budget":
        step, after = einrel_spmm(path, n, d, 0.25)
    elif system.startswith("torch.sparse.mm"):
        step, after = torch_spmm(path, n, d, "sum" if "reduce" in system else None)
    elif system == "torch_geometric":
        step, after = pyg_spmm(path, n, d)
    elif args.task == "sddmm" and system == "einrel":
        step, after = einrel_sddmm(path, n, d)
    else:
        step, after = torch_sddmm(path, n, d)
    first = time.perf_counter()
    outs = step()
    first_s = time.perf_counter() - first
    setup_s = first - t0
    common.reset_peak()
    times = []
    for _ in range(args.iters):
        outs = None  # the last step's outputs are let go first, in every system
        t1 = time.perf_counter()
        outs = step()
        times.append(time.perf_counter() - t1)
    peak = common.process_bytes("VmHWM") - base
    rng = np.random.default_rng(1)
    sample = [np.asarray(o)[rng.integers(0, len(o), SAMPLE)].tolist() for o in outs]
    doc = {"times_s": times, "first_s": first_s, "setup_s": setup_s, "peak_bytes": peak}
    print(json.dumps({**doc, "sample": sample, **after()}, default=float))


def run_worker(task: str, system: str, data: Path, a: argparse.Namespace, iters: int) -> Any:
    cmd = [sys.executable, __file__, "--worker", system, "--task", task, "--data", str(data)]
    cmd += ["--nodes", str(a.nodes), "--dim", str(a.dim), "--iters", str(iters)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{system} ({task}) failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def max_rel(got: list[Any], want: list[Any]) -> float:
    err = 0.0
    for g, w in zip(got, want):
        g64, w64 = np.asarray(g, np.float64), np.asarray(w, np.float64)
        err = max(err, float(np.max(np.abs(g64 - w64)) / max(np.max(np.abs(w64)), 1e-30)))
    return err


def available(system: str) -> str | None:
    """Why a peer cannot run here (a package that is not installed), or None."""
    if system == "torch_geometric" and importlib.util.find_spec("torch_geometric") is None:
        return "torch_geometric is not installed (pip install 'einrel[bench]')"
    return None


def measure(task: str, data: Path, a: argparse.Namespace, nbytes: dict[str, int]) -> dict:
    rows: dict[str, Any] = {}
    missing = {s: why for s in SYSTEMS[task] if (why := available(s)) is not None}
    for system, why in missing.items():
        print(f"  {task}: {system} left out: {why}", file=sys.stderr)
    for r in range(a.rounds):
        for system in (s for s in SYSTEMS[task] if s not in missing):
            slow = system == "torch_geometric"
            if slow and r > 0 and not a.quick:
                continue  # seconds a step and gigabytes of messages: one round says enough
            print(f"  {task}: {system} (round {r + 1}/{a.rounds})", file=sys.stderr)
            got = run_worker(task, system, data, a, 1 if slow and not a.quick else a.iters)
            row = rows.setdefault(system, {"times_s": [], "peaks": [], "first_s": []})
            row["times_s"] += got.pop("times_s")
            row["peaks"].append(got.pop("peak_bytes"))
            row["first_s"].append(got.pop("first_s"))
            row.update(got)
    ref = rows["einrel"]["sample"]
    for row in rows.values():
        row["max_rel_error"] = max_rel(row.pop("sample"), ref)
        row.update(common.summary(row.pop("times_s")))
        row["peak_bytes"] = statistics.median(row.pop("peaks"))
        row["first_s"] = statistics.median(row["first_s"])
    out: dict[str, Any] = {"rows": rows, "bytes": nbytes, "left_out": missing}
    if task != "budget":
        peers = [k for k in rows if k != "einrel"]
        best = min(peers, key=lambda k: rows[k]["median_s"])
        allowance = 1.3 * sum(nbytes.values())
        e = rows["einrel"]
        out["verdict"] = {
            "faster_peer": best,
            "einrel_speed_over_faster_peer": rows[best]["median_s"] / e["median_s"],
            "target_speed_1x": rows[best]["median_s"] / e["median_s"] >= 1.0,
            "einrel_peak_over_csr_inputs_outputs": e["peak_bytes"] / sum(nbytes.values()),
            "target_peak_1.3x": e["peak_bytes"] <= allowance,
            "outputs_agree": all(r["max_rel_error"] <= TOLERANCE for r in rows.values()),
        }
    else:
        e = rows["einrel"]
        out["verdict"] = {"completed": True, "under_budget": e["under_budget"]}
    return out


def sizes(n: int, e: int, d: int, task: str) -> dict[str, int]:
    """CSR bytes (int64 row pointers and columns, float32 values), inputs and outputs."""
    csr = 8 * (n + 1) + 8 * e + 4 * e
    dense = 4 * n * d
    if task == "sddmm":
        return {"csr": csr, "inputs": 2 * dense, "outputs": 4 * e + 2 * dense}
    return {"csr": csr, "inputs": 2 * dense, "outputs": 2 * dense}


def plot(doc: dict[str, Any], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tasks = [t for t in ("spmm", "sddmm", "budget") if t in doc["tasks"]]
    fig = Figure(figsize=(5.2 * len(tasks), 7.4))
    FigureCanvasAgg(fig)
    for k, task in enumerate(tasks):
        res = doc["tasks"][task]
        rows = res["rows"]
        names = list(rows)
        for j, (key, label, scale) in enumerate(
            [("median_s", "seconds per step (median)", 1.0), ("peak_bytes", "peak MiB", 2**-20)]
        ):
            ax = fig.add_subplot(2, len(tasks), 1 + k + j * len(tasks))
            vals = [rows[m][key] * scale for m in names]
            colors = ["#1f77b4" if m == "einrel" else "#9e9e9e" for m in names]
            if key == "peak_bytes" and task == "budget":  # the devices' arenas, not the host
                e = rows["einrel"]
                peaks = [e["report_peak"][d] for d in sorted(e["report_peak"])]
                names = ["unconstrained\npeak", "budget", *(f"device {d}" for d in range(2))]
                vals = [v * scale for v in (e["unconstrained_peak"], e["budget"], *peaks)]
                colors = ["#9e9e9e", "#d62728", "#1f77b4", "#1f77b4"]
                label = "MiB per device"
            ax.bar(range(len(names)), vals, 0.6, color=colors)
            for i, val in enumerate(vals):
                ax.text(i, val, f"{val:.3g}", ha="center", va="bottom", fontsize="small")
            if key == "peak_bytes" and task != "budget":
                cap = 1.3 * sum(res["bytes"].values()) * scale
                ax.axhline(cap, color="#d62728", ls="--", lw=1)
                ax.text(len(names) - 0.5, cap, "1.3x (CSR+in+out)", color="#d62728",
                        ha="right", va="bottom", fontsize="small")  # fmt: skip
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels([m.replace("(", "\n(") for m in names], fontsize="x-small")
            names = list(rows)
            ax.set_ylabel(label)
            if j == 0:
                ax.set_title(f"{task}: {doc['shapes'][task]}", loc="left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nodes", type=lambda s: int(float(s)), default=10**6)
    p.add_argument("--edges", type=lambda s: int(float(s)), default=10**7)
    p.add_argument("--budget-edges", type=lambda s: int(float(s)), default=5 * 10**7)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--tasks", default="spmm,sddmm,budget")
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    p.add_argument("--replot", action="store_true")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--task", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        a.system = a.worker
        return worker(a)
    name = "sparse_quick" if a.quick else "sparse"
    if a.replot:
        doc = json.loads((common.RESULTS / f"{name}.json").read_text())
        return plot(doc, common.RESULTS / f"{name}.png")
    if a.quick:
        a.nodes, a.edges, a.budget_edges, a.iters, a.rounds = 2000, 20000, 60000, 2, 1
    common.warn_env()
    doc: dict[str, Any] = {"machine": common.machine(2), "tasks": {}, "shapes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for task in a.tasks.split(","):
            e = a.budget_edges if task == "budget" else a.edges
            data = Path(tmp) / f"e{e}"
            if not data.exists():
                data.mkdir()
                print(f"making {e} tuples over {a.nodes} x {a.nodes} keys", file=sys.stderr)
                make_data(data, a.nodes, e, a.dim)
            doc["shapes"][task] = f"N={a.nodes:.0e} E={e:.0e} d={a.dim}"
            doc["tasks"][task] = measure(task, data, a, sizes(a.nodes, e, a.dim, task))
            print(json.dumps(doc["tasks"][task]["verdict"]), file=sys.stderr)
    common.finish(name, doc, plot)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
