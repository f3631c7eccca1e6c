"""Doppler on einrel's own task graph with the real engine: a LLaMA-block training step on
er.cpu(N), measured wall time of each placement.

The workload is decomposed with EinDecomp for N devices; its placement view (modelled seconds
per task and per transfer, `einrel.place.placers.to_place_graph`) is what every placer sees.
Doppler trains stages I and II on the simulator, then stage III with the LocalEngine's measured
wall time as the cost (its recipe first picks, side by side, how many of the devices to place on,
and rematches its best checkpoint against its start; `einrel.place.doppler.trainer`). Every
placement is then run `--repeats` times, interleaved (one run of each placement per round, after
one warm-up round), and the median wall time is reported.

Usage: python benchmarks/doppler_real.py [--size medium] [--devices 4] [--episodes 300,400,150]
       [--policy stage3.pt] [--repeats 5]
Writes benchmarks/results/doppler_real.json and doppler_real.png; the stage III policy is saved in
the user cache (`einrel place` finds it there), and `er.compile(..., placer=Doppler(policy=PATH))`
places this workload with it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from einrel.place.dag import lower_bound, single_device_makespan
from einrel.place.doppler import DopplerPolicy, load_policy, train
from einrel.place.doppler.policy import cache_dir, policy_filename
from einrel.place.doppler.recipes import RECIPES
from einrel.place.placers import get_placer
from einrel.place.simulate import make_simulator
from einrel.workloads.targets import workload_target

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="medium")
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--episodes", default="300,400,150", help="stages I,II,III")
    parser.add_argument("--policy", type=Path, help="skip training: a stage III policy")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    ndev = args.devices
    target = workload_target(f"llama_block:{args.size}", ndev, seed=args.seed)
    g = target.graph
    sim = make_simulator(g)
    print(
        f"{target.name}: {len(target.tasks.tasks)} tasks, {g.num_ops} ops to place, {ndev} devices"
    )

    placements: dict[str, list[int]] = {}
    for name in ("round-robin", "critical-path", "heft"):
        placements[name] = get_placer(name)(g, ndev, args.seed)
    report: dict = {"workload": target.name, "devices": ndev, "ops": g.num_ops}
    if args.policy is not None:
        policy = load_policy(args.policy, ndev)
        placements["doppler (stage III)"] = policy.place(g)
    else:
        e1, e2, e3 = (int(x) for x in args.episodes.split(","))
        policy = DopplerPolicy(ndev, seed=args.seed)
        logs = [train(policy, g, 1, episodes=e1, progress=True, unit=1e-3, seed=args.seed)]
        logs.append(
            train(
                policy,
                g,
                2,
                episodes=e2,
                progress=True,
                unit=1e-3,
                seed=args.seed + 1,
                **RECIPES["einrel"][2],
            )
        )
        placements["doppler (stage II)"] = policy.place(g)

        def measured(assignment: list[int]) -> float:
            return target.run(assignment)

        def measured3(assignment: list[int]) -> float:
            return target.run(assignment, repeats=3)

        logs.append(
            train(
                policy,
                g,
                3,
                episodes=e3,
                oracle=measured,
                eval_oracle=measured3,
                progress=True,
                unit=1e-3,
                seed=args.seed + 2,
                **{**RECIPES["einrel"][3], "eval_every": 5},
            )
        )
        placements["doppler (stage III)"] = policy.place(g)
        print(
            f"stage III: places on {policy.active} of {ndev} devices; measured side by side "
            f"against all {ndev}: {logs[-1].device_ratios}"
        )
        path = policy.save(cache_dir() / policy_filename(g.name, ndev, policy.fingerprint or ""))
        report["policy"] = str(path)
        report["training"] = [log.summary() for log in logs]
        for log in logs:
            print(
                f"stage {log.stage}: {log.episodes} episodes, {log.seconds:.1f} s, "
                f"{log.seconds_per_episode * 1e3:.0f} ms/episode"
            )

    times: dict[str, list[float]] = {k: [] for k in placements}
    for a in placements.values():  # warm-up round
        target.run(a)
    for _ in range(args.repeats):
        for name, a in placements.items():
            times[name].append(target.run(a))
    report["modelled_1_device_s"] = single_device_makespan(g)
    report["modelled_lower_bound_s"] = lower_bound(g, ndev)
    report["repeats"] = args.repeats
    report["placements"] = {
        name: {
            "wall_median_s": statistics.median(times[name]),
            "wall_min_s": min(times[name]),
            "wall_s": times[name],
            "simulated_s": sim(placements[name]),
        }
        for name in placements
    }
    cp = report["placements"]["critical-path"]["wall_median_s"]
    print(f"{'placement':24s}{'wall median ms':>16s}{'vs CP':>8s}{'simulated ms':>14s}")
    for name, r in report["placements"].items():
        print(
            f"{name:24s}{r['wall_median_s'] * 1e3:16.1f}{r['wall_median_s'] / cp:8.3f}"
            f"{r['simulated_s'] * 1e3:14.2f}"
        )
    report["timestamp"] = time.strftime("%Y-%m-%d %H:%M:%S")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "doppler_real.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.out / "doppler_real.png")
    return report


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["placements"])
    med = [report["placements"][n]["wall_median_s"] * 1e3 for n in names]
    runs = [[t * 1e3 for t in report["placements"][n]["wall_s"]] for n in names]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(range(len(names)), med, color="tab:blue", alpha=0.7, label="median")
    for i, r in enumerate(runs):
        ax.plot([i] * len(r), r, "k.", markersize=4)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=8, rotation=15)
    ax.set_ylabel("wall time per step (ms)")
    ax.set_title(
        f"{report['workload']} on er.cpu({report['devices']}): measured wall time "
        f"({report['repeats']} runs each)"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
