"""Doppler's trainer: one stage of training a policy on one or more graphs.

Per episode, with one Adam optimiser per head (SEL, PLC), each over its own actions, and one for
the shared encoder, which both losses train:

    L = − w_pg · Σ_t log π(a_t | s_t) · R_t − w_il · Σ_t Σ_{a ∈ CP*(s_t)} log π(a | s_t)
        + w_ent · Σ_t Σ_a π(a | s_t) log π(a | s_t)

Stage I imitates the critical-path heuristic from fully random rollouts (ε = 1); stage II is
policy gradient with the simulator's makespan as the cost; stage III the same with a measured
makespan (`einrel.place.doppler.real`). A measured cost sees what the simulator does not: on
`er.cpu(4)` over two cores, for one, the placements that spread over four devices run slower than
ones on two, so stage III may also choose how many devices the policy uses (`choose_devices`).

Rewards are 0 except at the end: the terminal reward is (baseline − cost) / baseline, the
relative gain over a running average of past costs (an exponential average, so the baseline
follows an improving policy), and R_t = γ^(T−1−t) · reward.

Every `eval_every` updates the greedy policy is decoded and costed; in stages II and III the
weights with the best greedy cost seen are the ones kept at the end of the stage (the training
graph is the graph to place, so this is model selection on the objective itself). The learning
rate is constant, as the released runs effectively had it. Options live in
`recipes.TrainConfig`, losses in `losses`, side-by-side evaluation in `evaluate`.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from ...errors import CompileError
from ..dag import PlaceGraph
from .env import Episode, rollout
from .evaluate import choose_active, per_graph_oracles, rematch
from .features import GraphFeatures, graph_features
from .losses import discounted, episode_losses
from .model import GraphTensors, PlcNumpy
from .policy import DopplerPolicy, one_thread
from .recipes import BASELINE_DECAY, TrainConfig


@dataclass
class TrainLog:
    """What a stage did; costs in the oracle's units."""

    stage: int
    episodes: int = 0
    seconds: float = 0.0
    costs: list[float] = field(default_factory=list)
    il_loss: list[float] = field(default_factory=list)
    greedy: list[tuple[int, float]] = field(default_factory=list)
    # (episode, cost) each time an episode (sampled or greedy) beat every earlier one
    cheapest: list[tuple[int, float]] = field(default_factory=list)
    polish_updates: int = 0
    # `choose_devices`: median cost of each device count relative to all devices; the one taken
    device_ratios: dict[int, float] = field(default_factory=dict)
    active: int | None = None
    # `confirm`: median cost of the best checkpoint relative to the stage's start
    confirm_ratio: float | None = None
    best: float = math.inf
    best_episode: int = -1
    start_greedy: float = math.inf

    @property
    def seconds_per_episode(self) -> float:
        return self.seconds / max(self.episodes, 1)

    def summary(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "episodes": self.episodes,
            "seconds": round(self.seconds, 2),
            "seconds_per_episode": round(self.seconds_per_episode, 4),
            "start_greedy": self.start_greedy,
            "best_greedy": self.best,
            "best_episode": self.best_episode,
            "cheapest_episode_cost": self.cheapest[-1][1] if self.cheapest else None,
            "polish_updates": self.polish_updates,
            "active_devices": self.active,
            "device_ratios": self.device_ratios or None,
            "confirm_ratio": self.confirm_ratio,
        }


