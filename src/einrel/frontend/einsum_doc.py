"""The documentation of `er.einsum`, the language's one core op, kept apart from its code
(as numpy keeps long docstrings) so that the frontend's module stays small."""

EINSUM_DOC = """The extended einsum: ``Z[out] = AGG over the other labels of JOIN(X1, ..., Xk)``.

Every label names one dimension size across the operands. For each point of the join space
(all labels), `join` is applied to the matching element of every operand; the labels not
in the output are then aggregated away with `agg`. With the defaults (product join, sum
aggregation) it is numpy's einsum.

Parameters
----------
spec : str
    numpy-style labels: ``"ij,jk->ik"``; implicit output (``"ij,jk"``: labels seen once,
    sorted); ``"..."`` for leading dims; ``",ij->ij"`` for a 0-d operand. Letters only; a
    label repeated inside one operand (a diagonal) is a SpecError.
*operands : Tensor, number or er.var(...)
    One per comma-separated part of `spec`; numbers and run-time variables stand for 0-d
    operands and are folded into the join. A relation (`er.relation`) makes the join range
    over its present tuples only (see below).
join : callable or scalar expression, optional
    A function of one symbolic scalar per operand, traced once into einrel's scalar
    language: arithmetic, ``**``, comparisons inside ``er.where``, ``er.exp / log / sqrt /
    tanh / relu / sigmoid / silu / gelu / maximum / minimum / abs``, Python numbers and
    ``er.var(name)`` (bound by the feeds at run time). Default: the product of the operands.
agg : {"sum", "prod", "max", "min"} or None
    How the labels absent from the output are combined (default "sum"). None only when no
    label is aggregated (an elementwise einsum). Gradients of max / min split equally
    among tied elements; prod's gradient is exact with zeros present.
sizes : dict, optional
    Sizes of output labels that no operand has, to broadcast along them:
    ``er.einsum("i->ij", x, sizes={"j": 4})``.
dtype : str, optional
    The result's dtype (default: the operands' one dtype; operands must agree). float16 and
    bfloat16 compute in float32 and round the result.
name : str, optional
    A name shown in plans, ``explain()`` and trace events.

Returns
-------
Tensor
    Lazy: nothing runs until ``er.evaluate`` or a compiled Program. Over a relation, the
    result is a relation on its tuples when the output keeps every key (its key labels
    first), else dense, with the aggregation's identity (0, 1, -inf, +inf) where a key has
    no tuples.

Raises
------
SpecError, ShapeError, JoinError
    Naming the spec, the operand shapes and what is wrong.

Examples
--------
>>> d = er.einsum("ik,jk->ij", a, b, join=lambda p, q: (p - q) ** 2)  # squared distances
>>> m = er.einsum("bo->b", h, agg="max")                              # row maxima
>>> z = er.einsum("uv,ud->vd", A, H)                                  # messages over edges
"""
