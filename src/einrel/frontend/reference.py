"""The reference interpreter: whole tensors, numpy, one node after another.

It defines what every other level (blocks, memory plans, engines) must compute.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import kernels
from ..errors import EinrelError, FeedError
from ..ir.graph import Graph
from ..ir.relation import support_of
from ..kernels.coo import Coo
from ..kernels.sparse import sparse_einsum
from .relation import bind_relation
from .tensor import Tensor, build_graph


def bind_feeds(
    graph: Graph, feeds: Mapping[str, Any], strict: bool = True, cast: bool = False
) -> tuple[dict[int, np.ndarray], dict[str, float]]:
    """Check feeds against the graph's inputs and variables; return arrays by node id and the
    variables. Arrays must have the input's exact shape and dtype (bfloat16 inputs take float32
    arrays) unless `cast` converts them; Python lists and numbers are converted to the input's
    dtype; torch tensors are read detached, from any device. A feed the graph does not use is
    an error unless `strict` is False."""
    if not isinstance(feeds, Mapping):
        raise FeedError(f"feeds must be a mapping from input names to arrays, got {type(feeds)}")
    inputs = {n.name: n for n in (*graph.inputs, *graph.relations)}
    variables = set(graph.variables)
    unknown = sorted(set(feeds) - set(inputs) - variables)
    if unknown and strict:
        raise FeedError(
            f"feeds name {unknown}, which the graph does not use; inputs: {sorted(inputs)}, "
            f"variables: {sorted(variables)} (run(..., strict=False) ignores unused feeds)"
        )
    missing = sorted(set(inputs) - set(feeds)) + sorted(variables - set(feeds))
    if missing:
        raise FeedError(
            f"feeds are missing {missing} (inputs {sorted(inputs)}, variables {sorted(variables)})"
        )
    arrays: dict[int, Any] = {}
    for name, node in inputs.items():
        if node.op == "relation":
            arrays[node.id] = bind_relation(name, node, feeds[name], cast)
            continue
        arr = _feed_array(name, node, feeds[name], cast)
        if arr.shape != node.shape:
            raise FeedError(
                f"feed {name!r} (node {node.name}) has shape {arr.shape}, the input is {node.shape}"
            )
        arrays[node.id] = kernels.finish(arr, node.dtype) if node.dtype == "bfloat16" else arr
    values: dict[str, float] = {}
    for name in variables:
        v = feeds[name]
        if hasattr(v, "detach"):  # a torch tensor
            v = v.detach().cpu()
        if getattr(v, "shape", None) == () and hasattr(v, "item"):  # 0-d arrays and tensors
            v = v.item()
        if not isinstance(v, numbers.Real) or isinstance(v, bool):
            raise FeedError(f"run-time variable {name!r} must be a real number, got {v!r}")
        values[name] = float(v)
    return arrays, values


def _feed_array(name: str, node: Any, value: Any, cast: bool) -> np.ndarray:
    """One input's feed as a numpy array of the input's storage dtype."""
    want = kernels.storage_dtype(node.dtype)
    hint = f"the input is {node.dtype} (pass a {want.name} array, or run(..., cast=True))"
    if hasattr(value, "detach") and hasattr(value, "dtype"):  # torch: no grad, on the CPU
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":  # numpy has no bfloat16; float32 holds it
            if not cast and node.dtype != "bfloat16":
                raise FeedError(f"feed {name!r} (node {node.name}) is torch.bfloat16, {hint}")
            value = value.float()
    if isinstance(value, np.ndarray | np.generic) or hasattr(value, "__array__"):
        arr = np.asarray(value)
        bf16 = node.dtype == "bfloat16" and arr.dtype.name in ("float32", "bfloat16")
        if arr.dtype != want and not bf16 and not (cast and arr.dtype.kind in "biuf"):
            raise FeedError(f"feed {name!r} (node {node.name}) has dtype {arr.dtype}, {hint}")
        return arr.astype(want, copy=False)
    try:
        return np.asarray(value, dtype=want)
    except (TypeError, ValueError) as e:
        raise FeedError(f"feed {name!r} cannot be read as an array: {e}") from None


def run_node(graph: Graph, i: int, env: Mapping[int, Any], variables: Mapping[str, float]) -> Any:
    """Evaluate node i of `graph` on whole tensors from `env`."""
    n = graph[i]
    args = [env[j] for j in n.inputs]
    if n.op == "einsum":
        return kernels.einsum(n.attrs, args, variables, n.dtype)
    if n.op == "sparse":
        return sparse_einsum(n.attrs, args, variables, n.dtype)
    if n.op == "densify":
        return args[0].to_dense()
    if n.op == "fill":
        return kernels.fill(n.attrs, n.shape, n.dtype)
    if n.op == "slice":
        return np.asarray(
            args[0][tuple(slice(a, b) for a, b in zip(n.attrs.starts, n.attrs.stops))], order="C"
        )
    if n.op == "concat":
        return np.concatenate(args, axis=n.attrs.axis)
    if n.op == "reshape":
        return np.asarray(args[0], order="C").reshape(n.shape)
    raise AssertionError(f"unknown op {n.op}")


def interpret(
    graph: Graph, feeds: Mapping[str, Any], strict: bool = True, cast: bool = False
) -> list[np.ndarray]:
    """Run `graph` on `feeds`; free each intermediate after its last use."""
    env, variables = bind_feeds(graph, feeds, strict, cast)
    fed = list(env.values())
    last_use = {j: i for i, n in enumerate(graph.nodes) for j in n.inputs}
    keep = set(graph.outputs)
    for n in graph.nodes:
        if n.op not in ("input", "relation"):
            env[n.id] = run_node(graph, n.id, env, variables)
        for j in set(n.inputs):
            if last_use[j] == n.id and j not in keep:
                del env[j]
    # Never hand back a feed, or a view of one (a reshape or slice of an input), as a result:
    # writing into a result must not change the caller's arrays.
    return [_unaliased(env[i], fed) for i in graph.outputs]


def _unaliased(a: Any, feeds: Sequence[Any]) -> Any:
    if isinstance(a, Coo):  # a relation: its own values, and indices the caller cannot change
        fed = [x for f in feeds for x in ((f.indices, f.values) if isinstance(f, Coo) else (f,))]
        return Coo(_unaliased(a.indices, fed), _unaliased(a.values, fed), a.shape)
    if a.flags.owndata and not any(np.may_share_memory(a, f) for f in feeds):
        return a
    return a.copy()


def evaluate(
    outputs: Tensor | Sequence[Tensor],
    feeds: Mapping[str, Any],
    *,
    strict: bool = True,
    cast: bool = False,
    output: str = "numpy",
) -> Any:
    """Evaluate `outputs` on whole tensors with numpy: the reference every level must match.

    Parameters
    ----------
    outputs : a Tensor, or a sequence of them
    feeds : input names -> arrays (numpy, torch, lists), run-time variable names -> numbers
    strict : reject feeds the graph does not use (False: ignore them)
    cast : convert feeds of another numeric dtype to the input's dtype
    output : "numpy" (arrays) or "torch" (CPU tensors sharing the arrays' memory)

    Returns
    -------
    One array for a single Tensor, a list of arrays for a sequence (as `Program.run`).
    """
    check_output(output)
    many = not isinstance(outputs, Tensor)
    outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    return shape_results(interpret(build_graph(outs), feeds, strict, cast), many, output)


def check_output(output: str) -> None:
    """Reject an unknown `output=` before anything runs."""
    if output not in ("numpy", "torch"):
        raise FeedError(f'output must be "numpy" or "torch", got {output!r}')


def shape_results(values: list[np.ndarray], many: bool, output: str) -> Any:
    """A list for a sequence of outputs or one value for a single Tensor, as numpy or torch."""
    if output == "torch":
        import torch

        def to_torch(v: Any) -> Any:
            if isinstance(v, Coo):  # a hybrid sparse COO tensor: value dims stay dense
                return torch.sparse_coo_tensor(
                    torch.from_numpy(np.array(v.indices, dtype=np.int64)),  # torch's own copy
                    torch.from_numpy(np.require(v.values, requirements="W")),
                    v.shape,
                    check_invariants=False,  # checked when fed or built by einrel
                )
            return torch.from_numpy(v if v.flags.c_contiguous else v.copy())

        tensors = [to_torch(v) for v in values]
        return tensors if many else tensors[0]
    return values if many else values[0]


def bind_out(
    graph: Graph, out: Sequence[np.ndarray | None] | None, inputs: Mapping[int, Any]
) -> dict[int, np.ndarray]:
    """`run(out=...)`: the given arrays by output position, checked (an EinrelError names what
    does not fit: count, shape, dtype, layout, a relation output, memory shared with a feed)."""
    if out is None:
        return {}
    nodes = [graph[i] for i in graph.outputs]
    if len(out) != len(nodes):
        raise EinrelError(f"run(out=...): {len(out)} arrays for {len(nodes)} outputs")
    feeds = [a for a in inputs.values() if isinstance(a, np.ndarray)]
    given = {}
    for k, (arr, node) in enumerate(zip(out, nodes, strict=True)):
        if arr is None:
            continue
        want = np.dtype(kernels.storage_dtype(node.dtype))
        problem = (
            "is a relation output" if support_of(node) is not None
            else "is not a numpy array" if not isinstance(arr, np.ndarray)
            else f"has shape {arr.shape}, the output {node.shape}" if arr.shape != node.shape
            else f"has dtype {arr.dtype}, the output {want}" if arr.dtype != want
            else "is not a writeable C-contiguous array"
            if not (arr.flags.c_contiguous and arr.flags.writeable)
            else "shares memory with a feed" if any(np.may_share_memory(arr, f) for f in feeds)
            else ""
        )  # fmt: skip
        if problem:
            raise EinrelError(f"run(out=...): out[{k}] for output {node.name!r} {problem}")
        given[k] = arr
    return given
