"""Placement benchmark on Doppler's six released graphs: simulated makespans of every placer.

Writes benchmarks/results/placement.json and placement.png (makespan relative to critical path).
Usage: python benchmarks/placement.py [--budget 30] [--seeds 3] [--graphs ffnn,chain_mm]

The learned placers join the table when `einrel.place.doppler` imports: "doppler" is the greedy
decoding of the committed policy for the graph (stages I+II; deterministic, so run once), and
"doppler+search" anneals from that assignment with the same budget and seeds as "search". The
JSON also records each committed policy's training history (episodes, seconds per episode).
"""

from __future__ import annotations

import argparse
import json
import statistics
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from einrel.errors import CompileError
from einrel.place import get_placer, load_graph_file
from einrel.place.dag import PlaceGraph, lower_bound, single_device_makespan
from einrel.place.graphfile import RELEASED_DIR, RELEASED_GRAPHS
from einrel.place.listsched import critical_path
from einrel.place.search import anneal
from einrel.place.simulate import make_simulator

ROOT = Path(__file__).resolve().parents[1]
DATA = RELEASED_DIR
GRAPHS = RELEASED_GRAPHS  # file stem -> devices it was decomposed for
UNIT = 1e10  # the papers' tools divide makespans by 1e10
CP_TIE_SEEDS = 20


@dataclass
class Row:
    """One graph's results, in units of 1e10."""

    graph: str
    ndev: int
    ops: int
    makespan: dict[str, float] = field(default_factory=dict)
    spread: dict[str, list[float]] = field(default_factory=dict)
    search_evals: list[int] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    training: list[dict[str, object]] = field(default_factory=list)
    policy_graphs: list[str] = field(default_factory=list)


def _median(
    name: str, place: Callable[[int], list[int]], sim: Callable[..., float], seeds: int, row: Row
) -> None:
    t = time.perf_counter()
    spans = [sim(place(seed)) / UNIT for seed in range(seeds)]
    row.seconds[name] = round((time.perf_counter() - t) / seeds, 3)
    row.makespan[name] = statistics.median(spans)
    row.spread[name] = spans


def bench_graph(stem: str, g: PlaceGraph, ndev: int, budget: float, seeds: int) -> Row:
    """Every placer on one graph; seeded placers report the median over `seeds` seeds."""
    sim = make_simulator(g)
    row = Row(stem, ndev, g.num_ops)
    row.makespan["1-device"] = single_device_makespan(g) / UNIT
    row.makespan["lower-bound"] = lower_bound(g, ndev) / UNIT
    for name in ("round-robin", "critical-path", "heft"):
        t = time.perf_counter()
        row.makespan[name] = sim(get_placer(name)(g, ndev, 0)) / UNIT
        row.seconds[name] = round(time.perf_counter() - t, 3)
    ties = sorted(sim(critical_path(g, ndev, seed)) / UNIT for seed in range(CP_TIE_SEEDS))
    row.makespan["cp-ties-best"] = ties[0]
    row.makespan["cp-ties-median"] = statistics.median(ties)
    _median("random", lambda s: get_placer("random")(g, ndev, s), sim, seeds, row)

    def search(seed: int) -> list[int]:
        result = anneal(g, ndev, seed, budget_s=budget)
        row.search_evals.append(result.evaluations)
        return result.assignment

    _median("search", search, sim, seeds, row)
    try:
        doppler = get_placer("doppler")
    except CompileError:
        return row  # the learned placer is not installed
    from einrel.place.doppler import fingerprint, policy_for

    policy = policy_for(g, ndev)
    row.training = list(policy.history)
    row.policy_graphs = sorted(policy.graphs.values())
    assert fingerprint(g) in policy.graphs, "the committed policy was trained on another graph"
    _median("doppler", lambda s: doppler(g, ndev, s), sim, 1, row)
    _median(
        "doppler+search",
        lambda s: anneal(g, ndev, s, budget_s=budget, start=doppler(g, ndev, s)).assignment,
        sim,
        seeds,
        row,
    )
    return row


