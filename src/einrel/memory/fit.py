"""Make a decomposition respect a per-device memory budget by splitting further.

The memory planner can offload anything except the blocks one task needs at once: its inputs
and its output (for an aggregation, one partial and the output, since partials are added one
at a time). `fit_to_budget` therefore refines the partitions of the nodes behind every task
whose working set exceeds the budget, round after round, until every task fits; the result may
have many more blocks than devices. Only when a task cannot be split any further (every label
of its block already has extent 1, or a reshape that merges dimensions needs its whole input)
is the budget too small: `MemoryBudgetError` names the task, its node and the bytes it needs.
Refinement is also bounded by a task count (`max_tasks`): a budget that is feasible only with
blocks of a few elements would make millions of tasks, so past the limit the error names the
smallest budget the refinement reached within it instead.

Working sets are counted as if every block of a task sat on one device, each rounded up to the
arena alignment, which bounds what any placement needs (moves and cut pieces only lower it).

Which partition to refine. The size of a block is set by one node's partition: an apply, agg
or reshape block by its own node; a concat block by the concat node; an input, fill or
repartition block by the box its reader asked for, so by its readers' nodes. For the worst
offending tasks the largest block involved is shrunk: an einsum splits the label that removes
the most bytes from the task (output labels before aggregated ones on ties, so fewer
aggregations appear), other nodes split their dimension with the largest block extent. Every
piece of the chosen dimension is cut at its midpoint, so user-given split points survive.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..decompose.classes import Slot, label_classes
from ..decompose.partition import PartDim, Partition
from ..decompose.relations import dense_view
from ..decompose.usage import is_whole_reshape
from ..errors import CompileError, MemoryBudgetError
from ..ir.graph import DTYPE_BYTES, Graph
from ..taskgraph.build import build_tasks
from ..taskgraph.ir import Task, TaskGraph
from .allocator import ALIGNMENT, aligned


def task_working_sets(tg: TaskGraph, alignment: int = ALIGNMENT) -> list[int]:
    """Bytes each task of an (unplaced) task graph needs resident at once."""
    tasks = tg.tasks
    out = []
    for t in tasks:
        own = aligned(t.nbytes, alignment)
        ins = [aligned(tasks[i].nbytes, alignment) for i in dict.fromkeys(t.inputs)]
        if t.kind == "agg" and len(t.inputs) > 1:
            out.append(own + max(ins))
        else:
            out.append(own + sum(ins))
    return out


def _split_dim(p: Partition, k: int) -> Partition | None:
    """Cut every piece of dimension k of p at its midpoint (None if all pieces have size 1)."""
    b = p.dims[k].bounds
    new = [b[0]]
    for lo, hi in zip(b, b[1:]):
        if hi - lo >= 2:
            new.append((lo + hi) // 2)
        new.append(hi)
    if len(new) == len(b):
        return None
    dims = list(p.dims)
    dims[k] = PartDim(tuple(new))
    return Partition(tuple(dims))


class _Fitter:
    def __init__(
        self, graph: Graph, dec: dict[int, Partition], cap: int, alignment: int, classes: bool
    ) -> None:
        self.graph = graph
        self.dec = dec
        self.cap = cap
        self.align = alignment
        self.classes = label_classes(graph) if classes else None
        self.members: dict[Slot, list[Slot]] = {}
        if self.classes is not None:
            for u, row in enumerate(self.classes.of):
                for j, c in enumerate(row):
                    self.members.setdefault(c, []).append((u, j))
        self.new_round()

    def nbytes(self, t: Task) -> int:
        return aligned(t.nbytes, self.align)

    # --- splitting one node --------------------------------------------------------------------
    def split_einsum_for(self, v: int, t: Task, tg: TaskGraph) -> bool:
        """Split einsum node v on the label whose halving removes the most bytes from task t
        (one of v's applies: its inputs and output; otherwise v's output block t)."""
        op = self.graph[v].einsum
        labels = op.labels
        nout = len(op.output)
        if t.kind in ("apply", "sparse") and t.node == v:
            bop = t.op.einsum if t.kind == "sparse" else t.op
            tensors = [*zip(bop.inputs, (tg.tasks[i] for i in t.inputs)), (bop.output, t)]
            size = bop.size
        else:
            tensors = [(op.output, t)]
            size = dict(zip(op.output, t.shape))
        ranked = []
        for k, lab in enumerate(labels):
            if size.get(lab, 1) < 2:
                continue
            gain = sum(self.nbytes(x) for labs, x in tensors if lab in labs) / 2
            ranked.append((gain, k < nout, size[lab], -k))
        return any(self.split(v, -negk) for *_, negk in sorted(ranked, reverse=True))

    def split_largest_dim(self, v: int, shape: Sequence[int]) -> bool:
        """Split node v (not an einsum) along the dimension with the largest block extent."""
        n = self.graph[v]
        if is_whole_reshape(self.graph, n):
            return False
        for k in sorted(range(len(shape)), key=lambda k: (-shape[k], k)):
            if shape[k] < 2:
                break
            if self.split(v, k):
                return True
        return False

    def split(self, v: int, k: int) -> bool:
        """Cut dimension k of node v's partition, and with it every dimension of the same label
        class that was cut the same way, so neighbours stay aligned (no repartitioning)."""
        cls = self.classes.of[v][k] if self.classes is not None else None
        if cls is not None and cls in self.cut:
            return False
        old = self.dec[v].dims[k].bounds
        q = _split_dim(self.dec[v], k)
        if q is None:
            return False
        self.dec[v] = q
        self.touched.add(v)
        if cls is not None:
            self.cut.add(cls)
            for u, j in self.members.get(cls, ()):
                p = self.dec.get(u)
                if u != v and p is not None and p.dims[j].bounds == old:
                    self.dec[u] = Partition(
                        tuple(q.dims[k] if d == j else dim for d, dim in enumerate(p.dims))
                    )
                    self.touched.add(u)
        return True

    def new_round(self) -> None:
        self.cut: set[Slot] = set()  # classes cut this round
        self.touched: set[int] = set()  # nodes whose partition changed this round

    def shrink_block(self, b: Task, reader: Task | None, tg: TaskGraph, done: set[int]) -> bool:
        """Refine the partition that sets block b's size (b is read by `reader`, if given)."""
        graph = self.graph
        node = graph[b.node]
        kind = b.kind
        own = kind in ("apply", "sparse", "densify", "agg", "reshape") or (
            kind == "assemble" and any(tg.tasks[i].node != b.node for i in b.inputs)
        )
        if own:
            if b.node in done:
                return False
            ok = (
                self.split_einsum_for(b.node, b, tg)
                if node.op == "einsum"
                else self.split_largest_dim(b.node, b.shape)
            )
            if ok:
                done.add(b.node)
            return ok
        # input, fill or repartition block: its box comes from a reader's partition, or from a
        # slice of b's node (a slice has no tasks: its blocks are gathered from its input)
        for s in graph.nodes:
            if s.op == "slice" and s.inputs[0] == b.node and s.id not in done:
                shapes = {box[1] for box in self.dec[s.id].boxes()}
                if tuple(b.shape) in shapes and self.split_largest_dim(s.id, b.shape):
                    done.add(s.id)
                    return True
        readers = [reader] if reader is not None else []
        readers += [tg.tasks[c] for c in tg.consumers(b.id) if reader is None or c != reader.id]
        for c in readers:
            v = c.node
            if v in done:
                continue
            if graph[v].op == "einsum":
                ok = self.split_einsum_for(v, c, tg)
            else:
                ok = self.split_largest_dim(v, c.shape)
            if ok:
                done.add(v)
                return True
        return False

    def fix(self, t: Task, tg: TaskGraph, done: set[int]) -> bool:
        """Shrink the largest block task t holds; try the next largest when that cannot be."""
        blocks: list[tuple[int, int, Task, Task | None]] = [(self.nbytes(t), 0, t, None)]
        blocks += [(self.nbytes(tg.tasks[i]), 1, tg.tasks[i], t) for i in dict.fromkeys(t.inputs)]
        blocks.sort(key=lambda x: (-x[0], x[1]))
        own = t.kind in ("apply", "sparse")
        if own and t.node not in done and self.split_einsum_for(t.node, t, tg):
            done.add(t.node)
            return True
        return any(self.shrink_block(b, reader, tg, done) for _, _, b, reader in blocks)


