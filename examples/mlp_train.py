"""Train a two-layer MLP classifier with er.optim, one compiled program for every step.

    python examples/mlp_train.py [--optimizer adam|sgd] [--steps 200] [--devices 2]

The data are two interleaved spirals (made here, nothing is downloaded). The learning rate is a
run-time variable (`er.var("lr")`), so the same program also serves a learning-rate schedule.
"""

from __future__ import annotations

import argparse

import numpy as np

import einrel as er


def spirals(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n points on two spirals in 2-D, and their one-hot labels."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.25, 3 * np.pi, n)
    label = rng.integers(0, 2, n)
    r = t / (3 * np.pi)
    x = np.stack([r * np.cos(t + np.pi * label), r * np.sin(t + np.pi * label)], axis=1)
    x += rng.normal(0, 0.02, x.shape)
    return x.astype(np.float32), np.eye(2, dtype=np.float32)[label]


def main(
    optimizer: str = "adam", steps: int = 200, devices: int = 2, hidden: int = 64
) -> list[float]:
    """Train and return the loss of every step."""
    x_np, y_np = spirals(512)
    x = er.input("x", x_np.shape)
    y = er.input("y", y_np.shape)
    w0 = er.input("w0", (2, hidden))
    w1 = er.input("w1", (hidden, hidden))
    w2 = er.input("w2", (hidden, 2))
    h = er.tanh(x @ w0)
    h = er.tanh(h @ w1)
    loss = er.cross_entropy(h @ w2, y)
    params = [w0, w1, w2]
    lr = er.var("lr")
    opt = er.optim.Adam(lr=lr) if optimizer == "adam" else er.optim.SGD(lr=lr, momentum=0.9)
    update = opt.update(params, er.grad(loss, params))
    prog = er.compile([loss, *update.outputs], devices=er.cpu(devices))

    rng = np.random.default_rng(1)
    feeds = {"x": x_np, "y": y_np, **update.init_state()}
    for p in params:
        fan_in = p.shape[0]
        feeds[p.node.name] = (rng.standard_normal(p.shape) / np.sqrt(fan_in)).astype(np.float32)
    rate = 0.01 if optimizer == "adam" else 0.1
    losses = []
    for step in range(1, steps + 1):
        loss_v, *new = prog({**feeds, "lr": rate, **update.variables(step)})
        feeds.update(update.next_feeds(new))
        losses.append(float(loss_v))
        if step == 1 or step % max(1, steps // 10) == 0:
            print(f"step {step:4d}  loss {float(loss_v):.4f}")
    prog.close()
    return losses


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--devices", type=int, default=2)
    args = ap.parse_args()
    main(args.optimizer, args.steps, args.devices)
