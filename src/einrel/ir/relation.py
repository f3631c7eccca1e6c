"""Sparse relations in the IR: relation inputs, supports, and einsums over present tuples.

A relation holds only some keys (graph edges, user–item pairs, triples). Its dims are its key
dims, then its value dims; at run time it is the index array of its tuples plus one value (a
scalar or a small array) per tuple. Every relation a graph computes derives from one relation
input and keeps its tuples in that input's order: its `Support` names the input and which of
the input's keys each key dim is. An einsum with relation operands (a `SparseEinsum`) ranges
over the support's tuples only; its output is a relation on that support when it keeps every
key, else dense, with the aggregation's identity where a key has no tuples.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..errors import SpecError
from .einsum import Einsum


@dataclass(frozen=True)
class Relation:
    """Attrs of a relation input: its keys' names, its value dims' names, its tuple bound."""

    keys: tuple[str, ...]
    values: tuple[str, ...]
    nnz: int

    def __str__(self) -> str:
        vals = f" values={','.join(self.values)}" if self.values else ""
        return f"relation[keys={','.join(self.keys)}{vals} nnz<={self.nnz}]"


@dataclass(frozen=True)
class Support:
    """Where a relation's tuples come from: relation input `relation`, whose key `order[i]` is
    this tensor's key dim i; `nnz` bounds the tuple count."""

    relation: str
    order: tuple[int, ...]
    nnz: int

    @property
    def nkeys(self) -> int:
        return len(self.order)


@dataclass(frozen=True)
class SparseEinsum:
    """An extended einsum with relation operands, all on the support of relation `relation`.

    `relational[k]` says operand k is a relation (its leading `nkeys` labels are keys);
    `keys[s]` is the join label of the relation's key s; `out` is the output's support, or
    None when the output aggregates a key away and is dense."""

    einsum: Einsum
    relational: tuple[bool, ...]
    relation: str
    keys: str
    out: Support | None
    nnz: int

    def flops(self) -> float:
        """Scalar operations at the bound: the join over `nnz` tuples times the other labels."""
        op = self.einsum
        per = op.flops() / max(1, math.prod(op.join_shape))
        return self.nnz * math.prod(n for lab, n in op.sizes if lab not in self.keys) * per

    def block(self, sizes: Mapping[str, int], nnz: int) -> SparseEinsum:
        """The same einsum on a join block of these label sizes holding at most `nnz` tuples."""
        return replace(self, einsum=self.einsum.with_sizes(sizes), nnz=int(nnz))

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.einsum.out_shape

    @property
    def key_shape(self) -> tuple[int, ...]:
        """The sizes of the support's keys (in the support's key order)."""
        size = self.einsum.size
        return tuple(size[lab] for lab in self.keys)

    @property
    def kept_keys(self) -> str:
        """Key labels the output keeps, in output order."""
        return "".join(lab for lab in self.einsum.output if lab in self.keys)

    def __str__(self) -> str:
        body = str(self.einsum).removeprefix("einsum")
        where = "relation" if self.out is not None else "dense"
        return f"sparse{body[:-1]} | over {self.relation}({self.keys}) -> {where}]"


def support_of(node: Any) -> Support | None:
    """The support of a graph node (a `Node` or `GNode`) holding a relation, else None."""
    if node.op == "relation":
        return Support(node.name, tuple(range(len(node.attrs.keys))), node.attrs.nnz)
    if node.op == "sparse":
        return node.attrs.out
    return None


def sparse_einsum(op: Einsum, supports: Sequence[Support | None], where: str) -> SparseEinsum:
    """Check that the relation operands of `op` share one support with one labelling of its
    keys, and say what the output is; every error names the spec and the node (`where`)."""
    first = next(s for s in supports if s is not None)
    keys: list[str | None] = [None] * first.nkeys
    for k, (labs, s) in enumerate(zip(op.inputs, supports)):
        if s is None:
            continue
        if s.relation != first.relation:
            raise SpecError(
                f"{where}: operands are relations on {first.relation!r} and {s.relation!r}; one "
                "einsum joins the tuples of one relation (relations derived from it included)"
            )
        for dim, src in enumerate(s.order):
            if keys[src] is None:
                keys[src] = labs[dim]
            elif keys[src] != labs[dim]:
                raise SpecError(
                    f"{where}: key {src} of relation {first.relation!r} is labelled "
                    f"{keys[src]!r} in one operand and {labs[dim]!r} in operand {k}; a relation "
                    "joined with its own transpose is a join of two relations, which einrel "
                    "does not do"
                )
    key_labels = "".join(lab for lab in keys if lab is not None)
    kept = [lab for lab in op.output if lab in key_labels]
    out = None
    if len(kept) == len(key_labels):
        if op.output[: len(kept)] != "".join(kept):
            fixed = "".join(kept) + "".join(c for c in op.output if c not in kept)
            raise SpecError(
                f"{where}: the output {op.output!r} keeps every key of relation "
                f"{first.relation!r} ({key_labels!r}), so it is a relation, whose key labels "
                f"come first; write {fixed!r}"
            )
        out = Support(first.relation, tuple(key_labels.index(lab) for lab in kept), first.nnz)
    relational = tuple(s is not None for s in supports)
    return SparseEinsum(op, relational, first.relation, key_labels, out, first.nnz)
