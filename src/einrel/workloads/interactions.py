"""User–item interaction data for the recommendation workloads: MovieLens-100k read from an
installed `recbole` package (never copied: its licence forbids redistribution), power-law
synthetic sets of any size, a leave-out split, and Recall@k / NDCG@k on the held-out items.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import EinrelError


@dataclass(frozen=True)
class Interactions:
    """Implicit feedback: training pairs and held-out pairs, (2, n) int32 (user, item) arrays
    sorted by user then item."""

    name: str
    users: int
    items: int
    train: np.ndarray
    test: np.ndarray

    def __repr__(self) -> str:
        return (
            f"Interactions({self.name}: {self.users} users, {self.items} items, "
            f"{self.train.shape[1]} training and {self.test.shape[1]} held-out interactions)"
        )


def _sorted_pairs(u: np.ndarray, i: np.ndarray, items: int) -> np.ndarray:
    flat = np.sort(u.astype(np.int64) * items + i)
    flat = flat[np.r_[True, flat[1:] != flat[:-1]]] if flat.size else flat
    return np.stack([flat // items, flat % items]).astype(np.int32)


def leave_out(
    name: str, u: np.ndarray, i: np.ndarray, users: int, items: int, share: float, seed: int
) -> Interactions:
    """Hold out `share` of every user's distinct interactions (at least one, for users with
    two or more), the rest for training."""
    pairs = _sorted_pairs(u, i, items)
    rng = np.random.default_rng(seed)
    counts = np.bincount(pairs[0], minlength=users)
    held = np.zeros(pairs.shape[1], bool)
    draw = rng.random(pairs.shape[1])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(pairs.shape[1], np.int64)  # each pair's rank by draw within its user
    order = np.lexsort((draw, pairs[0]))
    rank[order] = np.arange(pairs.shape[1]) - np.repeat(starts, counts)
    want = np.where(counts >= 2, np.maximum(1, np.floor(share * counts)), 0).astype(np.int64)
    held = rank < want[pairs[0]]
    return Interactions(name, users, items, pairs[:, ~held], pairs[:, held])


def movielens_100k(share: float = 0.2, seed: int = 0) -> Interactions | None:
    """MovieLens-100k from the installed `recbole` package (`pip install --no-deps recbole`),
    every rating an interaction; None when it is not installed."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "dataset_example" / "ml-100k" / "ml-100k.inter"
    if not path.exists():
        return None
    raw = np.loadtxt(path, skiprows=1, usecols=(0, 1), dtype=np.int64)
    users, u = np.unique(raw[:, 0], return_inverse=True)
    items, i = np.unique(raw[:, 1], return_inverse=True)
    return leave_out("ml-100k", u, i, users.size, items.size, share, seed)


def power_law(
    users: int,
    items: int,
    interactions: int,
    exponent: float = 1.1,
    share: float = 0.2,
    seed: int = 0,
) -> Interactions:
    """Synthetic interactions with power-law user activity and item popularity (Zipf-like
    with `exponent`), and a low-rank taste structure so that held-out items are predictable:
    users and items get one of 32 hidden groups, and most of a user's items come from their
    group's favourites (a group without items leaves its users to popularity)."""
    if users < 2 or items < 2 or interactions < users:
        raise EinrelError("power_law: need at least 2 users and items, and an interaction a user")
    rng = np.random.default_rng(seed)
    groups = 32
    ug = rng.integers(0, groups, users)
    ig = rng.integers(0, groups, items)
    act = 1.0 / np.arange(1, users + 1) ** (exponent - 0.5)
    u = rng.choice(users, interactions, p=act / act.sum())
    pop = 1.0 / np.arange(1, items + 1) ** exponent
    by_group = [np.flatnonzero(ig == g) for g in range(groups)]
    i = rng.choice(items, interactions, p=pop / pop.sum())
    own = rng.random(interactions) < 0.7  # most picks from the user's group
    for g in range(groups):
        pick = own & (ug[u] == g)
        members = by_group[g]
        if members.size == 0:
            continue
        w = pop[members] / pop[members].sum()
        i[pick] = rng.choice(members, int(pick.sum()), p=w)
    return leave_out(f"powerlaw{users}", u, i, users, items, share, seed + 1)


def ranking_metrics(
    scores: np.ndarray, users: np.ndarray, data: Interactions, k: int = 20
) -> dict[str, float]:
    """Recall@k and NDCG@k of `scores` (one row per user in `users`, a column per item) on the
    held-out items, the user's training items excluded from the ranking; users without
    held-out items are skipped."""
    train_ptr = _pointers(data.train[0], data.users)
    test_ptr = _pointers(data.test[0], data.users)
    recalls, ndcgs = [], []
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    for row, u in enumerate(users):
        held = data.test[1, test_ptr[u] : test_ptr[u + 1]]
        if held.size == 0:
            continue
        s = scores[row].astype(np.float64, copy=True)
        s[data.train[1, train_ptr[u] : train_ptr[u + 1]]] = -np.inf
        top = np.argpartition(-s, k)[:k]
        top = top[np.argsort(-s[top], kind="stable")]
        hit = np.isin(top, held)
        recalls.append(hit.sum() / held.size)
        ndcgs.append((hit * disc).sum() / disc[: min(k, held.size)].sum())
    return {f"recall@{k}": float(np.mean(recalls)), f"ndcg@{k}": float(np.mean(ndcgs))}


def _pointers(keys: np.ndarray, n: int) -> np.ndarray:
    ptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(keys, minlength=n), out=ptr[1:])
    return ptr
