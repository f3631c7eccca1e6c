"""Drawing random einrel programs: where decisions come from (`Choices`) and the state of a
program being drawn (`Builder`): its tensors with the intervals that bound their values, and its
lines of source.

Each tensor carries an interval, so that every drawn op stays inside its domain (logs and square
roots of values >= 0.1, divisions by values >= 0.5 in magnitude) and magnitudes stay moderate (a
tensor above `SQUASH` goes through tanh before it grows further): comparisons can then use tight
tolerances without NaN, inf or overflow in the way.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


SQUASH = 30.0  # larger magnitudes go through tanh before an op that could grow them


DIMS = (2, 3, 4, 1, 5)  # sizes in the order hypothesis shrinks towards


LABELS = "abcdefgh"


class Choices:
    """Where a case's random decisions come from; subclasses give `integer`."""

    def integer(self, lo: int, hi: int) -> int:
        raise NotImplementedError

    def pick(self, options: Sequence[T]) -> T:
        return options[self.integer(0, len(options) - 1)]

    def coin(self, p: float) -> bool:
        return self.integer(0, 999) < p * 1000

    def sample(self, options: Sequence[T], k: int) -> list[T]:
        pool, out = list(options), []
        for _ in range(min(k, len(pool))):
            out.append(pool.pop(self.integer(0, len(pool) - 1)))
        return out


class RandomChoices(Choices):
    """Decisions from a seeded `random.Random`."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)


@dataclass
class Drawn:
    name: str
    shape: tuple[int, ...]
    lo: float
    hi: float
    input: bool = False

    @property
    def mag(self) -> float:
        return max(abs(self.lo), abs(self.hi))

    @property
    def ndim(self) -> int:
        return len(self.shape)


@dataclass
class Builder:
    """The state of one case being drawn: its tensors, lines and inputs."""

    ch: Choices
    dtype: str
    pool: list[Drawn] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    inputs: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)
    variables: list[str] = field(default_factory=list)
    count: int = 0

    # --- tensors --------------------------------------------------------------------------
    def emit(self, expr: str, shape: tuple[int, ...], lo: float, hi: float) -> Drawn:
        name = f"t{self.count}"
        self.count += 1
        self.lines.append(f"{name} = {expr}")
        lo, hi = (lo, hi) if lo <= hi else (hi, lo)
        t = Drawn(name, tuple(shape), lo, hi)
        self.pool.append(t)
        return t

    def new_input(self, shape: tuple[int, ...], prefix: str = "x") -> Drawn:
        name = f"{prefix}{len(self.inputs)}"
        self.inputs.append((name, tuple(shape)))
        t = Drawn(name, tuple(shape), -1.0, 1.0, input=True)
        if prefix == "x":
            self.pool.append(t)
        return t

    def variable(self) -> str:
        if not self.variables or (len(self.variables) < 2 and self.ch.coin(0.3)):
            self.variables.append(f"v{len(self.variables)}")
            return self.variables[-1]
        return self.ch.pick(self.variables)

    def shape(self, max_rank: int = 3) -> tuple[int, ...]:
        return tuple(self.ch.pick(DIMS) for _ in range(self.ch.integer(0, max_rank)))

    def operand(self, pred: Callable[[Drawn], bool] = lambda t: True) -> Drawn | None:
        fits = [t for t in self.pool if pred(t)]
        if not fits:
            return None
        return self.ch.pick(fits[::-1])  # recent tensors first: deeper graphs

    def bounded(self, t: Drawn, limit: float = SQUASH) -> Drawn:
        """`t`, or tanh(t) when its values may exceed `limit`."""
        if t.mag <= limit:
            return t
        return self.derived(f"er.tanh({t.name})", t.shape, math.tanh(t.lo), math.tanh(t.hi))

    def derived(self, expr: str, shape: tuple[int, ...], lo: float, hi: float) -> Drawn:
        """A helper tensor made for one op (which reads it)."""
        return self.emit(expr, shape, lo, hi)

    def positive(self, t: Drawn, floor: float) -> Drawn:
        """`t` when its values are >= floor, else a positive function of it."""
        if t.lo >= floor:
            return t
        t = self.bounded(t, 5.0)
        if self.ch.coin(0.5):
            return self.derived(
                f"er.exp({t.name}) + {floor}", t.shape, floor, math.exp(t.hi) + floor
            )
        return self.derived(f"{t.name} * {t.name} + {floor}", t.shape, floor, t.mag**2 + floor)

    def broadcast_partner(self, t: Drawn) -> Drawn:
        """A tensor whose shape broadcasts with `t`'s (from the pool, or a new input)."""

        def fits(u: Drawn) -> bool:
            k = min(u.ndim, t.ndim)
            return u.ndim <= t.ndim and all(
                a == b or a == 1 for a, b in zip(u.shape[u.ndim - k :], t.shape[t.ndim - k :])
            )

        if self.ch.coin(0.6):
            u = self.operand(fits)
            if u is not None:
                return u
        k = self.ch.integer(0, t.ndim)
        shape = tuple(1 if self.ch.coin(0.2) else n for n in t.shape[t.ndim - k :])
        if self.ch.coin(0.25):
            v = self.ch.pick([0.5, -1.5, 0.0, 2.0])
            fn = self.ch.pick(["fill", "einsum"])
            if fn == "fill" or not shape:
                return self.emit(f"er.fill({shape!r}, {v}, DT)", shape, v, v)
            labs = LABELS[: len(shape)]
            sizes = ", ".join(f'"{c}": {n}' for c, n in zip(labs, shape))
            return self.emit(
                f'er.einsum("->{labs}", {v}, sizes={{{sizes}}}, dtype=DT)', shape, v, v
            )
        return self.new_input(shape)
