"""The tree-cover dynamic programme behind `eindecomp`, and the improvement passes.

Orientation (as the JAX port): a tree's root is a reader and its children are producers. A
producer read by exactly one node is that node's tree child; a producer read by several nodes,
or by none, roots its own tree. For a candidate p of node v, the children are independent, so

    best[v][p] = local(p) + Σ_child min_q (best[u][q] + repart(out_u(q) -> use_v,u(p)))
                          + terms for producers and readers outside the tree

is exact inside a tree with |D|² work per edge (no branching limit is needed). What stands
outside the tree depends on the pass:
- "forward": trees in producer-first order; outside producers are fixed and each edge from one
  is charged on its own; the readers of a shared root are not known yet;
- "reverse": trees in reader-first order; the readers of the root are fixed and its output is
  charged exactly once against the refinement of what they all read; outside producers come
  later and charge themselves;
- "exact": everything outside fixed, with exact marginal costs; `improve` re-solves trees this
  way, one at a time, and keeps a new tree choice only when the exact plan cost drops.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..ir.graph import Graph
from .candidates import candidate_parts
from .cost import LEAVES, repartition_cost
from .partition import Partition
from .space import GridSet, NodeSpace, build_space, edge_matrix, group_min, space_key
from .usage import (
    Grid,
    even_grid,
    is_whole_reshape,
    output_grid,
    partition_shape,
    producer_usages,
    refine_all,
    whole_grid,
)


class TreeSearch:
    """The DP over a tree cover, its two first-pass orders, and tree-by-tree improvement."""

    def __init__(
        self,
        graph: Graph,
        n: int,
        space: str,
        input_discount: float,
        exact: bool,
        fixed: Mapping[int, Grid],
        small_join: float = 0,
    ) -> None:
        self.graph = graph
        self.n = n
        self.space = space
        self.small_join = small_join
        self.input_discount = input_discount
        self.exact = exact
        self.fixed = fixed
        self._space_cache: dict[Any, NodeSpace] = {}
        self._edges: dict[tuple[int, int], np.ndarray] = {}
        self._rep: dict[tuple[Grid, Grid], float] = {}
        self._marg: dict[Any, np.ndarray] = {}
        self.nodes = [v.id for v in graph.nodes if v.op not in LEAVES]
        self.spaces = {v: self.node_space(v) for v in self.nodes}
        self.parent = {u: graph.consumers(u)[0] for u in self.nodes if len(graph.consumers(u)) == 1}
        self.children: dict[int, list[int]] = {}
        for u, v in self.parent.items():
            self.children.setdefault(v, []).append(u)
        self.roots = [v for v in self.nodes if v not in self.parent]
        self.members = {r: sorted(self._tree(r)) for r in self.roots}
        self.tree_of = {v: r for r, ms in self.members.items() for v in ms}

    # --- candidate spaces and memoised costs ------------------------------------------------
    def node_space(self, v: int) -> NodeSpace:
        node = self.graph[v]
        grids: list[Grid] | None = None
        key: tuple[object, ...]  # what, besides the node, the candidate space depends on
        if v in self.fixed:
            grids, key = [self.fixed[v]], ("fixed", self.fixed[v])
        elif is_whole_reshape(self.graph, node):
            grids, key = [whole_grid(node.shape)], ("whole",)
        else:
            key = (self.n, self.space, self.small_join)
        full = space_key(self.graph, v, key)
        sp = self._space_cache.get(full)
        if sp is None:
            if grids is None:
                shape = partition_shape(node)
                parts = candidate_parts(self.graph, v, self.n, self.space, self.small_join)
                grids = [even_grid(shape, p) for p in parts]
            sp = build_space(self.graph, v, grids, self.input_discount)
            self._space_cache[full] = sp
        return sp

    def edge(self, outs: GridSet, uses: GridSet) -> np.ndarray:
        key = (id(outs), id(uses))
        m = self._edges.get(key)
        if m is None:
            m = edge_matrix(outs, uses, self.exact)
            self._edges[key] = m
        return m

    def marginal(self, src: Grid, uses: GridSet, base: Grid | None) -> np.ndarray:
        """Exact repartition of a fixed output to its readers, for each way one reader reads."""
        key = (id(uses), src, base)
        m = self._marg.get(key)
        if m is None:
            m = self._marg[key] = edge_matrix(GridSet.of([src]), uses, True, base)[0]
        return m

    def own_vector(self, outs: GridSet, need: Grid) -> np.ndarray:
        """Exact repartition of each candidate output to a fixed requirement."""
        key = (id(outs), need)
        m = self._marg.get(key)
        if m is None:
            m = self._marg[key] = edge_matrix(outs, GridSet.of([need]), True)[:, 0]
        return m

    def rep(self, src: Grid, need: Grid) -> float:
        key = (src, need)
        c = self._rep.get(key)
        if c is None:
            c = self._rep[key] = repartition_cost(src, need)
        return c

    def _tree(self, root: int) -> list[int]:
        out, stack = [], [root]
        while stack:
            v = stack.pop()
            out.append(v)
            stack.extend(self.children.get(v, ()))
        return out

    # --- state: chosen candidates and who reads what ------------------------------------------
    def grid(self, choice: Mapping[int, int], v: int) -> Grid:
        return self.spaces[v].grids[choice[v]]

    def usages(self, choice: Mapping[int, int]) -> dict[int, dict[int, Grid]]:
        """For every chosen non-leaf producer: consumer -> the grid it reads."""
        used: dict[int, dict[int, Grid]] = {v: {} for v in self.nodes}
        for v in self.nodes:
            if v in choice:
                self._note(used, v, self.grid(choice, v))
        return used

    def _note(self, used: dict[int, dict[int, Grid]], v: int, grid: Grid) -> None:
        for u, use in producer_usages(self.graph, v, grid).items():
            if u in used:
                used[u][v] = use

    def own_cost(self, u: int, grid: Grid, used: Mapping[int, Mapping[int, Grid]]) -> float:
        """Exact repartition of u's output to what its current readers need."""
        if not used[u]:
            return 0.0
        return self.rep(output_grid(self.graph, u, grid), refine_all(list(used[u].values())))

    # --- one tree ---------------------------------------------------------------------------
    def solve_tree(
        self,
        root: int,
        choice: Mapping[int, int],
        used: Mapping[int, Mapping[int, Grid]],
        mode: str,
    ) -> dict[int, int]:
        """Optimal candidates for the tree of `root` with everything outside it as `mode` says:
        "forward" (outside producers fixed, readers of the root unknown), "reverse" (outside
        producers unknown, readers fixed) or "exact" (both fixed, marginal exact costs)."""
        best: dict[int, np.ndarray] = {}
        back: dict[tuple[int, int], np.ndarray] = {}
        members = self.members[root]
        for v in members:
            sp = self.spaces[v]
            val = sp.local.copy()
            node = self.graph[v]
            for gi, slots in enumerate(sp.groups):
                u = node.inputs[slots[0]]
                if self.graph[u].op in LEAVES:
                    continue
                su = self.spaces[u]
                if self.parent.get(u) == v:
                    m = self.edge(su.outs, sp.uses[gi])
                    if su.distinct_outs:
                        bo, bq = best[u], np.arange(len(best[u]))
                    else:
                        bo, bq = group_min(best[u], su.out_of, len(su.outs))
                    tot = bo[:, None] + m
                    eo = np.argmin(tot, axis=0)
                    e = tot[eo, np.arange(tot.shape[1])]
                    val += e[sp.use_of[gi]]
                    back[(v, u)] = bq[eo][sp.use_of[gi]]
                elif mode == "forward":
                    m = self.edge(su.outs, sp.uses[gi])
                    val += m[su.out_of[choice[u]]][sp.use_of[gi]]
                elif mode == "exact":
                    src = output_grid(self.graph, u, self.grid(choice, u))
                    others = [x for c, x in used[u].items() if c != v]
                    base = refine_all(others) if others else None
                    val += self.marginal(src, sp.uses[gi], base)[sp.use_of[gi]]
            if v == root and mode != "forward" and used[root]:
                need = refine_all(list(used[root].values()))
                val += self.own_vector(sp.outs, need)[sp.out_of]
            best[v] = val
        out = {root: int(np.argmin(best[root]))}
        stack = [root]
        while stack:
            v = stack.pop()
            for u in self.children.get(v, ()):
                out[u] = int(back[(v, u)][out[v]])
                stack.append(u)
        return out

    # --- passes -----------------------------------------------------------------------------
    def first_pass(self, order: str) -> dict[int, int]:
        """Trees producer-first ("forward") or reader-first ("reverse"), each solved once."""
        choice: dict[int, int] = {}
        used: dict[int, dict[int, Grid]] = {v: {} for v in self.nodes}
        roots = self.roots if order == "forward" else self.roots[::-1]
        for r in roots:
            new = self.solve_tree(r, choice, used, order)
            choice.update(new)
            for v in new:
                self._note(used, v, self.grid(choice, v))
        return choice

    def tree_cost(
        self, root: int, choice: Mapping[int, int], used: Mapping[int, Mapping[int, Grid]]
    ) -> float:
        """Every exact cost term that the tree of `root` can change."""
        members = self.members[root]
        total = 0.0
        outside: set[int] = set()
        for v in members:
            grid = self.grid(choice, v)
            total += float(self.spaces[v].local[choice[v]]) + self.own_cost(v, grid, used)
            outside.update(u for u in self.graph[v].inputs if u in used and u not in members)
        for u in outside:
            total += self.own_cost(u, self.grid(choice, u), used)
        return total

    def improve(self, choice: dict[int, int], sweeps: int) -> dict[int, int]:
        """Re-solve one tree at a time against the exact cost of everything around it; keep
        strict improvements only, so the plan cost never rises. A tree is re-solved only when
        something it sees changed since it was last solved."""
        choice = dict(choice)
        used = self.usages(choice)
        dirty = set(self.roots)
        for _ in range(sweeps):
            if not dirty:
                break
            todo = [r for r in self.roots if r in dirty]
            dirty = set()
            for r in todo:
                members = self.members[r]
                if all(len(self.spaces[v].grids) == 1 for v in members):
                    continue
                new = self.solve_tree(r, choice, used, "exact")
                if all(new[v] == choice[v] for v in members):
                    continue
                before = self.tree_cost(r, choice, used)
                touched = {u for v in members for u in self.graph[v].inputs if u in used}
                saved_used = {u: dict(used[u]) for u in touched}
                saved = {v: choice[v] for v in members}
                choice.update(new)
                for v in members:
                    self._note(used, v, self.grid(choice, v))
                after = self.tree_cost(r, choice, used)
                if after < before - 1e-9 * max(1.0, before):
                    dirty |= self._neighbour_trees(members, touched)
                else:
                    choice.update(saved)
                    used.update(saved_used)
        return choice

    def _neighbour_trees(self, members: list[int], producers: set[int]) -> set[int]:
        """Trees whose exact costs depend on the given members' choices."""
        near: set[int] = set(producers)
        for v in members:
            near.update(c for c in self.graph.consumers(v))
        for u in producers:
            near.update(self.graph.consumers(u))
        return {self.tree_of[x] for x in near if x in self.tree_of}

    def project(self, decomposition: Mapping[int, Partition]) -> dict[int, int]:
        """The candidate nearest to each node's partition in another plan (fewest doublings
        apart, then cheapest): a start for `improve`."""
        choice: dict[int, int] = {}
        for v in self.nodes:
            sp = self.spaces[v]
            want = np.log2(np.asarray(decomposition[v].grid, dtype=np.float64))
            have = np.log2(np.array([[len(b) - 1 for b in g] for g in sp.grids], dtype=np.float64))
            dist = np.abs(have - want).sum(axis=1) if want.size else np.zeros(len(sp.grids))
            choice[v] = int(np.lexsort((sp.local, dist))[0])
        return choice

    def total(self, choice: Mapping[int, int]) -> float:
        """The exact plan cost of a full choice (leaves add nothing beyond their readers' join)."""
        used = self.usages(choice)
        return sum(
            float(self.spaces[v].local[choice[v]]) + self.own_cost(v, self.grid(choice, v), used)
            for v in self.nodes
        )