def fit_to_budget(
    graph: Graph,
    decomposition: Mapping[int, Partition],
    ndev: int,
    budget: int | Sequence[int | None] | None,
    alignment: int = ALIGNMENT,
    max_rounds: int = 200,
    headroom: float = 1.0,
    classes: bool = True,
    max_tasks: int = 20_000,
    on_round: Callable[[str], None] | None = None,
    counts: Mapping[str, Any] | None = None,
) -> dict[int, Partition]:
    """A decomposition, refined from `decomposition`, in which every task's working set fits
    `budget` bytes (the smallest budget when one per device is given). Raises
    MemoryBudgetError when some task cannot be split enough.

    `headroom` < 1 asks for more: tasks are split until their working set is at most
    `headroom * budget` where splitting allows (a task that cannot be split further only has to
    fit the budget itself), so several blocks stay resident and fewer evictions are needed.
    With `classes` a cut spreads over the label class of the cut dimension (see
    `decompose.classes`), which keeps producers and consumers aligned. A refinement that
    would need more than `max_tasks` tasks raises MemoryBudgetError naming the smallest budget
    reached within that many; `on_round` is told about every round; `counts` are relations'
    tuple counts (see `build_tasks`)."""
    if budget is None:
        return dict(decomposition)
    tasks_of = functools.partial(build_tasks, graph, counts=counts)
    graph = dense_view(graph)  # relational nodes refine as the dense nodes they stand for
    caps = [budget] if isinstance(budget, int) else [b for b in budget if b is not None]
    if not caps:
        return dict(decomposition)
    cap = int(min(caps))
    del ndev  # the budget is per device; every task of a placement runs on one device
    _check_floor(graph, cap, alignment)
    if not 0.0 < headroom <= 1.0:
        raise CompileError(f"headroom must be in (0, 1], got {headroom!r}")
    dec = dict(decomposition)
    fitter = _Fitter(graph, dec, cap, alignment, classes)
    goal = max(1, int(cap * headroom))
    if not isinstance(max_tasks, int) or max_tasks < 1:
        raise CompileError(f"max_tasks must be an int >= 1, got {max_tasks!r}")
    settled: set[int] = set()  # nodes whose tasks fit the budget and cannot be split further
    reached: int | None = None  # the largest working set of the last refinement within the limit
    for r in range(max_rounds):
        tg = tasks_of(dec)
        ws = task_working_sets(tg, alignment)
        if len(tg.tasks) > max_tasks:
            raise _too_many(graph, len(tg.tasks), max_tasks, cap, reached or max(ws))
        reached = max(ws, default=0)
        if on_round is not None:
            on_round(
                f"fitting a {cap} B budget: round {r + 1}, {len(tg.tasks)} tasks, largest "
                f"working set {reached} B"
            )
        bad = sorted(
            (t for t in tg.tasks if ws[t.id] > cap or (ws[t.id] > goal and t.node not in settled)),
            key=lambda t: (-ws[t.id], t.id),
        )
        if not bad:
            return dec
        fitter.new_round()
        done = fitter.touched
        progress = False
        stuck: Task | None = None
        for t in bad:
            if fitter.fix(t, tg, done):
                progress = True
            elif ws[t.id] > cap:
                stuck = stuck or t
            elif t.node not in done:
                settled.add(t.node)
        if stuck is not None and not progress:
            raise _too_small(graph, tg, stuck, ws, cap, alignment)
    tg = tasks_of(dec)  # pragma: no cover - every round splits at least one piece
    ws = task_working_sets(tg, alignment)
    worst = max(tg.tasks, key=lambda t: ws[t.id])
    raise _too_small(graph, tg, worst, ws, cap, alignment)


