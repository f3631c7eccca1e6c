"""The memory-graph scheduling core: what the memory engine and its simulator share.

It never reads a clock and starts no thread: an engine calls `dispatch(now)` to launch what is
ready on free slots and `complete(node, slot, now)` when a node is done; the thread driver and
the simulated clock drive the same rules.

Order. Whenever a slot is free it takes the best ready node of its resource under the priority:
"given" (TURNIP's classes: touch, evict, load and host inputs before other compute, then the
planning order), "critical-path" (longest remaining path of modelled node times), "bfs"
(shallowest first), "dfs" (last made ready first), "fifo" (first made ready first), "random"
(a fresh random key per node and run), or explicit keys per node. "fixed" is the baseline: each
resource runs its nodes strictly in the planning order (`MemGraph.fixed_order()`), waiting for
the next one even when later ones are ready; evictions and loads still overlap compute.
"serial" replays the planning order one node at a time, nothing overlapping. A touch also needs
its group's lock, so two accumulations into one block never overlap.

Memory. Bytes in use per device rise at an `alloc` and fall at a `free` or when an `evict` has
finished copying; `peak` is the exact maximum. Every allocation is checked against the live
regions of its arena (no overlap, inside the arena), so a bad plan fails loudly instead of
corrupting data.
"""

from __future__ import annotations

import bisect
import random
from heapq import heappop, heappush

from ...errors import ExecutionError
from ...memory import MemNode, Region
from .schedule import MARKERS, Lane, MemEvent, MemSchedule


