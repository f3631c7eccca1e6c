"""The reference interpreter: whole tensors, numpy, one node after another.

It defines what every other level (blocks, memory plans, engines) must compute.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import kernels
from ..errors import FeedError
from ..ir.graph import Graph
from .tensor import Tensor, build_graph


def bind_feeds(
    graph: Graph, feeds: Mapping[str, Any]
) -> tuple[dict[int, np.ndarray], dict[str, float]]:
    """Check feeds against the graph's inputs and variables; return arrays by node id and the
    variables. Arrays must have the input's exact shape and dtype (bfloat16 inputs take float32
    arrays); Python lists and numbers are converted to the input's dtype."""
    if not isinstance(feeds, Mapping):
        raise FeedError(f"feeds must be a mapping from input names to arrays, got {type(feeds)}")
    inputs = {n.name: n for n in graph.inputs}
    variables = set(graph.variables)
    unknown = sorted(set(feeds) - set(inputs) - variables)
    if unknown:
        raise FeedError(
            f"feeds name {unknown}, which the graph does not use; inputs: {sorted(inputs)}, "
            f"variables: {sorted(variables)}"
        )
    missing = sorted(set(inputs) - set(feeds)) + sorted(variables - set(feeds))
    if missing:
        raise FeedError(
            f"feeds are missing {missing} (inputs {sorted(inputs)}, variables {sorted(variables)})"
        )
    arrays: dict[int, np.ndarray] = {}
    for name, node in inputs.items():
        value = feeds[name]
        want = kernels.storage_dtype(node.dtype)
        if isinstance(value, np.ndarray | np.generic):
            arr = np.asarray(value)
            if arr.dtype != want and not (
                node.dtype == "bfloat16" and arr.dtype.name == "bfloat16"
            ):
                raise FeedError(
                    f"feed {name!r} (node {node.name}) has dtype {arr.dtype}, the input is "
                    f"{node.dtype} (pass a {want.name} array)"
                )
        elif hasattr(value, "__array__") and hasattr(value, "dtype"):  # torch tensors and alike
            if hasattr(value, "detach"):  # a torch tensor that requires grad, or on a GPU
                value = value.detach().cpu()
            arr = np.asarray(value)
            if arr.dtype != want:
                raise FeedError(f"feed {name!r} has dtype {arr.dtype}, the input is {node.dtype}")
        else:
            try:
                arr = np.asarray(value, dtype=want)
            except (TypeError, ValueError) as e:
                raise FeedError(f"feed {name!r} cannot be read as an array: {e}") from None
        if arr.shape != node.shape:
            raise FeedError(
                f"feed {name!r} (node {node.name}) has shape {arr.shape}, the input is {node.shape}"
            )
        arrays[node.id] = kernels.finish(arr, node.dtype) if node.dtype == "bfloat16" else arr
    values: dict[str, float] = {}
    for name in variables:
        v = feeds[name]
        if isinstance(v, np.ndarray) and v.shape == ():
            v = v.item()
        if not isinstance(v, numbers.Real) or isinstance(v, bool):
            raise FeedError(f"run-time variable {name!r} must be a real number, got {v!r}")
        values[name] = float(v)
    return arrays, values


def run_node(
    graph: Graph, i: int, env: Mapping[int, np.ndarray], variables: Mapping[str, float]
) -> np.ndarray:
    """Evaluate node i of `graph` on whole tensors from `env`."""
    n = graph[i]
    args = [env[j] for j in n.inputs]
    if n.op == "einsum":
        return kernels.einsum(n.attrs, args, variables, n.dtype)
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


def interpret(graph: Graph, feeds: Mapping[str, Any]) -> list[np.ndarray]:
    """Run `graph` on `feeds`; free each intermediate after its last use."""
    env, variables = bind_feeds(graph, feeds)
    fed = list(env.values())
    last_use = {j: i for i, n in enumerate(graph.nodes) for j in n.inputs}
    keep = set(graph.outputs)
    for n in graph.nodes:
        if n.op != "input":
            env[n.id] = run_node(graph, n.id, env, variables)
        for j in set(n.inputs):
            if last_use[j] == n.id and j not in keep:
                del env[j]
    # Never hand back a feed, or a view of one (a reshape or slice of an input), as a result:
    # writing into a result must not change the caller's arrays.
    return [_unaliased(env[i], fed) for i in graph.outputs]


def _unaliased(a: np.ndarray, feeds: Sequence[np.ndarray]) -> np.ndarray:
    if a.flags.owndata and not any(np.may_share_memory(a, f) for f in feeds):
        return a
    return a.copy()


def evaluate(outputs: Tensor | Sequence[Tensor], feeds: Mapping[str, Any]) -> Any:
    """`er.evaluate([a, b], feeds)` -> [array, array]; a single Tensor gives a single array."""
    if isinstance(outputs, Tensor):
        return interpret(build_graph([outputs]), feeds)[0]
    return interpret(build_graph(list(outputs)), feeds)
