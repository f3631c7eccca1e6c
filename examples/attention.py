"""Softmax attention and its gradients, compiled for two devices and checked against numpy.

python examples/attention.py [--seq 256] [--dim 64] [--devices 2]
"""

from __future__ import annotations

import argparse

import numpy as np

import einrel as er


def main(seq: int = 256, dim: int = 64, devices: int = 2) -> float:
    """Run attention forward and backward; return the largest error against plain numpy."""
    q, k, v = (er.input(name, (seq, dim)) for name in "qkv")
    scores = er.einsum("sd,td->st", q, k) * (1.0 / np.sqrt(dim))
    out = er.einsum("st,td->sd", er.softmax(scores, axis=-1), v)
    loss = er.sum(out * out)
    grads = er.grad(loss, [q, k, v])
    prog = er.compile([out, *grads], devices=er.cpu(devices))
    print(prog.plan)

    rng = np.random.default_rng(0)
    feeds = {name: rng.standard_normal((seq, dim)).astype(np.float32) for name in "qkv"}
    got_out, *got_grads = prog(feeds)
    s = feeds["q"] @ feeds["k"].T / np.sqrt(dim)
    p = np.exp(s - s.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    want = p @ feeds["v"]
    error = float(np.max(np.abs(got_out - want)) / np.max(np.abs(want)))
    ref_grads = er.evaluate(grads, feeds)  # einrel's whole-tensor reference
    for g, r in zip(got_grads, ref_grads):
        error = max(error, float(np.max(np.abs(g - r)) / np.max(np.abs(r))))
    print(f"max relative error vs numpy and the reference: {error:.1e}")
    print(prog.report)
    prog.close()
    return error


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--devices", type=int, default=2)
    a = ap.parse_args()
    main(a.seq, a.dim, a.devices)
