"""The numpy arena backend of the memory engine: one uint8 buffer per device, blocks as
typed views at their planned offsets, host copies in a pool of numpy buffers."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ... import kernels
from ...errors import CompileError
from ...ir import scalar as S
from ...ir.einsum import Einsum
from ...memory import MemGraph, MemNode, Region, compute_block
from ..mem.schedule import Fetch
from ..transfer import Link


def input_slice(mg: MemGraph | None, block: int, inputs: Mapping[int, np.ndarray]) -> np.ndarray:
    """The part of a graph input that input task `block` holds (a view of the caller's array)."""
    assert mg is not None
    t = mg.taskgraph.tasks[block]
    return inputs[t.node][tuple(slice(o, o + s) for o, s in zip(t.offset, t.shape))]


@functools.lru_cache(maxsize=4096)
def _swapped(op: Einsum) -> Einsum | None:
    """For a plain two-operand contraction whose batched GEMM would come out transposed
    (kernels.contract2 keeps the operand order), the same contraction with its operands
    swapped, whose GEMM result is already in output order; else None."""
    if op.arity != 2 or op.agg != "sum" or not S.is_product_of_holes(op.join, 2):
        return None
    la, lb = op.inputs
    out = op.output
    if len(set(la)) != len(la) or len(set(lb)) != len(lb) or not set(out) <= set(la) | set(lb):
        return None
    batch = "".join(c for c in out if c in la and c in lb)
    left = "".join(c for c in out if c in la and c not in lb)
    right = "".join(c for c in out if c in lb and c not in la)
    if batch + left + right == out or batch + right + left != out:
        return None
    return Einsum((lb, la), out, op.sizes, op.join, op.agg)


class NumpyArenas:
    """Arenas as numpy uint8 buffers, kernels from `compute_block`, host copies in a pool of
    numpy buffers that lives as long as the memory graph does."""

    name = "numpy"

    def __init__(self) -> None:
        self.mg: MemGraph | None = None
        self.arenas: list[np.ndarray] = []
        self.host: dict[int, np.ndarray] = {}

    # --- setup -------------------------------------------------------------------------------
    def prepare(self, mg: MemGraph, host_blocks: Sequence[int]) -> None:
        if self.mg is mg:
            return
        tasks = mg.taskgraph.tasks
        bad = sorted({t.dtype for t in tasks if t.dtype == "bfloat16"})
        if bad:
            raise CompileError(
                "the numpy memory engine keeps blocks in their storage dtype and cannot hold "
                "bfloat16 blocks in an arena; use float16/float32/float64 or the torch backend"
            )
        sizes = [mg.arena_size(d) for d in range(mg.ndev)]
        arenas = []
        for d, size in enumerate(sizes):
            old = self.arenas[d] if d < len(self.arenas) else None
            if old is not None and len(old) >= size:
                arenas.append(old)
            else:
                a = np.empty(size, np.uint8)
                a.fill(0)  # touch every page now, not inside the timed run
                arenas.append(a)
        host = {}
        for b in host_blocks:
            nbytes = tasks[b].nbytes
            buf = np.empty(nbytes, np.uint8)
            buf.fill(0)
            host[b] = buf
        self.arenas, self.host, self.mg = arenas, host, mg

    @contextlib.contextmanager
    def lane_context(self, device: int, lane: int) -> Iterator[None]:
        yield

    def threads(self, n: int) -> Any:
        from threadpoolctl import ThreadpoolController

        return ThreadpoolController().limit(limits=n, user_api="blas")

    # --- data --------------------------------------------------------------------------------
    def view(self, block: int, r: Region) -> np.ndarray:
        assert self.mg is not None
        t = self.mg.taskgraph.tasks[block]
        raw = self.arenas[r.device][r.offset : r.offset + t.nbytes]
        return raw.view(kernels.storage_dtype(t.dtype)).reshape(t.shape)

    def host_view(self, block: int) -> np.ndarray:
        assert self.mg is not None
        t = self.mg.taskgraph.tasks[block]
        return self.host[block].view(kernels.storage_dtype(t.dtype)).reshape(t.shape)

    def output(
        self, block: int, region: Region | None, inputs: Mapping[int, np.ndarray]
    ) -> np.ndarray:
        if region is None and self._is_input(block):  # evicted without a copy
            return input_slice(self.mg, block, inputs)
        return self.host_view(block)

    # --- node kinds --------------------------------------------------------------------------
    def compute(
        self,
        n: MemNode,
        first: bool,
        inputs: Mapping[int, np.ndarray],
        variables: Mapping[str, float],
        link: Link | None,
    ) -> None:
        mg = self.mg
        assert mg is not None and n.region is not None
        t = mg.taskgraph.tasks[n.block]
        out = self.view(n.block, n.region)
        args = [self.view(b, r) for b, r in zip(n.sources, n.reads)]
        if n.kind == "touch":
            partial = args[0]
            same = out.dtype == kernels.compute_dtype(t.dtype)
            if first:
                np.copyto(out, partial)
            elif same:
                kernels.AGG_UFUNC[t.op](out, partial, out=out)
            else:
                out[...] = compute_block(mg, n, [out, partial], inputs, variables)
            return
        kind = t.kind
        if kind == "input":
            src = input_slice(mg, n.block, inputs)
            assert link is not None
            link.transfer(lambda: np.copyto(out, src, casting="unsafe"), t.nbytes)
        elif kind in ("move", "reshape"):
            np.copyto(out, args[0].reshape(t.shape))
        elif kind == "assemble":
            for p in t.op:
                dst = tuple(slice(o, o + s) for o, s in zip(p.dst_offset, p.size))
                src = tuple(slice(o, o + s) for o, s in zip(p.src_offset, p.size))
                out[dst] = args[p.src][src]
        elif kind == "agg" and (len(args) == 1 or out.dtype == kernels.compute_dtype(t.dtype)):
            np.copyto(out, args[0])
            for a in args[1:]:  # accumulate in place: the arena block is the accumulator
                kernels.AGG_UFUNC[t.op](out, a, out=out)
        elif kind == "apply":
            swapped = _swapped(t.op)
            op, ins = (t.op, args) if swapped is None else (swapped, args[::-1])
            kernels.einsum(op, ins, variables, t.dtype, out=out)
        else:
            out[...] = compute_block(mg, n, args, inputs, variables)

    def evict(self, n: MemNode, link: Link, inputs: Mapping[int, np.ndarray]) -> None:
        assert n.region is not None
        if self._is_input(n.block):  # the caller's input array is its host copy already
            return
        src, dst = self.view(n.block, n.region), self.host_view(n.block)
        link.transfer(lambda: np.copyto(dst, src), self._nbytes(n.block))

    def load(self, n: MemNode, link: Link, inputs: Mapping[int, np.ndarray]) -> None:
        assert n.region is not None
        dst = self.view(n.block, n.region)
        src = input_slice(self.mg, n.block, inputs) if self._is_input(n.block) else None
        if src is None:
            src = self.host_view(n.block)
        link.transfer(lambda: np.copyto(dst, src, casting="unsafe"), self._nbytes(n.block))

    def _is_input(self, block: int) -> bool:
        assert self.mg is not None
        return self.mg.taskgraph.tasks[block].kind == "input"

    def fetch(self, f: Fetch, link: Link) -> None:
        src, dst = self.view(f.block, f.region), self.host_view(f.block)
        link.transfer(lambda: np.copyto(dst, src), self._nbytes(f.block))

    def _nbytes(self, block: int) -> int:
        assert self.mg is not None
        return self.mg.taskgraph.tasks[block].nbytes
