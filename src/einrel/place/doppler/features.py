"""Static inputs of Doppler's networks for one graph (the Doppler paper) and the graph fingerprint.

Node features (5 per op, z-scored per column): comp, b-level, t-level, Σ comm of the inputs,
Σ comm of the output over its consumers. Edge feature (1, z-scored): the comm cost of the source.
The MPNN runs on the bidirected graph, so every edge appears in both directions with its feature.
SEL also sums embeddings along two paths per op: its b-level critical path (the op, then always
the child of largest b-level, down to a sink) and its t-level path (from an entry op down to it,
always through the predecessor that sets the t-level); both sums are averaged over path length,
and are stored as row-normalised path matrices so one matmul gives them for every op.
For PLC's co-parent feature (see `env`), each op also lists its co-parents: the other
predecessors of its consumers, with their comm costs.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

import numpy as np

from ..dag import PlaceGraph, b_levels, t_levels

NODE_FEATURES = 5
DEVICE_FEATURES = 6


def fingerprint(graph: PlaceGraph) -> str:
    """A hex digest of the costs and edges (names do not count): which graph a policy saw."""
    h = hashlib.sha256()
    h.update(struct.pack("<q", graph.num_ops))
    h.update(np.asarray(graph.comp, dtype="<f8").tobytes())
    h.update(np.asarray(graph.comm, dtype="<f8").tobytes())
    h.update(np.asarray(sorted(set(graph.edges)), dtype="<i8").tobytes())
    return h.hexdigest()[:16]


def _zscore(a: np.ndarray) -> np.ndarray:
    """Per-column z-score; a constant column becomes 0."""
    mean = a.mean(axis=0, keepdims=True)
    std = a.std(axis=0, keepdims=True)
    return np.where(std > 0, (a - mean) / np.where(std > 0, std, 1.0), 0.0)


@dataclass(frozen=True)
class GraphFeatures:
    """Everything static the policies need about one graph, as numpy arrays."""

    graph: PlaceGraph
    fingerprint: str
    x: np.ndarray  # (n, 5) float32, z-scored node features
    src: np.ndarray  # (2E,) int64 bidirected edge sources
    dst: np.ndarray  # (2E,) int64 bidirected edge destinations
    edge_x: np.ndarray  # (2E,) float32 z-scored comm of the original source
    b_path: np.ndarray  # (n, n) float32: row v averages the ops on v's b-level path
    t_path: np.ndarray  # (n, n) float32: row v averages the ops on v's t-level path
    blevel: np.ndarray  # (n,) float64 b-levels (CP priority)
    comp: np.ndarray  # (n,) float64
    comm: np.ndarray  # (n,) float64
    preds: tuple[np.ndarray, ...]  # int64 arrays
    succs: tuple[tuple[int, ...], ...]
    indegree: tuple[int, ...]
    # per op v: the other predecessors u of v's consumers ("co-parents") and comm_u, for the
    # device feature "how much of what v's consumers also read already sits on d"
    coparents: tuple[tuple[tuple[int, float], ...], ...] = ()

    @property
    def num_ops(self) -> int:
        return self.graph.num_ops


def graph_features(graph: PlaceGraph) -> GraphFeatures:
    n = graph.num_ops
    comp = np.asarray(graph.comp, dtype=np.float64)
    comm = np.asarray(graph.comm, dtype=np.float64)
    b = np.asarray(b_levels(graph), dtype=np.float64)
    t = np.asarray(t_levels(graph), dtype=np.float64)
    in_comm = np.array([comm[list(p)].sum() if p else 0.0 for p in graph.preds])
    out_comm = comm * np.array([len(s) for s in graph.succs], dtype=np.float64)
    raw = np.stack([comp, b, t, in_comm, out_comm], axis=1) if n else np.zeros((0, 5))
    x = _zscore(raw).astype(np.float32) if n else raw.astype(np.float32)

    edges = sorted(set(graph.edges))
    s = np.array([a for a, _ in edges], dtype=np.int64)
    d = np.array([c for _, c in edges], dtype=np.int64)
    src = np.concatenate([s, d])
    dst = np.concatenate([d, s])
    ex = comm[src[: len(s)]] if len(s) else np.zeros(0)
    ex = np.concatenate([ex, ex])
    if len(ex):
        std = ex.std()
        ex = (ex - ex.mean()) / std if std > 0 else np.zeros_like(ex)
    edge_x = ex.astype(np.float32)

    # b-level path: v, then the child of largest b (smallest id on ties), down to a sink.
    best_child = [
        max(graph.succs[v], key=lambda c: (b[c], -c)) if graph.succs[v] else -1 for v in range(n)
    ]
    # t-level path: the predecessor u maximising t(u) + comp_u + comm_u (smallest id on ties).
    best_pred = [
        max(graph.preds[v], key=lambda u: (t[u] + comp[u] + comm[u], -u)) if graph.preds[v] else -1
        for v in range(n)
    ]
    b_path = np.zeros((n, n), dtype=np.float32)
    t_path = np.zeros((n, n), dtype=np.float32)
    for v in range(n):
        path = [v]
        while best_child[path[-1]] >= 0:
            path.append(best_child[path[-1]])
        b_path[v, path] = 1.0 / len(path)
        path = [v]
        while best_pred[path[-1]] >= 0:
            path.append(best_pred[path[-1]])
        t_path[v, path] = 1.0 / len(path)

    return GraphFeatures(
        graph=graph,
        fingerprint=fingerprint(graph),
        x=x,
        src=src,
        dst=dst,
        edge_x=edge_x,
        b_path=b_path,
        t_path=t_path,
        blevel=b,
        comp=comp,
        comm=comm,
        preds=tuple(np.asarray(p, dtype=np.int64) for p in graph.preds),
        succs=graph.succs,
        indegree=tuple(len(p) for p in graph.preds),
        coparents=tuple(
            tuple(
                (u, float(comm[u]))
                for u in sorted({u for c in graph.succs[v] for u in graph.preds[c]} - {v})
            )
            for v in range(n)
        ),
    )