class MemCore:
    """Run state of one execution of a memory schedule: ready queues per resource, the order
    policy, group locks of touches, and the memory books (every region claimed and released is
    checked against the live regions of its arena).

    `dispatch(now)` returns (node, slot) launches; slots number the compute workers device by
    device, then one slot per channel resource (h2d, d2h, peer of each device). Markers
    (`alloc`, `free`, `done`) complete the instant they become ready, inside the core."""

    def __init__(
        self,
        sched: MemSchedule,
        workers_per_device: int = 1,
        max_running: int | None = None,
        rng: random.Random | None = None,
        record: bool = True,
    ) -> None:
        mg = sched.mg
        self.sched = sched
        self.mg = mg
        self.nodes = mg.nodes
        ndev, wpd = sched.ndev, workers_per_device
        self.ndev = ndev
        self.wpd = wpd
        nres = 4 * ndev
        # slots: compute workers device by device, then one slot per channel resource
        self.slot_res = [d for d in range(ndev) for _ in range(wpd)] + list(range(ndev, nres))
        self.nslots = len(self.slot_res)
        self.free: list[list[int]] = [[] for _ in range(nres)]
        for s in reversed(range(self.nslots)):
            self.free[self.slot_res[s]].append(s)
        self.heaps: list[list[tuple[float, int]]] = [[] for _ in range(nres)]
        self.waiting = list(sched.deps)
        self.mode = sched.mode
        self.key = list(sched.key)
        if self.mode == "random":
            gen = random.Random((rng or random.Random()).random())
            self.key = [gen.random() for _ in self.key]
        self.seq = 0
        self.serial_next = 0  # "serial": the next node of the whole planning order
        if self.mode == "fixed":
            self.order_of: list[list[int]] = [[] for _ in range(nres)]
            for i, r in enumerate(sched.resource):
                if r >= 0:
                    self.order_of[r].append(i)
            self.next_pos = [0] * nres
        self.group_held: set[int] = set()
        self.blocked: dict[int, list[int]] = {}
        self.touched: dict[int, int] = {}
        self.max_running = max_running if max_running is not None else 1 << 30
        self.running = 0
        self.inflight = 0
        self.used = [0] * ndev
        self.peak = [0] * ndev
        self.spans: list[list[tuple[int, int, int]]] = [[] for _ in range(ndev)]
        self.arena = [mg.arena_size(d) for d in range(mg.ndev)] + [0] * (ndev - mg.ndev)
        self.busy = [0.0] * ndev
        self.start_at = [0.0] * sched.size
        self.first_of: dict[int, bool] = {}
        self.done = 0
        self.events: list[MemEvent] | None = [] if record else None
        self.order: list[int] = []
        self.offloaded = 0
        self.loaded = 0
        self.moved = 0
        for i in range(sched.size):
            if sched.deps[i] == 0:
                self.ready(i, 0.0)

    # --- readiness ---------------------------------------------------------------------------
    def ready(self, i: int, now: float) -> None:
        """Node i has no unmet dependencies: run it inline if it is a marker, else queue it."""
        stack = [i]
        sched = self.sched
        while stack:
            j = stack.pop()
            r = sched.resource[j]
            if r >= 0:
                self._push(j, r)
                continue
            self._marker(self.nodes[j])
            self.done += 1
            self.order.append(j)
            if self.events is not None:
                self.events.append((j, sched.device[j], MARKERS, now, now))
            for s in sched.succ[j]:
                self.waiting[s] -= 1
                if self.waiting[s] == 0:
                    stack.append(s)

    def _push(self, i: int, r: int) -> None:
        mode = self.mode
        if mode == "fifo":
            self.seq += 1
            heappush(self.heaps[r], (self.seq, i))
        elif mode == "dfs":
            self.seq += 1
            heappush(self.heaps[r], (-self.seq, i))
        else:
            heappush(self.heaps[r], (self.key[i], i))

    def _marker(self, n: MemNode) -> None:
        if n.kind == "alloc":
            r = n.region
            assert r is not None
            self._claim(n, r)
        elif n.kind == "free":
            assert n.region is not None
            self._release(n, n.region)
        elif n.kind == "done":
            want = len(self.mg.groups[n.group])
            if self.touched.get(n.group, 0) != want:
                raise ExecutionError(
                    f"memory node n{n.id}: group t{n.group} completed after "
                    f"{self.touched.get(n.group, 0)} of {want} touches"
                )

    def _claim(self, n: MemNode, r: Region) -> None:
        d = r.device
        if r.offset < 0 or r.end > self.arena[d]:
            raise ExecutionError(
                f"memory node n{n.id}: region {r} is outside device {d}'s arena of "
                f"{self.arena[d]} bytes"
            )
        spans = self.spans[d]
        k = bisect.bisect_left(spans, (r.offset, r.end, n.block))
        for j in (k - 1, k):
            if 0 <= j < len(spans) and spans[j][0] < r.end and r.offset < spans[j][1]:
                o = spans[j]
                raise ExecutionError(
                    f"memory node n{n.id}: region {r} for t{n.block} overlaps live t{o[2]} at "
                    f"[{o[0]},{o[1]}) -- the memory graph is missing an ordering edge"
                )
        spans.insert(k, (r.offset, r.end, n.block))
        self.used[d] += r.size
        if self.used[d] > self.peak[d]:
            self.peak[d] = self.used[d]

    def _release(self, n: MemNode, r: Region) -> None:
        spans = self.spans[r.device]
        k = bisect.bisect_left(spans, (r.offset, r.end, n.block))
        if k >= len(spans) or spans[k] != (r.offset, r.end, n.block):
            raise ExecutionError(f"memory node n{n.id}: t{n.block} is not live at {r}")
        del spans[k]
        self.used[r.device] -= r.size

    # --- dispatch ----------------------------------------------------------------------------
    def _eligible(self, r: int) -> int:
        """The node resource r would start now, or -1 (parking touches whose lock is taken)."""
        h = self.heaps[r]
        if self.mode == "serial":
            while self.serial_next < self.sched.size and self.sched.resource[self.serial_next] < 0:
                self.serial_next += 1  # markers are done inline
            if self.inflight or not h or h[0][1] != self.serial_next:
                return -1
            return h[0][1]
        if self.mode == "fixed":
            seq, pos = self.order_of[r], self.next_pos[r]
            if not h or pos >= len(seq) or h[0][1] != seq[pos]:
                return -1
            i = h[0][1]
            n = self.nodes[i] if i < len(self.nodes) else None
            if n is not None and n.kind == "touch" and n.group in self.group_held:
                return -1
            return i
        while h:
            i = h[0][1]
            n = self.nodes[i] if i < len(self.nodes) else None
            if n is not None and n.kind == "touch" and n.group in self.group_held:
                heappop(h)
                self.blocked.setdefault(n.group, []).append(i)
                continue
            return i
        return -1

    def _start(self, i: int, r: int, now: float, out: list[tuple[int, int]]) -> None:
        heappop(self.heaps[r])
        if self.mode == "fixed":
            self.next_pos[r] += 1
        elif self.mode == "serial":
            self.serial_next = i + 1
        slot = self.free[r].pop()
        if i < len(self.nodes):
            n = self.nodes[i]
            if n.kind == "touch":
                self.group_held.add(n.group)
                c = self.touched.get(n.group, 0)
                self.first_of[i] = c == 0
                self.touched[n.group] = c + 1
        if r < self.ndev:
            self.running += 1
        self.inflight += 1
        self.start_at[i] = now
        self.order.append(i)
        out.append((i, slot))

    def dispatch(self, now: float) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        ndev = self.ndev
        for r in range(ndev, 4 * ndev):  # channels
            if self.free[r]:
                i = self._eligible(r)
                if i >= 0:
                    self._start(i, r, now, out)
        cap = self.max_running
        while self.running < cap:
            best, bkey = -1, None
            for r in range(ndev):
                if not self.free[r]:
                    continue
                i = self._eligible(r)
                if i < 0:
                    continue
                k = self.heaps[r][0]
                if bkey is None or k < bkey:
                    best, bkey = r, k
            if best < 0:
                break
            self._start(bkey[1], best, now, out)  # type: ignore[index]
        return out

    def complete(self, i: int, slot: int, now: float) -> None:
        sched = self.sched
        r = self.slot_res[slot]
        d = sched.device[i]
        self.free[r].append(slot)
        self.inflight -= 1
        if r < self.ndev:
            self.running -= 1
            self.busy[d] += now - self.start_at[i]
        if self.events is not None:
            lane = slot - d * self.wpd if r < self.ndev else -(r // self.ndev)
            self.events.append((i, d, lane, self.start_at[i], now))
        if i < len(self.nodes):
            n = self.nodes[i]
            if n.kind == "evict":
                assert n.region is not None
                self._release(n, n.region)
                self.offloaded += self.mg.block_bytes(n.block)
            elif n.kind == "load":
                self.loaded += self.mg.block_bytes(n.block)
            elif n.kind == "touch":
                self.group_held.discard(n.group)
                for j in self.blocked.pop(n.group, ()):
                    self._push(j, sched.resource[j])
            elif sched.lane[i] == Lane.PEER:
                self.moved += self.mg.block_bytes(n.block)
        self.done += 1
        for s in sched.succ[i]:
            self.waiting[s] -= 1
            if self.waiting[s] == 0:
                self.ready(s, now)

    @property
    def finished(self) -> bool:
        return self.done == self.sched.size

    def stall_message(self) -> str:
        left = [i for i, w in enumerate(self.waiting) if w > 0][:5]
        return (
            f"the memory engine stalled after {self.done} of {self.sched.size} nodes "
            f"(waiting: {left}); the memory graph has a cycle or a lost dependency"
        )
