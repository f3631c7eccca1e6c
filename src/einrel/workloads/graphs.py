"""Graph data for the node-classification workloads: the karate club, stochastic block models
with block-correlated features, splits, and the GCN's normalised adjacency.

Edges are undirected and stored both ways, as (2, E) int32 arrays sorted by (source, target);
no data is downloaded (the karate club ships with networkx, the rest is generated).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import EinrelError
from ..kernels.coo import stable_argsort


@dataclass(frozen=True)
class GraphData:
    """A graph with node features, labels and a train / validation / test split (boolean
    masks over the nodes)."""

    name: str
    edges: np.ndarray  # (2, E) int32, both directions, no self-loops, sorted
    features: np.ndarray  # (N, F) float32
    labels: np.ndarray  # (N,) int64
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    @property
    def nodes(self) -> int:
        return int(self.features.shape[0])

    @property
    def classes(self) -> int:
        return int(self.labels.max()) + 1

    def __repr__(self) -> str:
        return (
            f"GraphData({self.name}: {self.nodes} nodes, {self.edges.shape[1]} directed edges, "
            f"{self.features.shape[1]} features, {self.classes} classes, train/val/test "
            f"{int(self.train.sum())}/{int(self.val.sum())}/{int(self.test.sum())})"
        )


def _both_ways(src: np.ndarray, dst: np.ndarray, n: int) -> np.ndarray:
    """Distinct undirected edges without self-loops, both directions, sorted."""
    keep = src != dst
    a = np.concatenate([src[keep], dst[keep]]).astype(np.int64)
    b = np.concatenate([dst[keep], src[keep]]).astype(np.int64)
    flat = np.sort(a * n + b)
    flat = flat[np.r_[True, flat[1:] != flat[:-1]]] if flat.size else flat
    return np.stack([flat // n, flat % n]).astype(np.int32)


def split(
    labels: np.ndarray, train_per_class: int, val: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`train_per_class` nodes of every class for training, a `val` share of the rest for
    validation, and the remaining nodes for testing (the Planetoid convention)."""
    rng = np.random.default_rng(seed)
    n = labels.size
    train = np.zeros(n, bool)
    for c in range(int(labels.max()) + 1):
        members = np.flatnonzero(labels == c)
        if members.size <= train_per_class:
            raise EinrelError(f"class {c} has {members.size} nodes, too few to train on")
        train[rng.choice(members, train_per_class, replace=False)] = True
    rest = rng.permutation(np.flatnonzero(~train))
    cut = round(val * rest.size)
    valm, test = np.zeros(n, bool), np.zeros(n, bool)
    valm[rest[:cut]] = True
    test[rest[cut:]] = True
    return train, valm, test


def karate(seed: int = 0, train_per_class: int = 4) -> GraphData:
    """Zachary's karate club (networkx): 34 members, 78 friendships, labelled by the club
    each joined; features are one-hot member ids, as in the GCN paper's demonstration."""
    import networkx as nx

    g = nx.karate_club_graph()
    n = g.number_of_nodes()
    src, dst = np.array(list(g.edges())).T
    labels = np.array([g.nodes[i]["club"] != "Mr. Hi" for i in range(n)], dtype=np.int64)
    train, val, test = split(labels, train_per_class, 0.0, seed)
    x = np.eye(n, dtype=np.float32)
    return GraphData("karate", _both_ways(src, dst, n), x, labels, train, val, test)


def sbm(
    nodes: int,
    edges: int,
    classes: int = 10,
    features: int = 64,
    within: float = 0.6,
    signal: float = 0.15,
    train_per_class: int = 20,
    seed: int = 0,
) -> GraphData:
    """A stochastic block model: `classes` equal blocks, about `edges` directed edges (each
    undirected pair twice), a share `within` of them inside a block; node features are the
    block's random centroid times `signal` plus unit noise, so features alone classify
    poorly and neighbours help."""
    if nodes < classes * (train_per_class + 2) or edges < 2:
        raise EinrelError(f"sbm: {nodes} nodes and {edges} edges are too few for {classes} classes")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(nodes) % classes).astype(np.int64)
    by_class = [np.flatnonzero(labels == c) for c in range(classes)]
    pairs = edges // 2
    src = rng.integers(0, nodes, pairs)
    inside = rng.random(pairs) < within
    dst = rng.integers(0, nodes, pairs)
    own = labels[src[inside]]
    sizes = np.array([b.size for b in by_class])
    pick = (rng.random(own.size) * sizes[own]).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    flat = np.concatenate(by_class)
    dst[inside] = flat[starts[own] + pick]
    centroids = rng.standard_normal((classes, features)).astype(np.float32)
    x = rng.standard_normal((nodes, features), dtype=np.float32)
    x += signal * centroids[labels]
    train, val, test = split(labels, train_per_class, 0.1, seed + 1)
    return GraphData(f"sbm{nodes}", _both_ways(src, dst, nodes), x, labels, train, val, test)


def normalized_adjacency(edges: np.ndarray, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """The GCN's D^-1/2 (A + I) D^-1/2 as (indices (2, E + N), values): the edges with a
    self-loop at every node, sorted by (source, target), degrees counting the self-loop."""
    loops = np.arange(nodes, dtype=edges.dtype)
    src = np.concatenate([edges[0], loops]).astype(np.int64)
    dst = np.concatenate([edges[1], loops]).astype(np.int64)
    order = stable_argsort(src * nodes + dst)
    src, dst = src[order], dst[order]
    deg = np.bincount(dst, minlength=nodes).astype(np.float64)
    inv = 1.0 / np.sqrt(deg)
    values = (inv[src] * inv[dst]).astype(np.float32)
    return np.stack([src, dst]).astype(edges.dtype), values