def finest_working_set(graph: Graph, v: int, alignment: int = ALIGNMENT) -> int:
    """The fewest bytes a task of node v can need: one element per block (an einsum reads one
    block per distinct operand), or whole tensors for a reshape that merges dimensions."""
    n = graph[v]
    one = aligned(DTYPE_BYTES[n.dtype], alignment)
    if n.op == "einsum":
        return (len(set(zip(n.inputs, n.einsum.inputs))) + 1) * one
    if is_whole_reshape(graph, n):
        src = graph[n.inputs[0]]
        size = math.prod(src.shape) * DTYPE_BYTES[src.dtype]
        return aligned(size, alignment) + aligned(
            math.prod(n.shape) * DTYPE_BYTES[n.dtype], alignment
        )
    return one if n.op in ("input", "fill") else 2 * one


def _check_floor(graph: Graph, cap: int, alignment: int) -> None:
    """Fail at once when some node cannot fit even at its finest split."""
    for n in graph.nodes:
        need = finest_working_set(graph, n.id, alignment)
        if need > cap:
            what = f"{n.einsum}" if n.op == "einsum" else n.op
            err = MemoryBudgetError(
                f"graph node {n.name} ({what}) needs {need} bytes resident at once even at the "
                f"finest split einrel can make (its inputs and output, each aligned to "
                f"{alignment} B), but the device budget is {cap} bytes"
            )
            err.task, err.node, err.needed = None, n.name, need  # type: ignore[attr-defined]
            raise err


def _too_many(
    graph: Graph, ntasks: int, max_tasks: int, cap: int, reached: int
) -> MemoryBudgetError:
    err = MemoryBudgetError(
        f"a device budget of {cap} bytes needs blocks so small that the graph would have more "
        f"than {max_tasks} tasks ({ntasks} at the next refinement; max_tasks={max_tasks}). The "
        f"smallest budget this graph fits within {max_tasks} tasks is about {reached} bytes "
        f"({reached / 2**20:.2f} MiB): use at least that, or raise max_tasks"
    )
    err.task, err.node, err.needed = None, None, reached  # type: ignore[attr-defined]
    return err


def _too_small(
    graph: Graph, tg: TaskGraph, t: Task, ws: Sequence[int], cap: int, alignment: int
) -> MemoryBudgetError:
    name = graph[t.node].name
    blocks = [f"t{i} {list(tg.tasks[i].shape)}" for i in dict.fromkeys(t.inputs)]
    what = f"{t.kind} task t{t.id} of graph node {name}"
    reads = f" reading {', '.join(blocks)}" if blocks else ""
    err = MemoryBudgetError(
        f"{what}{reads} -> {list(t.shape)} {t.dtype} needs {ws[t.id]} bytes resident at once "
        f"(its inputs and output, each aligned to {alignment} B) even at the finest split "
        f"einrel can make, but the device budget is {cap} bytes"
    )
    err.task, err.node, err.needed = t.id, name, ws[t.id]  # type: ignore[attr-defined]
    return err
