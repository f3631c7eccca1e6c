"""Multi-label data for extreme classification: sparse bag-of-features examples with a
power-law label distribution, R independent label hashes into B buckets, and precision@k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import EinrelError

PRIME = 2_147_483_647  # 2^31 - 1: the universal hashes work modulo it


@dataclass(frozen=True)
class Rows:
    """Examples in compressed rows: features (ids, values) and labels (ids) per example."""

    x_ptr: np.ndarray
    x_idx: np.ndarray
    x_val: np.ndarray
    y_ptr: np.ndarray
    y_idx: np.ndarray

    @property
    def n(self) -> int:
        return self.x_ptr.size - 1

    def take(self, rows: np.ndarray) -> Rows:
        """The examples `rows`, in that order."""
        xs, ys = _gather(self.x_ptr, rows), _gather(self.y_ptr, rows)
        return Rows(
            np.r_[0, np.cumsum(np.diff(self.x_ptr)[rows])],
            self.x_idx[xs],
            self.x_val[xs],
            np.r_[0, np.cumsum(np.diff(self.y_ptr)[rows])],
            self.y_idx[ys],
        )

    def row_of(self, ptr: np.ndarray) -> np.ndarray:
        return np.repeat(np.arange(ptr.size - 1, dtype=np.int32), np.diff(ptr))


def _gather(ptr: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The positions of rows' entries, row after row."""
    lens = np.diff(ptr)[rows]
    starts = np.repeat(ptr[:-1][rows], lens)
    within = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
    return (starts + within).astype(np.int64)


@dataclass(frozen=True)
class MultiLabel:
    name: str
    labels: int
    features: int
    train: Rows
    test: Rows

    def __repr__(self) -> str:
        return (
            f"MultiLabel({self.name}: {self.labels} labels, {self.features} features, "
            f"{self.train.n}/{self.test.n} train/test examples, "
            f"{self.train.y_idx.size / max(1, self.train.n):.2f} labels per example)"
        )


def synthetic(
    examples: int,
    labels: int,
    features: int,
    exponent: float = 1.0,
    signature: int = 6,
    keep: float = 0.7,
    noise: int = 4,
    test_share: float = 0.1,
    seed: int = 0,
) -> MultiLabel:
    """Examples whose labels are predictable from their features: every label has
    `signature` features of its own; an example draws 1-4 labels by power-law frequency and
    keeps each of their signature features with odds `keep`, plus `noise` random features;
    values are 1/sqrt(count) (unit length)."""
    if min(examples, labels, features, signature) < 1 or not 0 < keep <= 1:
        raise EinrelError(
            f"multi-label synthetic: sizes must be positive and keep in (0, 1], got "
            f"{examples} examples, {labels} labels, {features} features, keep={keep}"
        )
    rng = np.random.default_rng(seed)
    per = np.minimum(1 + rng.poisson(0.8, examples), 4)
    freq = 1.0 / np.arange(1, labels + 1) ** exponent
    y = rng.choice(labels, int(per.sum()), p=freq / freq.sum())
    y_row = np.repeat(np.arange(examples), per)
    y_flat = np.unique(y_row.astype(np.int64) * labels + y)
    y_row, y = y_flat // labels, y_flat % labels
    sig = rng.integers(0, features, (labels, signature))
    f_row = np.repeat(y_row, signature)
    f = sig[y].ravel()
    kept = rng.random(f.size) < keep
    f_row = np.r_[f_row[kept], np.repeat(np.arange(examples), noise)]
    f = np.r_[f[kept], rng.integers(0, features, examples * noise)]
    f_flat = np.unique(f_row.astype(np.int64) * features + f)
    f_row, f = f_flat // features, f_flat % features
    x_ptr = np.r_[0, np.cumsum(np.bincount(f_row, minlength=examples))]
    counts = np.diff(x_ptr)
    val = (1.0 / np.sqrt(np.repeat(counts, counts))).astype(np.float32)
    y_ptr = np.r_[0, np.cumsum(np.bincount(y_row, minlength=examples))]
    rows = Rows(x_ptr, f.astype(np.int32), val, y_ptr, y.astype(np.int32))
    order = rng.permutation(examples)
    n_test = max(1, int(test_share * examples))
    return MultiLabel(
        f"xc{labels}", labels, features, rows.take(order[n_test:]), rows.take(order[:n_test])
    )


def label_hashes(labels: int, hashes: int, buckets: int, seed: int = 0) -> np.ndarray:
    """(hashes, labels) buckets: h_r(l) = ((a_r l + b_r) mod p) mod B, R independent draws of
    a universal family. With hashes=1 and buckets=labels, the identity (a full softmax)."""
    if hashes < 1 or buckets < 1:
        raise EinrelError(f"label hashes: need hashes and buckets >= 1, got {hashes}, {buckets}")
    if hashes == 1 and buckets == labels:
        return np.arange(labels, dtype=np.int32)[None, :]
    rng = np.random.default_rng(seed)
    a = rng.integers(1, PRIME, hashes, dtype=np.int64)
    b = rng.integers(0, PRIME, hashes, dtype=np.int64)
    lab = np.arange(labels, dtype=np.int64)
    return (((a[:, None] * lab[None, :] + b[:, None]) % PRIME) % buckets).astype(np.int32)


def precision_at(scores: np.ndarray, truth: Rows, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """precision@k: the share of each example's k best-scored labels that are its labels,
    averaged over examples (scores: one row per example of `truth`)."""
    k = min(max(ks), scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    best = np.take_along_axis(scores, part, 1)
    top = np.take_along_axis(part, np.argsort(-best, axis=1, kind="stable"), 1)
    hit = np.zeros(top.shape, bool)
    for n in range(truth.n):
        hit[n] = np.isin(top[n], truth.y_idx[truth.y_ptr[n] : truth.y_ptr[n + 1]])
    return {f"p@{k}": float(hit[:, :k].sum(1).mean() / k) for k in ks}
