"""The extended einsum: `Z[out] = AGG over the other labels of JOIN(X1[l1], ..., Xk[lk])`.

Specs are numpy-style strings (`"bij,bjk->bik"`, implicit `"ij,jk"`, `"..."`, scalar operands
`",ij->ij"`). Every label has one size; together they form the join shape. A block of an einsum
is the same einsum with a smaller join shape (`with_sizes`), the fact decomposition rests on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import JoinError, SpecError
from . import scalar as S

AGGS = ("sum", "prod", "max", "min")
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Einsum:
    """One extended einsum, with every label's size fixed.

    `inputs[k]` are the labels of operand k, `output` the output labels in order, `sizes` the
    size of every label (output labels first, then aggregated labels in first-appearance order),
    `join` a scalar expression over holes x0..x{k-1}, `agg` the aggregation of the labels not in
    the output (None when there are none).

    `init` (made by fusion, never by the frontend): operand 0 has exactly the output labels and
    is added after the sum, `Z = x0 + SUM over the other labels of JOIN(x1, ..., x{k-1})`, so
    that an update `w - lr * grad` after a gradient contraction is one GEMM that accumulates
    into the new weight. The join then does not use hole 0; `body` is the einsum without it.
    """

    inputs: tuple[str, ...]
    output: str
    sizes: tuple[tuple[str, int], ...]
    join: S.Expr
    agg: str | None
    init: bool = False

    def __post_init__(self) -> None:
        if self.init and (
            self.agg != "sum"
            or not self.inputs
            or self.inputs[0] != self.output
            or 0 in self.join.holes()
        ):
            raise SpecError(f"an init einsum needs agg sum and operand 0 = the output: {self}")

    @property
    def body(self) -> Einsum:
        """The einsum without its init operand (itself when it has none)."""
        if not self.init:
            return self
        join = S.remap_holes(self.join, {i: i - 1 for i in range(1, self.arity)})
        return Einsum(self.inputs[1:], self.output, self.sizes, join, self.agg)

    @property
    def factored(self) -> bool:
        """Runs as a BLAS contraction: a sum of a product of per-operand factors. Any other
        einsum (every elementwise one) runs as a fused loop over its join space."""
        return self.agg == "sum" and S.scaled_product(self.body.join) is not None

    # --- derived structure -------------------------------------------------------------------
    @property
    def labels(self) -> str:
        """All labels: output labels first, then aggregated ones (the join-shape order)."""
        return "".join(lab for lab, _ in self.sizes)

    @property
    def size(self) -> dict[str, int]:
        return dict(self.sizes)

    @property
    def agg_labels(self) -> str:
        return self.labels[len(self.output) :]

    @property
    def broadcast_labels(self) -> str:
        """Output labels that no input has (the output is replicated along them)."""
        seen = set("".join(self.inputs))
        return "".join(lab for lab in self.output if lab not in seen)

    @property
    def join_shape(self) -> tuple[int, ...]:
        return tuple(n for _, n in self.sizes)

    @property
    def out_shape(self) -> tuple[int, ...]:
        size = self.size
        return tuple(size[lab] for lab in self.output)

    @property
    def input_shapes(self) -> tuple[tuple[int, ...], ...]:
        size = self.size
        return tuple(tuple(size[lab] for lab in labs) for labs in self.inputs)

    @property
    def arity(self) -> int:
        return len(self.inputs)

    @property
    def spec(self) -> str:
        return ",".join(self.inputs) + "->" + self.output

    @property
    def is_contraction(self) -> bool:
        """A plain product join aggregated by sum (or not at all): BLAS territory."""
        body = self.body
        if body.agg not in (None, "sum"):
            return False
        split = S.scaled_product(body.join)
        return (
            split is not None
            and sorted(split[2]) == list(range(body.arity))
            and all(f == S.hole(i) for i, f in split[2].items())
        )

    @property
    def is_elementwise(self) -> bool:
        return self.agg is None

    def flops(self) -> float:
        """Scalar operations over the join space: join ops plus one aggregation step each."""
        ops = float(math.prod(self.join_shape)) * (_op_count(self.join) + (self.agg is not None))
        return ops + (math.prod(self.out_shape) if self.init else 0)

    def with_sizes(self, sizes: Mapping[str, int]) -> Einsum:
        """The same einsum on a block: new sizes for some labels."""
        return Einsum(
            self.inputs,
            self.output,
            tuple((lab, int(sizes.get(lab, n))) for lab, n in self.sizes),
            self.join,
            self.agg,
            self.init,
        )

    def __str__(self) -> str:
        parts = [f"{lab}={n}" for lab, n in self.sizes]
        if self.agg:
            parts.append(f"agg={self.agg}")
        if self.init:
            parts.append("init=x0")
        if self.init or not S.is_product_of_holes(self.join, self.arity):
            parts.append(f"join={self.join}")
        return f"einsum[{self.spec} | {' '.join(parts)}]" if parts else f"einsum[{self.spec}]"


def _op_count(e: S.Expr) -> int:
    seen: set[S.Expr] = set()

    def go(x: S.Expr) -> int:
        if x in seen or not x.args:
            return 0
        seen.add(x)
        return 1 + sum(go(a) for a in x.args)

    return max(1, go(e))


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


def parse_spec(spec: str, ranks: Sequence[int]) -> tuple[list[str], str]:
    """Split a numpy-style spec into per-operand labels and output labels.

    Expands `...` into fresh labels (right-aligned across operands), applies numpy's implicit
    output rule (labels that appear once, sorted), and rejects what einrel cannot do exactly.
    """
    if not isinstance(spec, str):
        raise SpecError(f"einsum spec must be a string, got {type(spec).__name__}")
    text = spec.replace(" ", "")
    if text.count("->") > 1:
        raise SpecError(f"einsum spec {spec!r} has more than one '->'")
    lhs, arrow, rhs = text.partition("->")
    operands = lhs.split(",")
    if len(operands) != len(ranks):
        raise SpecError(
            f"einsum spec {spec!r} names {len(operands)} operand(s) but {len(ranks)} "
            f"were given (shapes of ranks {list(ranks)})"
        )
    for part in [*operands, rhs]:
        bad = set(part.replace("...", "")) - set(_LETTERS)
        if bad:
            raise SpecError(f"einsum spec {spec!r}: labels must be letters, got {sorted(bad)}")
    used = set(text) & set(_LETTERS)
    fresh = [c for c in _LETTERS[::-1] if c not in used]
    ell_rank = 0
    for part, rank in zip(operands, ranks):
        if "..." in part:
            ell_rank = max(ell_rank, rank - len(part.replace("...", "")))
    if ell_rank > len(fresh):
        raise SpecError(f"einsum spec {spec!r}: '...' covers too many dimensions")
    ell = "".join(fresh[:ell_rank][::-1])
    out_ops: list[str] = []
    for part, rank in zip(operands, ranks):
        if "..." in part:
            n = rank - len(part.replace("...", ""))
            if n < 0 or part.count("...") > 1:
                raise SpecError(f"einsum spec {spec!r}: operand {part!r} does not fit rank {rank}")
            part = part.replace("...", ell[ell_rank - n :] if n else "")
        out_ops.append(part)
    if arrow:
        if "..." in rhs:
            rhs = rhs.replace("...", ell)
        output = rhs
    else:
        counts: dict[str, int] = {}
        for part in out_ops:
            for c in part:
                counts[c] = counts.get(c, 0) + 1
        output = ell + "".join(sorted(c for c, k in counts.items() if k == 1 and c not in ell))
    return out_ops, output


def make_einsum(
    spec: str,
    shapes: Sequence[Sequence[int]],
    join: Callable[..., Any] | S.Expr | None = None,
    agg: str | None = "sum",
    sizes: Mapping[str, int] | None = None,
    node: str = "einsum",
) -> Einsum:
    """Build and validate an `Einsum` from a spec, operand shapes and an optional join.

    Every error names the spec, the shapes and the node being built.
    """
    shapes = [tuple(int(n) for n in s) for s in shapes]
    where = f"{node}: einsum {spec!r} with operand shapes {shapes}"
    try:
        inputs, output = parse_spec(spec, [len(s) for s in shapes])
    except SpecError as e:
        raise SpecError(f"{node}: {e}") from None
    size: dict[str, int] = {}
    for k, (labs, shape) in enumerate(zip(inputs, shapes)):
        if len(labs) != len(shape):
            raise SpecError(f"{where}: operand {k} has labels {labs!r} but rank {len(shape)}")
        if len(set(labs)) != len(labs):
            raise SpecError(
                f"{where}: label repeated inside operand {k} ({labs!r}); diagonals are not an "
                "einsum einrel can decompose — take the diagonal before the einsum"
            )
        for lab, n in zip(labs, shape):
            if size.setdefault(lab, n) != n:
                raise SpecError(
                    f"{where}: label {lab!r} has size {size[lab]} in one operand and {n} in "
                    f"operand {k}"
                )
    if len(set(output)) != len(output):
        raise SpecError(f"{where}: output {output!r} repeats a label")
    extra = dict(sizes or {})
    for lab in output:
        if lab not in size:
            if lab not in extra:
                raise SpecError(
                    f"{where}: output label {lab!r} appears in no operand; to broadcast, give "
                    f"its size with sizes={{{lab!r}: n}}"
                )
            n = int(extra[lab])
            if n < 1:
                raise SpecError(f"{where}: broadcast label {lab!r} needs a size >= 1, got {n}")
            size[lab] = n
    for lab, n in extra.items():
        if lab in size and size[lab] != n:
            raise SpecError(f"{where}: sizes gives {lab!r}={n} but the operands say {size[lab]}")
        if lab not in size:
            raise SpecError(f"{where}: sizes names label {lab!r}, which the spec does not use")
    agg_labels = [lab for lab in "".join(inputs) if lab not in output]
    agg_labels = list(dict.fromkeys(agg_labels))
    if agg is not None and agg not in AGGS:
        raise SpecError(f"{where}: unsupported aggregation {agg!r}; expected one of {AGGS}")
    if agg_labels and agg is None:
        raise SpecError(
            f"{where}: labels {''.join(agg_labels)!r} are not in the output, so an aggregation "
            f"is needed (one of {AGGS})"
        )
    arity = len(inputs)
    if join is None:
        expr = S.ONE
        for i in range(arity):
            expr = S.hole(i) if i == 0 else S.mul(expr, S.hole(i))
        expr = S.simplify(expr)
    elif isinstance(join, S.Expr):
        expr = S.simplify(join)
    elif callable(join):
        expr = S.trace(join, arity, where_=f"{where}: join")
    else:
        raise JoinError(f"{where}: join must be a callable or a scalar expression, got {join!r}")
    bad_holes = [h for h in expr.holes() if h >= arity]
    if bad_holes:
        raise JoinError(f"{where}: join uses input(s) {bad_holes} but there are {arity}")
    order = list(output) + agg_labels
    return Einsum(
        tuple(inputs),
        output,
        tuple((lab, size[lab]) for lab in order),
        expr,
        agg if agg_labels else None,
    )
