"""The same compiled program on Ray actors and on local devices.

    python examples/ray_run.py [--devices 2] [--address auto]

Without --address a local Ray runtime is started (2 CPUs); `--address auto` joins a running
cluster (`ray start --head` first). Needs the ray extra: pip install 'einrel[ray]'.
"""

from __future__ import annotations

import argparse

import numpy as np

import einrel as er
from einrel.workloads import get_workload


def main(devices: int = 2, address: str | None = None) -> float:
    """Run one training step on Ray and locally; return the largest difference."""
    import ray

    if address is None and not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    wl = get_workload("ffnn_train", "small")
    feeds = wl.make_feeds(0)
    on_ray = er.compile(wl.outputs, devices=er.ray(devices, address=address))
    local = er.compile(wl.outputs, devices=er.cpu(devices))
    got, want = on_ray(feeds), local(feeds)
    diff = max(float(np.max(np.abs(g - w))) for g, w in zip(got, want))
    print(f"Ray: {on_ray.report}")
    print(f"local: {local.report}")
    print(f"max abs difference between Ray and local runs: {diff:.1e}")
    on_ray.close()
    local.close()
    return diff


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--address", default=None)
    a = ap.parse_args()
    main(a.devices, a.address)