class _Progress:
    """A rich progress bar on stderr: episode, current cost, last greedy cost and best so far."""

    def __init__(self, enabled: bool, title: str, total: int, unit: float) -> None:
        self.unit = unit
        self.bar: Any = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=16),
            MofNCompleteColumn(),
            TextColumn("cur {task.fields[cur]} greedy {task.fields[greedy]}"),
            TextColumn("[green]best {task.fields[best]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self.task = self.bar.add_task(title, total=total, cur="-", greedy="-", best="-")
        self.bar.start()

    def fmt(self, x: float) -> str:
        return "-" if not math.isfinite(x) else f"{x / self.unit:.1f}"

    def update(self, done: int, cur: float, greedy: float, best: float) -> None:
        if self.bar is not None:
            self.bar.update(
                self.task,
                completed=done,
                cur=self.fmt(cur),
                greedy=self.fmt(greedy),
                best=self.fmt(best),
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


class Trainer:
    """The state of one stage of training (`train` runs it): the graphs and their oracles, one
    optimiser per network, the cheapest episode per graph, the running baselines and the log."""

    def __init__(
        self,
        policy: DopplerPolicy,
        graphs: PlaceGraph | GraphFeatures | Sequence[PlaceGraph | GraphFeatures],
        stage: int,
        config: TrainConfig,
    ) -> None:
        self.policy = policy
        self.stage = stage
        self.config = config
        self.st = config.stage_params(stage)
        st = self.st
        self.total = st.episodes if config.episodes is None else config.episodes
        many = graphs if isinstance(graphs, Sequence) else [graphs]
        if not many:
            raise CompileError("train needs at least one graph")
        self.gfs = [g if isinstance(g, GraphFeatures) else graph_features(g) for g in many]
        self.oracles = per_graph_oracles(config.oracle, self.gfs)
        self.eval_oracles = (
            per_graph_oracles(config.eval_oracle, self.gfs)
            if config.eval_oracle is not None
            else self.oracles
        )
        self.gts = [GraphTensors(gf) for gf in self.gfs]
        self.rate = st.lr if config.lr is None else config.lr
        self.opts = [
            torch.optim.Adam(net.parameters(), lr=self.rate)
            for net in (policy.sel, policy.plc, policy.encoder)
        ]
        self.rng = random.Random(config.seed)
        self.log = TrainLog(stage)
        self.single = len(self.gfs) == 1
        unit = config.unit if self.single else 1.0
        self.bar = _Progress(config.progress, config.title or f"stage {stage}", self.total, unit)
        self.best_ep: list[tuple[float, Episode] | None] = [None] * len(self.gfs)
        self.baselines: list[float | None] = [None] * len(self.gfs)
        self.sil = replace(st, w_pg=1.0, w_il=0.0, w_ent=0.0)
        self.k = 0
        self.update = 0
        self.scale = [1.0]
        self.last_greedy = math.inf
        self.best_state: dict[str, Any] = {}
        self.start_state: dict[str, Any] = {}

    # --- bookkeeping ---------------------------------------------------------------------------
    def remember(self, i: int, cost: float, ep: Episode) -> None:
        """Keep the cheapest episode of graph i (sampled or greedy) for self-imitation."""
        held = self.best_ep[i]
        if held is None or cost < held[0]:
            self.best_ep[i] = (cost, ep)
            if self.single:
                self.log.cheapest.append((self.log.episodes, cost))

    def greedy_costs(self) -> list[float]:
        costs = []
        for i, (gf, gt, o) in enumerate(zip(self.gfs, self.gts, self.eval_oracles)):
            ep = self.policy.decode(gf, tensors=gt)
            costs.append(float(o(ep.assignment)))
            self.remember(i, costs[-1], ep)
        return costs

    def metric(self, costs: list[float]) -> float:
        """Mean over graphs of cost / the greedy cost at the start (the cost itself for one)."""
        return sum(c / s for c, s in zip(costs, self.scale)) / len(costs)

    def checkpoint(self) -> None:
        log = self.log
        self.last_greedy = self.metric(self.greedy_costs())
        log.greedy.append((self.k, self.last_greedy))
        if self.last_greedy < log.best:
            log.best, log.best_episode = self.last_greedy, self.k
            self.best_state = self.policy.state()

    # --- updates -------------------------------------------------------------------------------
    def step(self, loss: torch.Tensor) -> None:
        for opt in self.opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.clip is not None:
            for net in (self.policy.sel, self.policy.plc, self.policy.encoder):
                torch.nn.utils.clip_grad_norm_(net.parameters(), self.config.clip)
        for opt in self.opts:
            opt.step()

    def imitate_best(
        self, i: int, loss: torch.Tensor, weight: float, heads: tuple[torch.Tensor, ...]
    ) -> torch.Tensor:
        """`loss` plus `weight` times the imitation loss of graph i's cheapest episode."""
        held = self.best_ep[i]
        if held is None:
            return loss
        scores, h, c = heads
        ones = torch.full((len(held[1].order),), weight, dtype=torch.float32)
        sel_loss, plc_loss, _ = episode_losses(
            self.policy, self.gts[i], scores, h, c, held[1], self.sil, ones
        )
        return loss + sel_loss + plc_loss

    def rewards(self, i: int, costs: list[float]) -> list[float | None]:
        """The terminal reward of each episode of a batch (None without policy gradient)."""
        if not self.st.w_pg:
            return [None] * len(costs)
        if self.config.advantage == "batch":
            arr = np.array(costs)
            std = float(arr.std())
            return [(float(arr.mean()) - x) / std if std > 0 else 0.0 for x in arr]
        out: list[float | None] = []
        for cost in costs:
            base = self.baselines[i]
            if base is None:
                base = cost
            out.append((base - cost) / base if base > 0 else 0.0)
            self.baselines[i] = BASELINE_DECAY * base + (1 - BASELINE_DECAY) * cost
        return out

    def explore(self, t0: float) -> None:
        """Episodes and policy-gradient / imitation updates until the episodes (or the
        exploration share of the time limit) are spent."""
        cfg, st, log, policy = self.config, self.st, self.log, self.policy
        limit = cfg.time_limit
        explore_until = math.inf if limit is None else limit * (1 - cfg.polish)
        while self.k < self.total:
            if time.perf_counter() - t0 > explore_until:
                break
            i = self.update % len(self.gfs)
            self.update += 1
            gf, gt = self.gfs[i], self.gts[i]
            scores, h, c = policy.forward(gt)
            plc_np = PlcNumpy(policy.plc, h, c) if st.eps_plc < 1 else None
            sel_np = scores.detach().numpy() if st.eps_sel < 1 else None
            loss = scores.new_zeros(())
            eps_costs = []
            for _ in range(min(cfg.batch, self.total - self.k)):
                ep = rollout(
                    gf, policy.active, sel_np, plc_np, st.eps_sel, st.eps_plc, self.rng, cfg.sample
                )
                eps_costs.append((ep, float(self.oracles[i](ep.assignment))))
                self.remember(i, eps_costs[-1][1], ep)
            rewards = self.rewards(i, [cst for _, cst in eps_costs])
            share = 1.0 / len(eps_costs) if cfg.advantage == "batch" else 1.0
            cost = math.nan
            for (ep, cost), reward in zip(eps_costs, rewards):
                returns = None
                if reward is not None:
                    returns = discounted(reward, len(ep.order), cfg.gamma)
                sel_loss, plc_loss, il_value = episode_losses(
                    policy, gt, scores, h, c, ep, st, returns
                )
                loss = loss + share * (sel_loss + plc_loss)
                self.k += 1
                log.costs.append(cost)
                log.il_loss.append(il_value)
            if cfg.self_imitation:
                loss = self.imitate_best(i, loss, cfg.self_imitation, (scores, h, c))
            self.step(loss)
            log.episodes = self.k
            if self.update % cfg.eval_every == 0 or self.k >= self.total:
                self.checkpoint()
            self.bar.update(self.k, cost / self.scale[i], self.last_greedy, log.best)

    def polish(self, t0: float) -> None:
        """Self-imitation alone until greedy decoding costs no more than the cheapest episode,
        for the polishing share of the time."""
        cfg = self.config
        spent = time.perf_counter() - t0
        end = spent / (1 - cfg.polish) if cfg.time_limit is None else cfg.time_limit
        while cfg.polish and time.perf_counter() - t0 < end:
            cheapest = self.metric([held[0] if held else math.inf for held in self.best_ep])
            if self.log.best <= cheapest:
                break
            loss = torch.zeros(())
            for i, gt in enumerate(self.gts):
                loss = self.imitate_best(i, loss, 1.0, self.policy.forward(gt))
            self.step(loss)
            self.log.polish_updates += 1
            self.checkpoint()
            self.bar.update(self.k, math.nan, self.last_greedy, self.log.best)

    def keep(self) -> None:
        """End the stage with the best checkpoint (stages II and III by default), unless a
        side-by-side rematch (`confirm`) finds it no better than the start."""
        cfg, log = self.config, self.log
        if not (cfg.keep_best if cfg.keep_best is not None else self.stage != 1):
            return
        best = self.best_state
        if cfg.confirm and best is not self.start_state:
            states = [self.start_state, best]
            log.confirm_ratio = rematch(
                self.policy, states, self.gfs, self.gts, self.eval_oracles, cfg.confirm
            )[1]
            if log.confirm_ratio > 1.0:
                best = self.start_state
        self.policy.load_state(best)

    # --- the stage -----------------------------------------------------------------------------
    def run(self) -> TrainLog:
        cfg, log, policy = self.config, self.log, self.policy
        t0 = time.perf_counter()
        try:
            if cfg.choose_devices:
                log.device_ratios = choose_active(
                    policy, self.gfs, self.gts, self.eval_oracles, cfg.choose_devices
                )
                log.active = policy.active
            first = self.greedy_costs()
            self.scale = [1.0] if self.single else [max(c, 1e-300) for c in first]
            self.best_state = self.start_state = policy.state()
            log.start_greedy = log.best = self.last_greedy = self.metric(first)
            log.greedy.append((0, log.best))
            log.best_episode = 0
            self.explore(t0)
            self.polish(t0)
        finally:
            self.bar.close()
        self.keep()
        log.seconds = time.perf_counter() - t0
        entry = log.summary()
        entry["graphs"] = [gf.graph.name for gf in self.gfs]
        entry["options"] = cfg.record(self.st, self.rate)
        policy.history.append(entry)
        for gf in self.gfs:
            policy.add_graph(gf.fingerprint, gf.graph.name)
        return log


@one_thread
def train(
    policy: DopplerPolicy,
    graphs: PlaceGraph | GraphFeatures | Sequence[PlaceGraph | GraphFeatures],
    stage: int,
    config: TrainConfig | None = None,
    **options: Any,
) -> TrainLog:
    """Train `policy` for one stage, in place; returns the stage's log. The options are
    `TrainConfig`'s fields, given as a config or as keywords (keywords override the config).

    With several graphs, updates cycle through them (`episodes` counts all of them) and the
    greedy checkpoints are ranked by the mean over graphs of greedy cost / the greedy cost at the
    start of the stage. `oracle(assignment) -> cost` (one, or one per graph) defaults to the
    simulator; stage 3 needs a measured one; `eval_oracle` costs the greedy checkpoints (default:
    `oracle`; a noisy oracle may want a median of several runs there). `eps` overrides both ε.
    `keep_best` (default: in stages II and III) ends the stage with the weights of the best
    greedy checkpoint; stage I trains for imitation, so by default it keeps its last weights.

    Options beyond the paper's recipe (defaults off, see `RECIPES`): `batch` episodes share one
    encoder pass and one update; `sample` draws the non-random actions from the softmax instead
    of taking the argmax; `self_imitation` > 0 adds, per update, that weight times the
    log-likelihood loss of the cheapest episode seen so far in the stage (sampled or greedy),
    replayed step by step, so that greedy decoding follows the best assignment found
    (self-imitation, after Oh et al. 2018). `advantage="batch"` replaces the running-average
    baseline by the batch's own: episode i of a batch gets the advantage
    (mean cost − cost_i) / std of the batch's costs (0 when they are all equal), and the batch's
    policy-gradient losses are averaged rather than summed. `gamma` discounts the terminal
    reward back to step t (R_t = γ^(T−1−t)·reward; 1 gives every step the full reward);
    `entropy` overrides the stage's entropy weight; `clip` clips the gradient norm of each
    network (SEL, PLC, encoder) before the step. `polish` in [0, 1) ends the stage with that
    share of its time (of `time_limit`, when given, else of the time exploration took) spent on
    self-imitation alone: no exploration and no policy gradient, only the cheapest episode
    replayed, with a greedy checkpoint after every update, until greedy decoding costs no more
    than that episode. Greedy decoding of a policy still learning by policy gradient jumps
    around its best episodes; polishing hands the best one found to greedy decoding.

    Two options for a noisy (measured) `eval_oracle`, both comparing assignments side by side in
    that many rounds (`side_by_side`): `choose_devices` > 0 first sets `policy.active` to the
    device count 1..ndev whose greedy assignment costs least, and the stage then trains on that
    many devices; `confirm` > 0 ends a stage that keeps its best checkpoint by measuring that
    checkpoint against the stage's starting weights, and keeps the start unless the checkpoint
    is cheaper. A checkpoint chosen as the cheapest of many noisy measurements is usually less
    good than it measured (the winner's curse); the side-by-side rematch does not favour it.
    """
    cfg = config or TrainConfig()
    if options:
        try:
            cfg = replace(cfg, **options)
        except TypeError:
            valid = sorted(TrainConfig.__dataclass_fields__)
            bad = sorted(set(options) - set(valid))
            raise CompileError(
                f"train has no option(s) {bad}; options: {', '.join(valid)}"
            ) from None
    return Trainer(policy, graphs, stage, cfg).run()
