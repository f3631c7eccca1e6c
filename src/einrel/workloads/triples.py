"""Knowledge-graph triples for the embedding workloads: Nations, Kinships and UMLS read from an
installed `pykeen` package (never copied), synthetic sets of any size with a learnable
structure, and the filtered rank metrics (MRR, Hits@k) on held-out triples.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import EinrelError

PYKEEN_SETS = ("nations", "kinships", "umls")


@dataclass(frozen=True)
class Triples:
    """(3, n) int32 arrays of (head, relation, tail) ids per split."""

    name: str
    entities: int
    relations: int
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    def __repr__(self) -> str:
        return (
            f"Triples({self.name}: {self.entities} entities, {self.relations} relations, "
            f"{self.train.shape[1]}/{self.valid.shape[1]}/{self.test.shape[1]} "
            "train/valid/test triples)"
        )


def _read(path: Path) -> np.ndarray:
    rows = [ln.split("\t") for ln in path.read_text().splitlines() if ln.strip()]
    if any(len(r) != 3 for r in rows):
        raise EinrelError(f"{path}: every line must be head<TAB>relation<TAB>tail")
    return np.array(rows, dtype=object).reshape(-1, 3)


def pykeen_dataset(name: str) -> Triples | None:
    """One of PyKEEN's small benchmark sets from the installed `pykeen` package; None when
    it is not installed. Ids are given in the training split's sorted order, as PyKEEN does;
    held-out triples naming anything unseen in training are dropped."""
    if name not in PYKEEN_SETS:
        raise EinrelError(f"unknown triple set {name!r}; expected one of {PYKEEN_SETS}")
    spec = importlib.util.find_spec("pykeen")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "datasets" / name
    if not (folder / "train.txt").exists():
        return None
    raw = {s: _read(folder / f"{s}.txt") for s in ("train", "valid", "test")}
    ents = {e: k for k, e in enumerate(sorted(set(raw["train"][:, 0]) | set(raw["train"][:, 2])))}
    rels = {r: k for k, r in enumerate(sorted(set(raw["train"][:, 1])))}

    def ids(rows: np.ndarray) -> np.ndarray:
        keep = [h in ents and r in rels and t in ents for h, r, t in rows]
        kept = rows[np.array(keep, bool)] if len(rows) else rows
        return np.array(
            [
                [ents[h] for h, _, _ in kept],
                [rels[r] for _, r, _ in kept],
                [ents[t] for *_, t in kept],
            ],
            dtype=np.int32,
        ).reshape(3, -1)

    return Triples(name, len(ents), len(rels), *(ids(raw[s]) for s in ("train", "valid", "test")))


def synthetic(
    entities: int,
    relations: int,
    triples: int,
    groups: int = 64,
    exponent: float = 1.0,
    held: float = 0.01,
    seed: int = 0,
) -> Triples:
    """Triples whose tails are predictable: entities fall in `groups` hidden groups on a line,
    every relation moves a head's group by its own shift (clipped to the line) and a tail is
    drawn from that group by power-law popularity; heads are power-law too. Duplicates are
    dropped, then `held` of the triples go to each of valid and test."""
    if min(entities, relations, triples) < 1 or entities < 2 * groups:
        raise EinrelError(
            f"synthetic triples: need positive sizes and at least {2 * groups} entities, "
            f"got {entities} entities, {relations} relations, {triples} triples"
        )
    rng = np.random.default_rng(seed)
    group = rng.permutation(entities) % groups  # every group gets entities
    pop = 1.0 / np.arange(1, entities + 1) ** exponent
    h = rng.choice(entities, triples, p=pop / pop.sum())
    r = rng.integers(0, relations, triples)
    shift = rng.integers(-3, 4, relations)
    want = np.clip(group[h] + shift[r], 0, groups - 1)
    t = np.empty(triples, np.int64)
    order = np.argsort(want, kind="stable")
    bounds = np.searchsorted(want[order], np.arange(groups + 1))
    for g in range(groups):
        members = np.flatnonzero(group == g)
        w = pop[members] / pop[members].sum()
        t[order[bounds[g] : bounds[g + 1]]] = rng.choice(members, bounds[g + 1] - bounds[g], p=w)
    flat = np.unique((h * relations + r) * entities + t)
    flat = flat[rng.permutation(flat.size)]
    ids = np.stack([flat // entities // relations, flat // entities % relations, flat % entities])
    n = max(1, int(held * flat.size))
    tri = ids.astype(np.int32)
    return Triples(
        f"synthetic{triples}", entities, relations, tri[:, 2 * n :], tri[:, :n], tri[:, n : 2 * n]
    )


Scorer = Callable[[np.ndarray, np.ndarray, str], np.ndarray]
"""scorer(fixed, relation, side) -> (n, entities) scores: with side "tail", of every entity as
the tail of (fixed[k], relation[k], ·); with "head", as the head of (·, relation[k], fixed[k])."""


def _known(data: Triples) -> dict[str, dict[tuple[int, int], np.ndarray]]:
    """Every split's true tails per (head, relation), and heads per (relation, tail)."""
    allt = np.concatenate([data.train, data.valid, data.test], axis=1).astype(np.int64)
    out: dict[str, dict[tuple[int, int], np.ndarray]] = {}
    for side, (a, b, c) in {"tail": (0, 1, 2), "head": (2, 1, 0)}.items():
        order = np.lexsort((allt[c], allt[b], allt[a]))
        key = allt[a][order] * data.relations + allt[b][order]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        ends = np.r_[starts[1:], key.size]
        vals = allt[c][order]
        out[side] = {
            (int(key[s] // data.relations), int(key[s] % data.relations)): vals[s:e]
            for s, e in zip(starts, ends, strict=True)
        }
    return out


def filtered_ranks(
    scorer: Scorer, data: Triples, triples: np.ndarray, chunk: int = 1024
) -> np.ndarray:
    """The filtered realistic rank of every triple's tail and head (2, n): other true triples
    of any split are left out of the ranking, and ties count half (the mean of the optimistic
    and the pessimistic rank, as PyKEEN reports)."""
    known = _known(data)
    ranks = np.empty((2, triples.shape[1]))
    for row, (side, fixed, answer) in enumerate((("tail", 0, 2), ("head", 2, 0))):
        for lo in range(0, triples.shape[1], chunk):
            part = triples[:, lo : lo + chunk]
            s = scorer(part[fixed], part[1], side).astype(np.float64)
            true = s[np.arange(part.shape[1]), part[answer]]
            for k in range(part.shape[1]):
                others = known[side][(int(part[fixed, k]), int(part[1, k]))]
                s[k, others] = -np.inf
            better = (s > true[:, None]).sum(1)
            ties = (s == true[:, None]).sum(1)  # the true one is -inf now; ties are others
            ranks[row, lo : lo + chunk] = 1 + better + ties / 2.0
    return ranks


def rank_metrics(ranks: np.ndarray, hits: tuple[int, ...] = (1, 3, 10)) -> dict[str, float]:
    """MRR and Hits@k over both sides' ranks."""
    out = {"mrr": float(np.mean(1.0 / ranks))}
    out.update({f"hits@{k}": float(np.mean(ranks <= k)) for k in hits})
    return out
