"""Relabeling keys so that every key range of a cut holds about as many tuples as the others.

A relation cut into key ranges is only as balanced as its keys: with power-law degrees (a few
users, items or nodes hold most tuples) the range that holds them holds most of the work and
needs most of the memory. `er.compile(..., relabel=[...])` deals each such key out anew, per
feed: keys sorted by degree are dealt to the ranges of the cut in turns (a snake: 0..P-1, then
P-1..0), so every range gets keys of every degree. The new labels are used inside the program
only: the dense inputs that carry the key are permuted to match before a run, and the outputs
that carry it are permuted back after it, so results are what they are without relabeling.

What a key is relabeled with is its label class (`decompose.classes`): every dimension the key
flows through unchanged, across relations and dense tensors (in a two-layer GCN the source and
target keys of the adjacency are one class, as the first layer's output is the second's
input). A class that a slice, a concatenation, a merging reshape or a causal mask cuts into is
refused: those read positions, which relabeling moves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from .decompose.classes import Slot, label_classes, links
from .decompose.partition import PartDim, Partition
from .decompose.relations import dense_view
from .errors import CompileError
from .ir.graph import Graph
from .ir.relation import support_of
from .kernels.coo import Coo, cached, index_dtype


@dataclass(frozen=True)
class KeyClass:
    """One relabeled key: its size, the ranges the plan cuts it into, and where it is: keys
    of relation inputs (name, key dim), dims of dense inputs (node id, dim) and of outputs
    (output position, dim)."""

    size: int
    parts: int
    keys: tuple[tuple[str, int], ...]
    inputs: tuple[tuple[int, int], ...]
    outputs: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Relabeling:
    """The key classes a program relabels (see the module docstring)."""

    classes: tuple[KeyClass, ...]

    def labels(self, feeds: Mapping[str, Coo]) -> list[np.ndarray]:
        """The new label of every key of each class, from the relation feeds (kept with the
        first relation's feed, so a feed given again is not dealt again)."""
        out = []
        for c in self.classes:
            if len(_dealt_from(c)) > 1:  # dealt from several feeds: every run
                out.append(_deal(c, feeds))
            else:
                out.append(cached(feeds[c.keys[0][0]], ("relabel", c), partial(_deal, c, feeds)))
        return out

    def apply(self, graph: Graph, inputs: Mapping[int, Any]) -> tuple[dict[int, Any], list[Any]]:
        """Inputs by node id in the new labels, and each class's (new label, old key) arrays."""
        rel = {n.name: n.id for n in graph.relations}
        feeds = {name: inputs[i] for name, i in rel.items() if i in inputs}
        labels = self.labels(feeds)
        olds = [np.argsort(new).astype(new.dtype) for new in labels]
        out = dict(inputs)
        for name, i in rel.items():
            mine = [(c, lab) for c, lab in zip(self.classes, labels) if name in _dealt_from(c)]
            dims = [(j, lab) for c, lab in mine for r, j in c.keys if r == name]
            if not dims:
                continue
            if all(_dealt_from(c) == {name} for c, _ in mine):  # labels follow from this feed
                out[i] = cached(inputs[i], ("relabeled", self), partial(_map, inputs[i], dims))
            else:  # labels dealt from other feeds too: they may differ from run to run
                out[i] = _map(inputs[i], dims)
        for c, old in zip(self.classes, olds):
            for i, d in c.inputs:
                out[i] = np.take(out[i], old, axis=d)  # new row k is old row old[k]
        return out, list(zip(labels, olds))

    def restore(self, graph: Graph, outputs: list[Any], perms: Sequence[Any]) -> list[Any]:
        """Outputs back in the original key labels."""
        outs = list(outputs)
        for c, (new, old) in zip(self.classes, perms):
            for k, d in c.outputs:
                x = outs[k]
                if isinstance(x, Coo):
                    idx = np.array(x.indices)
                    idx[d] = old[idx[d]]
                    outs[k] = Coo(idx, x.values, x.shape)
                else:
                    outs[k] = np.take(x, new, axis=d)  # old key i sits at new[i]
        return outs


def _dealt_from(c: KeyClass) -> set[str]:
    return {name for name, _ in c.keys}


def _map(feed: Coo, dims: Sequence[tuple[int, np.ndarray]]) -> Coo:
    idx = np.array(feed.indices)
    for j, new in dims:
        idx[j] = new[idx[j]]
    idx.flags.writeable = False
    return Coo(idx, feed.values, feed.shape)


def _deal(c: KeyClass, feeds: Mapping[str, Coo]) -> np.ndarray:
    """New labels: keys by falling degree dealt in turns to the P ranges of an even cut."""
    degree = np.zeros(c.size, np.int64)
    for name, j in c.keys:
        degree += np.bincount(feeds[name].indices[j], minlength=c.size)
    p = c.parts
    rank = np.argsort(-degree, kind="stable")
    r = np.arange(c.size)
    turn, seat = np.divmod(r, p)
    full = (c.size // p) * p
    snake = np.where((turn % 2 == 1) & (r < full), p - 1 - seat, seat)
    starts = np.asarray(PartDim.split(c.size, p).bounds[:-1])
    new = np.empty(c.size, index_dtype(c.size))
    new[rank] = starts[snake] + turn
    return new


def plan_relabeling(
    graph: Graph, decomposition: Mapping[int, Partition], names: Sequence[str] | bool
) -> Relabeling | None:
    """The key classes of the relations `names` (True: every relation), checked."""
    relations = {n.name: n for n in graph.relations}
    chosen = list(relations) if names is True else list(names or [])
    unknown = sorted(set(chosen) - set(relations))
    if unknown:
        raise CompileError(f"relabel names {unknown}, which are not relations {sorted(relations)}")
    if not chosen:
        return None
    view = dense_view(graph)
    classes = label_classes(view)
    found: dict[Slot, list[tuple[str, int]]] = {}
    for name in chosen:
        node = relations[name]
        for j in range(len(node.attrs.keys)):
            found.setdefault(classes.of[node.id][j], []).append((name, j))
    out = []
    for cls, keys in found.items():
        members = classes.members(cls)
        _check(view, cls, classes.of, keys)
        parts = max(decomposition[v].dims[d].parts for v, d in members)
        inputs = tuple((v, d) for v, d in members if graph[v].op == "input")
        outputs = tuple(
            (k, d)
            for k, v in enumerate(graph.outputs)
            for d in range(_keyed_dims(graph, v))
            if classes.of[v][d] == cls
        )
        size = relations[keys[0][0]].shape[keys[0][1]]
        out.append(KeyClass(size, parts, tuple(keys), inputs, outputs))
    return Relabeling(tuple(out))


def _check(
    view: Graph, cls: Slot, of: Sequence[Sequence[Slot]], keys: Sequence[tuple[str, int]]
) -> None:
    """Refuse a class that something reading positions cuts into (see the module docstring)."""
    for n in view.nodes:
        why = None
        if n.op == "fill" and n.attrs.triu and cls in of[n.id]:
            why = "a causal mask"
        elif n.op in ("slice", "concat", "reshape"):
            kept = {(u, j) for _, u, j in links(view, n.id)}
            for u in n.inputs:
                dims = of[u][: len(view[u].shape)]  # the dims of u's output (not its join)
                if any(c == cls and (u, j) not in kept for j, c in enumerate(dims)):
                    why = f"a {n.op}"
        if why is not None:
            name, j = keys[0]
            raise CompileError(
                f"relabel: key {j} of relation {name!r} flows into {why} (node {n.name}), which "
                "reads positions that relabeling moves; relabel other relations or none"
            )


def _keyed_dims(graph: Graph, v: int) -> int:
    """How many leading dims of node v a key may run along (a relation's keys, or all)."""
    sup = support_of(graph[v])
    return len(graph[v].shape) if sup is None else sup.nkeys
