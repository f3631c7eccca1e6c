"""A training step under a memory budget: blocks that do not fit are offloaded to host RAM.

    python examples/memory_budget.py [--fraction 0.5] [--devices 2]

The budget is a fraction of the peak the unconstrained plan needs per device; the program
computes what the unconstrained one does (to float32 rounding: finer blocks sum in another
order).
"""

from __future__ import annotations

import argparse

import numpy as np

import einrel as er
from einrel.memory import plan_memory
from einrel.workloads import get_workload


def main(fraction: float = 0.5, devices: int = 2) -> dict[str, float]:
    """Run the step with and without the budget; return peak bytes, offloaded bytes and error."""
    wl = get_workload("ffnn_train", "small")
    feeds = wl.make_feeds(0)
    free = er.compile(wl.outputs, devices=er.cpu(devices))
    want = free(feeds)
    free.close()
    peak = max(plan_memory(free.plan.tasks, None).stats.peak_bytes)
    budget = int(peak * fraction)
    prog = er.compile(wl.outputs, devices=er.cpu(devices, memory=budget))
    got = prog(feeds)
    error = max(float(np.max(np.abs(g - w))) for g, w in zip(got, want))
    rep = prog.report
    print(f"budget {budget / 2**20:.2f} MiB per device (unconstrained peak {peak / 2**20:.2f} MiB)")
    print(rep)
    print(f"max abs difference from the unconstrained run: {error:.1e}")
    prog.close()
    return {
        "budget": budget,
        "peak": max(rep.peak_bytes.values()),
        "offloaded": rep.bytes_offloaded,
        "error": error,
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fraction", type=float, default=0.5)
    ap.add_argument("--devices", type=int, default=2)
    a = ap.parse_args()
    main(a.fraction, a.devices)
