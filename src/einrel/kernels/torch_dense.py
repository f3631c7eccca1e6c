"""torch block kernels that write into arena views: the torch twin of the numpy kernels, and
`TorchOps`, the torch backend of the block executor (`taskgraph.execute`).

Every function takes torch tensors (views into a device arena) and writes its result into the
output view `out`, so a block's value lives exactly where the memory plan put it. The same code
runs on CUDA tensors and on CPU tensors, which is how the GPU path is tested without a GPU.

Precision follows the numpy kernels: float32 and float64 compute in their own dtype; float16
and bfloat16 compute elementwise work and reductions in float32 and round once into the output.
Contractions of low-precision blocks on CUDA run in the block dtype (tensor cores accumulate in
float32); on CPU they run in float32. Temporaries that a kernel needs (a contraction's result
before it is copied into place, a chunk of a reduction) are kernel workspace from torch's
allocator, outside the arena, as TURNIP's kernel workspace is.
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import ExecutionError
from ..ir import scalar as S
from ..ir.einsum import Einsum
from ..ir.graph import Fill

TORCH_DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
}
NUMPY_OF: dict[str, Any] = {
    "float16": np.float16,
    "float32": np.float32,
    "float64": np.float64,
}
CHUNK_ELEMENTS = 1 << 24


def compute_dtype(dtype: str) -> torch.dtype:
    return torch.float64 if dtype == "float64" else torch.float32


def _relabel(op: Einsum) -> dict[str, str]:
    """einrel labels -> letters torch.einsum accepts."""
    letters = string.ascii_letters
    return {lab: letters[k] for k, lab in enumerate(op.labels)}


def _as_tensor(x: Any, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(dtype)
    return torch.full((), float(x), dtype=dtype, device=like.device)


def einsum_into(
    op: Einsum,
    arrays: Sequence[torch.Tensor],
    variables: Mapping[str, float],
    dtype: str,
    out: torch.Tensor,
) -> None:
    """Evaluate an extended einsum on blocks and write it into `out` (an init einsum adds its
    operand 0 after the sum)."""
    cdt = compute_dtype(dtype)
    init = None
    if op.init:
        init, arrays, op = arrays[0], arrays[1:], op.body
    res = None
    if op.agg in (None, "sum"):
        split = S.scaled_product(op.join)
        if split is not None:
            coef, scale, factors = split
            if scale is not None:
                coef *= float(S.compile_numpy(scale, 0)(variables))
            res = _factored(op, arrays, variables, coef, factors, cdt, dtype, out)
    if res is None:
        res = _general(op, arrays, variables, cdt, out)
    out.copy_(res if init is None else res.to(cdt) + init.to(cdt))


def _factored(
    op: Einsum,
    arrays: Sequence[torch.Tensor],
    variables: Mapping[str, float],
    coef: float,
    factors: dict[int, S.Expr],
    cdt: torch.dtype,
    dtype: str,
    out: torch.Tensor,
) -> torch.Tensor:
    """join = c * prod_i f_i(x_i): map each input by f_i, then one torch.einsum."""
    low = dtype in ("float16", "bfloat16") and out.is_cuda
    mm = TORCH_DTYPES[dtype] if low else cdt
    size = op.size
    letter = _relabel(op)
    ops, specs = [], []
    for i in sorted(factors):
        a = arrays[i]
        f = factors[i]
        if f != S.hole(i):
            fa = S.compile_torch(S.remap_holes(f, {i: 0}), 1)(a.to(cdt), variables)
            a = _as_tensor(fa, a, cdt).expand(a.shape)
        ops.append(a.to(mm))
        specs.append(op.inputs[i])
    present = set("".join(specs))
    sub_out = "".join(lab for lab in op.output if lab in present)
    mult = math.prod(size[lab] for lab in op.agg_labels if lab not in present)
    if ops:
        spec = ",".join("".join(letter[c] for c in s) for s in specs)
        res = torch.einsum(spec + "->" + "".join(letter[c] for c in sub_out), *ops)
    else:
        res = torch.ones((), dtype=cdt, device=out.device)
    scale = coef * mult
    if scale != 1:
        res = res * scale
    if sub_out != op.output:  # broadcast labels no input carries
        shape = [size[lab] if lab in present else 1 for lab in op.output]
        perm = sorted(range(len(sub_out)), key=lambda d: op.output.index(sub_out[d]))
        res = res.permute(perm).reshape(shape).expand(op.out_shape)
    return res


def _views(op: Einsum, arrays: Sequence[torch.Tensor], cdt: torch.dtype) -> list[torch.Tensor]:
    """Each input as a view over the join space (its missing labels as size-1 axes)."""
    labels = op.labels
    out = []
    for a, labs in zip(arrays, op.inputs):
        if len(set(labs)) != len(labs):  # a repeated label: take the diagonal first
            letter = _relabel(op)
            uniq = "".join(dict.fromkeys(labs))
            a = torch.einsum(
                "".join(letter[c] for c in labs) + "->" + "".join(letter[c] for c in uniq), a
            )
            labs = uniq
        perm = sorted(range(len(labs)), key=lambda d: labels.index(labs[d]))
        shape = [a.shape[labs.index(lab)] if lab in labs else 1 for lab in labels]
        out.append(a.to(cdt).permute(perm).reshape(shape))
    return out


def _reduce(agg: str, x: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
    if agg == "sum":
        return torch.sum(x, dim=axes)
    if agg == "max":
        return torch.amax(x, dim=axes)
    if agg == "min":
        return torch.amin(x, dim=axes)
    for ax in sorted(axes, reverse=True):
        x = torch.prod(x, dim=ax)
    return x


def combine_into(agg: str, acc: torch.Tensor, x: torch.Tensor) -> None:
    """acc <- acc AGG x, in place."""
    if agg == "sum":
        acc.add_(x)
    elif agg == "max":
        torch.maximum(acc, x, out=acc)
    elif agg == "min":
        torch.minimum(acc, x, out=acc)
    elif agg == "prod":
        acc.mul_(x)
    else:  # pragma: no cover - einsum construction rejects other aggregations
        raise ExecutionError(f"unknown aggregation {agg!r}")


def _general(
    op: Einsum,
    arrays: Sequence[torch.Tensor],
    variables: Mapping[str, float],
    cdt: torch.dtype,
    out: torch.Tensor,
) -> torch.Tensor:
    fn = S.compile_torch(op.join, op.arity)
    views = _views(op, arrays, cdt)
    jshape = op.join_shape
    nout = len(op.output)
    like = views[0] if views else out
    if op.agg is None:
        return _as_tensor(fn(*views, variables), like, cdt).expand(jshape)
    axes = tuple(range(nout, len(jshape)))
    ax = max(axes, key=lambda d: jshape[d])
    pieces = max(1, min(jshape[ax], math.ceil(math.prod(jshape) / CHUNK_ELEMENTS)))
    bounds = np.linspace(0, jshape[ax], pieces + 1).astype(int)
    acc: torch.Tensor | None = None
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        lo, hi = int(lo), int(hi)
        vs = [v.narrow(ax, lo, hi - lo) if v.shape[ax] > 1 else v for v in views]
        shape = jshape[:ax] + (hi - lo,) + jshape[ax + 1 :]
        part = _reduce(op.agg, _as_tensor(fn(*vs, variables), like, cdt).expand(shape), axes)
        if acc is None:
            acc = part
        else:
            combine_into(op.agg, acc, part)
    assert acc is not None
    return acc


class TorchOps:
    """Blocks as torch tensors (arena views on CUDA or CPU): `kernels.ops.BlockOps` for the
    torch arenas. Results always go into `out` (the arena engine reserves every block)."""

    name = "torch"

    def empty(self, shape: Sequence[int], dtype: str) -> torch.Tensor:
        return torch.empty(tuple(shape), dtype=TORCH_DTYPES[dtype])

    def window(self, a: torch.Tensor, offset: Sequence[int], size: Sequence[int]) -> torch.Tensor:
        return a[tuple(slice(o, o + s) for o, s in zip(offset, size))]

    def view_as(self, a: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        return a.reshape(tuple(shape))

    def copy(
        self, out: torch.Tensor | None, src: torch.Tensor, shape: Sequence[int], dtype: str
    ) -> torch.Tensor:
        if out is None:
            return src.reshape(tuple(shape)).clone()
        out.copy_(src.reshape(out.shape))
        return out

    def take(
        self,
        whole: np.ndarray,
        offset: Sequence[int],
        shape: Sequence[int],
        dtype: str,
        out: torch.Tensor | None,
    ) -> torch.Tensor:
        """This block of a host input, copied into its arena view (host -> device)."""
        src = np.ascontiguousarray(whole[tuple(slice(o, o + s) for o, s in zip(offset, shape))])
        if out is None:
            return torch.from_numpy(src).to(TORCH_DTYPES[dtype])
        out.copy_(torch.from_numpy(src), non_blocking=out.is_cuda)
        return out

    def fill(
        self,
        f: Fill,
        shape: Sequence[int],
        dtype: str,
        offset: Sequence[int],
        out: torch.Tensor | None,
    ) -> torch.Tensor:
        out = self.empty(shape, dtype) if out is None else out
        if not f.triu:
            out.fill_(f.value)
            return out
        off = tuple(offset) or (0,) * len(shape)
        dev = out.device
        rows = torch.arange(off[-2], off[-2] + shape[-2], device=dev)[:, None]
        cols = torch.arange(off[-1], off[-1] + shape[-1], device=dev)[None, :]
        value = torch.full((), f.value, dtype=compute_dtype(dtype), device=dev)
        mask = torch.where(cols > rows, value, torch.zeros_like(value))
        out.copy_(mask.expand(tuple(shape)))
        return out

    def einsum(
        self,
        op: Einsum,
        args: Sequence[torch.Tensor],
        variables: Mapping[str, float],
        dtype: str,
        out: torch.Tensor | None,
    ) -> torch.Tensor:
        out = self.empty(op.out_shape, dtype) if out is None else out
        einsum_into(op, args, variables, dtype, out)
        return out

    def aggregate(
        self, agg: str, args: Sequence[torch.Tensor], dtype: str, out: torch.Tensor | None
    ) -> torch.Tensor:
        cdt = compute_dtype(dtype)
        acc = args[0].to(cdt, copy=True)
        for a in args[1:]:
            combine_into(agg, acc, a.to(cdt))
        return (
            self.copy(out, acc, acc.shape, dtype)
            if out is not None
            else acc.to(TORCH_DTYPES[dtype])
        )

    def accumulate(self, agg: str, acc: torch.Tensor, x: torch.Tensor, dtype: str) -> None:
        cdt = compute_dtype(dtype)
        if acc.dtype == cdt:
            combine_into(agg, acc, x)
        else:
            wide = acc.to(cdt)
            combine_into(agg, wide, x.to(cdt))
            acc.copy_(wide)


TORCH = TorchOps()