COLUMNS = (
    "1-device",
    "lower-bound",
    "round-robin",
    "random",
    "critical-path",
    "cp-ties-best",
    "cp-ties-median",
    "heft",
    "search",
    "doppler",
    "doppler+search",
)
RATIOS = ("search", "doppler", "doppler+search")


def format_table(rows: list[Row]) -> str:
    cols = [c for c in COLUMNS if any(c in r.makespan for r in rows)]
    ratios = [c for c in RATIOS if any(c in r.makespan for r in rows)]
    lines = [
        f"{'graph (devices)':34s}"
        + "".join(f"{c:>15s}" for c in cols)
        + "".join(f"{c + '/CP':>18s}" for c in ratios)
    ]
    for r in rows:
        cells = "".join(
            f"{r.makespan[c]:15.1f}" if c in r.makespan else f"{'-':>15s}" for c in cols
        )
        cp = r.makespan["critical-path"]
        cells += "".join(
            f"{r.makespan[c] / cp:18.3f}" if c in r.makespan else f"{'-':>18s}" for c in ratios
        )
        lines.append(f"{r.graph + f' ({r.ndev})':34s}{cells}")
    return "\n".join(lines)


def format_training(rows: list[Row]) -> str:
    """Per graph: each training stage of its committed policy, episodes and time per episode."""
    lines = []
    for r in rows:
        for h in r.training:
            lines.append(
                f"{r.graph + f' ({r.ndev})':34s} stage {h['stage']}: {h['episodes']:5d} episodes, "
                f"{h['seconds']:7.1f} s, {1e3 * float(h['seconds_per_episode']):6.1f} ms/episode"
            )
    return "\n".join(lines)


def plot(rows: list[Row], path: Path) -> None:
    """Grouped bars: each placer's makespan divided by critical path's, per graph."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [c for c in ("lower-bound", "round-robin", "random", "critical-path", "heft", "search")]
    names += [n for n in ("doppler", "doppler+search") if any(n in r.makespan for r in rows)]
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(max(8, 1.8 * len(rows)), 4.5))
    for i, name in enumerate(names):
        xs = [k + (i - (len(names) - 1) / 2) * width for k in range(len(rows))]
        ys = [r.makespan.get(name, float("nan")) / r.makespan["critical-path"] for r in rows]
        ax.bar(xs, ys, width, label=name)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(rows)))
    labels = [f"{textwrap.fill(r.graph.replace('_', ' '), 18)}\n({r.ndev} dev)" for r in rows]
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("simulated makespan / critical path")
    ax.set_title("Placement on Doppler's graphs (lower is better)")
    ax.set_ylim(0, 1.25 * ax.get_ylim()[1])
    ax.legend(fontsize=7, ncol=(len(names) + 1) // 2, loc="upper center")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=30.0, help="search seconds per run")
    parser.add_argument("--seeds", type=int, default=3, help="seeds for random/search/doppler")
    parser.add_argument("--graphs", default="", help="comma-separated substrings of file names")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    wanted = [w for w in args.graphs.split(",") if w]
    rows = []
    for stem, ndev in GRAPHS.items():
        if wanted and not any(w in stem for w in wanted):
            continue
        g = load_graph_file(args.data / f"{stem}.txt")
        rows.append(bench_graph(stem, g, ndev, args.budget, args.seeds))
        print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    print(format_table(rows))
    if any(r.training for r in rows):
        print(format_training(rows))
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "units": "simulated makespan / 1e10 (the Doppler paper's semantics)",
        "search_budget_s": args.budget,
        "seeds": args.seeds,
        "cp_tie_seeds": CP_TIE_SEEDS,
        "graphs": [vars(r) for r in rows],
    }
    (args.out / "placement.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(rows, args.out / "placement.png")
    return rows


if __name__ == "__main__":
    main()
