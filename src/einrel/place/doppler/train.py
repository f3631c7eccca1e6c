"""Doppler's three training stages (PAPERS §4.6–4.7).

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
rate is constant, as the released runs effectively had it.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ...errors import CompileError
from ..dag import PlaceGraph
from ..simulate import make_simulator
from .env import Episode, rollout
from .features import GraphFeatures, graph_features
from .model import GraphTensors, PlcNumpy
from .policy import DopplerPolicy, one_thread

Oracle = Callable[[list[int]], float]


@dataclass(frozen=True)
class Stage:
    """One stage's defaults (PAPERS §4.7)."""

    number: int
    episodes: int
    lr: float
    eps_sel: float
    eps_plc: float
    w_pg: float
    w_il: float
    w_ent: float


STAGES: dict[int, Stage] = {
    1: Stage(1, 2000, 1e-3, 1.0, 1.0, 0.0, 1.0, 1e-3),
    2: Stage(2, 2000, 1e-4, 0.2, 0.2, 1.0, 0.0, 0.0),
    3: Stage(3, 4000, 1e-4, 0.2, 0.2, 1.0, 0.0, 0.0),
}
# Training options per stage beyond the paper's: "paper" is PAPERS §4.7 as is; "einrel" is what
# the committed policies were trained with (see `einrel.place.doppler.retrain`, which runs stage I
# for 800 episodes and stage II until 890 s per graph, both stages together, are spent; PLC with
# the sixth, co-parent device feature of `env`). Stage I: batches of 4
# random rollouts share one encoder pass, and the greedy checkpoint of lowest makespan is kept.
# Stage II: batches of 8 ε-greedy episodes (ε = 0.02) scored against the batch's own mean
# (normalised advantage, undiscounted), a 10× higher learning rate than the paper's, gradient
# norms clipped to 1, self-imitation of the cheapest episode the stage has produced so far
# (weight 20), and the last 10% of the time spent polishing (imitating that episode alone until
# greedy decoding reproduces its cost). The paper's stage II alone barely moves the greedy
# policy in the few thousand episodes that fit in 15 minutes on one CPU core. The networks read
# 8 random node features (`NetConfig.node_noise`), without which self-imitation cannot single
# out one of several identical ops. Stage III keeps the earlier options, and adds two that
# compare measured costs side by side: it first picks how many of the devices the policy uses
# (`choose_devices`, 5 rounds), and it keeps its best checkpoint only if that checkpoint wins a
# 7-round rematch against the stage's start (`confirm`).
RECIPES: dict[str, dict[int, dict[str, Any]]] = {
    "paper": {1: {}, 2: {}, 3: {}},
    "einrel": {
        1: {"batch": 4, "eval_every": 20, "keep_best": True},
        2: {
            "lr": 1e-3,
            "eps": 0.02,
            "batch": 8,
            "advantage": "batch",
            "gamma": 1.0,
            "clip": 1.0,
            "self_imitation": 20.0,
            "polish": 0.1,
            "eval_every": 2,
        },
        3: {
            "lr": 1e-3,
            "eps": 0.1,
            "batch": 2,
            "self_imitation": 2.0,
            "eval_every": 2,
            "choose_devices": 5,
            "confirm": 7,
        },
    },
}
# The recipe before self-imitation weight 20 and polishing (used with `NetConfig(node_noise=0)`):
# ffnn's committed policy was trained with it, and reaches the lower bound the current one misses.
RECIPES["einrel-1"] = {
    1: RECIPES["einrel"][1],
    2: {**RECIPES["einrel"][2], "self_imitation": 2.0, "polish": 0.0},
    3: RECIPES["einrel"][3],
}


def get_recipe(name: str) -> dict[int, dict[str, Any]]:
    """The training options per stage of recipe `name`; CompileError listing them if unknown."""
    if name not in RECIPES:
        raise CompileError(f"unknown recipe {name!r}; recipes: {', '.join(RECIPES)}")
    return RECIPES[name]


GAMMA = 0.99
BASELINE_DECAY = 0.95


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


def episode_losses(
    policy: DopplerPolicy,
    gt: GraphTensors,
    scores: torch.Tensor,
    h: torch.Tensor,
    c: torch.Tensor,
    ep: Episode,
    st: Stage,
    returns: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(SEL loss, PLC loss, IL loss per step) of one recorded episode, every step in one batch."""
    gf = gt.features
    steps = len(ep.order)
    legal_np = ep.legal_mask()
    legal = torch.from_numpy(legal_np)
    order = torch.from_numpy(ep.order)
    devs = torch.from_numpy(ep.devices)
    rows = torch.arange(steps)

    logits = scores.unsqueeze(0).expand(steps, -1).masked_fill(~legal, -math.inf)
    # zero (not -inf) outside the legal set, so no 0 · inf reaches a gradient
    logp_sel = F.log_softmax(logits, dim=1).masked_fill(~legal, 0.0)
    plc_logits = policy.plc(h, c, order, torch.from_numpy(ep.dyn), devs)
    logp_plc = F.log_softmax(plc_logits, dim=1)

    sel_loss = scores.new_zeros(())
    plc_loss = scores.new_zeros(())
    il_value = 0.0
    if st.w_pg and returns is not None:
        sel_loss = sel_loss - st.w_pg * (logp_sel[rows, order] * returns).sum()
        plc_loss = plc_loss - st.w_pg * (logp_plc[rows, devs] * returns).sum()
    if st.w_il:
        star_sel = torch.from_numpy(ep.sel_star(legal_np, gf.blevel))
        star_plc = torch.from_numpy(ep.plc_star())
        il_sel = -torch.where(star_sel, logp_sel, 0.0).sum()
        il_plc = -torch.where(star_plc, logp_plc, 0.0).sum()
        sel_loss = sel_loss + st.w_il * il_sel
        plc_loss = plc_loss + st.w_il * il_plc
        il_value = float(il_sel.detach() + il_plc.detach()) / max(steps, 1)
    if st.w_ent:
        ent_sel = (legal * logp_sel.exp() * logp_sel).sum()
        ent_plc = (logp_plc.exp() * logp_plc).sum()
        sel_loss = sel_loss + st.w_ent * ent_sel
        plc_loss = plc_loss + st.w_ent * ent_plc
    return sel_loss, plc_loss, il_value


@one_thread
def il_loss(policy: DopplerPolicy, graph: PlaceGraph, episodes: int = 8, seed: int = 0) -> float:
    """The imitation loss per step, averaged over `episodes` fixed random rollouts (a yardstick)."""
    gf = graph_features(graph)
    gt = GraphTensors(gf)
    rng = random.Random(seed)
    st = STAGES[1]
    total = 0.0
    with torch.no_grad():
        scores, h, c = policy.forward(gt)
        for _ in range(episodes):
            ep = rollout(gf, policy.active, None, None, 1.0, 1.0, rng)
            total += episode_losses(policy, gt, scores, h, c, ep, st, None)[2]
    return total / episodes


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


@one_thread
def train(
    policy: DopplerPolicy,
    graphs: PlaceGraph | GraphFeatures | Sequence[PlaceGraph | GraphFeatures],
    stage: int,
    *,
    episodes: int | None = None,
    lr: float | None = None,
    eps: float | None = None,
    seed: int = 0,
    oracle: Oracle | Sequence[Oracle | None] | None = None,
    eval_oracle: Oracle | Sequence[Oracle | None] | None = None,
    eval_every: int = 10,
    time_limit: float | None = None,
    progress: bool = False,
    unit: float = 1e10,
    title: str | None = None,
    keep_best: bool | None = None,
    batch: int = 1,
    sample: bool = False,
    self_imitation: float = 0.0,
    advantage: str = "running",
    gamma: float = GAMMA,
    entropy: float | None = None,
    clip: float | None = None,
    polish: float = 0.0,
    choose_devices: int = 0,
    confirm: int = 0,
) -> TrainLog:
    """Train `policy` for one stage, in place; returns the stage's log.

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
    if stage not in STAGES:
        raise CompileError(f"unknown Doppler training stage {stage!r}; stages are 1, 2, 3")
    st = STAGES[stage]
    if eps is not None:
        st = replace(st, eps_sel=eps, eps_plc=eps)
    total = st.episodes if episodes is None else episodes
    if total < 0:
        raise CompileError(f"need a non-negative episode count, got {total}")
    if batch < 1:
        raise CompileError(f"need a batch of at least one episode, got {batch}")
    if advantage not in ("running", "batch"):
        raise CompileError(f"advantage is 'running' or 'batch', got {advantage!r}")
    if entropy is not None:
        st = replace(st, w_ent=entropy)
    if not 0 <= polish < 1:
        raise CompileError(f"need 0 <= polish < 1, got {polish}")
    if eval_every < 1:
        raise CompileError(f"need eval_every >= 1, got {eval_every}")
    if choose_devices < 0 or confirm < 0:
        raise CompileError(f"need rounds >= 0: choose_devices={choose_devices}, confirm={confirm}")
    many = graphs if isinstance(graphs, Sequence) else [graphs]
    if not many:
        raise CompileError("train needs at least one graph")
    gfs = [g if isinstance(g, GraphFeatures) else graph_features(g) for g in many]
    if stage == 3 and (oracle is None or (not callable(oracle) and None in oracle)):
        raise CompileError("stage 3 needs a measured cost oracle (see einrel.place.doppler.real)")
    oracles = _per_graph(oracle, gfs)
    eval_oracles = _per_graph(eval_oracle, gfs) if eval_oracle is not None else oracles
    gts = [GraphTensors(gf) for gf in gfs]
    rate = st.lr if lr is None else lr
    opts = [
        torch.optim.Adam(net.parameters(), lr=rate)
        for net in (policy.sel, policy.plc, policy.encoder)
    ]
    rng = random.Random(seed)
    log = TrainLog(stage)
    t0 = time.perf_counter()
    single = len(gfs) == 1
    bar = _Progress(progress, title or f"stage {stage}", total, unit if single else 1.0)
    best_ep: list[tuple[float, Episode] | None] = [None] * len(gfs)

    def remember(i: int, cost: float, ep: Episode) -> None:
        held = best_ep[i]
        if held is None or cost < held[0]:
            best_ep[i] = (cost, ep)
            if single:
                log.cheapest.append((log.episodes, cost))

    def greedy_costs() -> list[float]:
        costs = []
        for i, (gf, gt, o) in enumerate(zip(gfs, gts, eval_oracles)):
            ep = policy.decode(gf, tensors=gt)
            costs.append(float(o(ep.assignment)))
            remember(i, costs[-1], ep)
        return costs

    if choose_devices:
        log.device_ratios = choose_active(policy, gfs, gts, eval_oracles, choose_devices)
        log.active = policy.active
    first = greedy_costs()
    scale = [1.0] if single else [max(c, 1e-300) for c in first]

    def metric(costs: list[float]) -> float:
        return sum(c / s for c, s in zip(costs, scale)) / len(costs)

    best_state = start_state = policy.state()
    log.start_greedy = log.best = metric(first)
    log.greedy.append((0, log.best))
    log.best_episode = 0
    baselines: list[float | None] = [None] * len(gfs)
    last_greedy = log.best
    sil = replace(st, w_pg=1.0, w_il=0.0, w_ent=0.0)
    k = 0
    update = 0
    explore_until = math.inf if time_limit is None else time_limit * (1 - polish)

    def step(loss: torch.Tensor) -> None:
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            for net in (policy.sel, policy.plc, policy.encoder):
                torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        for opt in opts:
            opt.step()

    def checkpoint() -> None:
        nonlocal last_greedy, best_state
        last_greedy = metric(greedy_costs())
        log.greedy.append((k, last_greedy))
        if last_greedy < log.best:
            log.best, log.best_episode = last_greedy, k
            best_state = policy.state()

    def imitate_best(
        i: int, loss: torch.Tensor, weight: float, heads: tuple[torch.Tensor, ...]
    ) -> torch.Tensor:
        held = best_ep[i]
        if held is None:
            return loss
        ones = torch.full((len(held[1].order),), weight, dtype=torch.float32)
        sel_loss, plc_loss, _ = episode_losses(policy, gts[i], *heads, held[1], sil, ones)
        return loss + sel_loss + plc_loss

    try:
        while k < total:
            if time.perf_counter() - t0 > explore_until:
                break
            i = update % len(gfs)
            update += 1
            gf, gt = gfs[i], gts[i]
            scores, h, c = policy.forward(gt)
            plc_np = PlcNumpy(policy.plc, h, c) if st.eps_plc < 1 else None
            sel_np = scores.detach().numpy() if st.eps_sel < 1 else None
            loss = scores.new_zeros(())
            eps_costs = []
            for _ in range(min(batch, total - k)):
                ep = rollout(gf, policy.active, sel_np, plc_np, st.eps_sel, st.eps_plc, rng, sample)
                eps_costs.append((ep, float(oracles[i](ep.assignment))))
                remember(i, eps_costs[-1][1], ep)
            rewards: list[float | None] = [None] * len(eps_costs)
            if st.w_pg and advantage == "batch":
                arr = np.array([cst for _, cst in eps_costs])
                std = float(arr.std())
                rewards = [(float(arr.mean()) - x) / std if std > 0 else 0.0 for x in arr]
            elif st.w_pg:
                for j, (_, cost) in enumerate(eps_costs):
                    base = baselines[i]
                    if base is None:
                        base = cost
                    rewards[j] = (base - cost) / base if base > 0 else 0.0
                    baselines[i] = BASELINE_DECAY * base + (1 - BASELINE_DECAY) * cost
            share = 1.0 / len(eps_costs) if advantage == "batch" else 1.0
            cost = math.nan
            for (ep, cost), reward in zip(eps_costs, rewards):
                returns = None
                if reward is not None:
                    returns = _discounted(reward, len(ep.order), gamma)
                sel_loss, plc_loss, il_value = episode_losses(
                    policy, gt, scores, h, c, ep, st, returns
                )
                loss = loss + share * (sel_loss + plc_loss)
                k += 1
                log.costs.append(cost)
                log.il_loss.append(il_value)
            if self_imitation:
                loss = imitate_best(i, loss, self_imitation, (scores, h, c))
            step(loss)
            log.episodes = k
            if update % eval_every == 0 or k >= total:
                checkpoint()
            bar.update(k, cost / scale[i], last_greedy, log.best)
        spent = time.perf_counter() - t0
        polish_end = spent / (1 - polish) if time_limit is None else time_limit
        while polish and time.perf_counter() - t0 < polish_end:
            cheapest = metric([held[0] if held else math.inf for held in best_ep])
            if log.best <= cheapest:
                break
            loss = torch.zeros(())
            for i, gt in enumerate(gts):
                loss = imitate_best(i, loss, 1.0, policy.forward(gt))
            step(loss)
            log.polish_updates += 1
            checkpoint()
            bar.update(k, math.nan, last_greedy, log.best)
    finally:
        bar.close()
    if keep_best if keep_best is not None else stage != 1:
        if confirm and best_state is not start_state:
            states = [start_state, best_state]
            log.confirm_ratio = rematch(policy, states, gfs, gts, eval_oracles, confirm)[1]
            if log.confirm_ratio > 1.0:
                best_state = start_state
        policy.load_state(best_state)
    log.seconds = time.perf_counter() - t0
    entry = log.summary()
    entry["graphs"] = [gf.graph.name for gf in gfs]
    entry["options"] = {
        "lr": rate,
        "eps_sel": st.eps_sel,
        "eps_plc": st.eps_plc,
        "batch": batch,
        "sample": sample,
        "self_imitation": self_imitation,
        "advantage": advantage,
        "gamma": gamma,
        "entropy": st.w_ent,
        "clip": clip,
        "polish": polish,
        "choose_devices": choose_devices,
        "confirm": confirm,
        "seed": seed,
    }
    policy.history.append(entry)
    for gf in gfs:
        policy.add_graph(gf.fingerprint, gf.graph.name)
    return log


def side_by_side(
    oracles: Sequence[Oracle], candidates: Sequence[Sequence[list[int]]], rounds: int
) -> list[float]:
    """The cost of each candidate (an assignment per graph) relative to candidate 0, as the
    median over `rounds` rounds in which every candidate is costed once, back to back, in an
    order that rotates each round; the mean over graphs. On a noisy machine the ratio of two
    neighbouring runs varies far less than either run alone: slow drifts cancel."""
    n = len(candidates)
    ratios: list[list[list[float]]] = [[[] for _ in oracles] for _ in range(n)]
    for r in range(rounds):
        for i, oracle in enumerate(oracles):
            costs = [0.0] * n
            for j in [(r + x) % n for x in range(n)]:
                costs[j] = float(oracle(candidates[j][i]))
            for j in range(n):
                ratios[j][i].append(costs[j] / costs[0] if costs[0] > 0 else 1.0)
    return [sum(statistics.median(x) for x in per) / len(per) for per in ratios]


def choose_active(
    policy: DopplerPolicy,
    gfs: Sequence[GraphFeatures],
    gts: Sequence[GraphTensors],
    oracles: Sequence[Oracle],
    rounds: int,
) -> dict[int, float]:
    """Set `policy.active` to the device count whose greedy assignments cost least side by side
    (all devices on a tie); returns each count's cost relative to all devices."""
    counts = [policy.ndev, *range(1, policy.ndev)]
    candidates = []
    for k in counts:
        policy.active = k
        candidates.append(_greedy(policy, gfs, gts))
    ratios = dict(zip(counts, side_by_side(oracles, candidates, rounds)))
    policy.active = min(counts, key=ratios.__getitem__)
    return dict(sorted(ratios.items()))


def rematch(
    policy: DopplerPolicy,
    states: Sequence[dict[str, Any]],
    gfs: Sequence[GraphFeatures],
    gts: Sequence[GraphTensors],
    oracles: Sequence[Oracle],
    rounds: int,
) -> list[float]:
    """`side_by_side` of the greedy assignments of several weight states (leaves the last)."""
    candidates = []
    for state in states:
        policy.load_state(state)
        candidates.append(_greedy(policy, gfs, gts))
    if all(c == candidates[0] for c in candidates):
        return [1.0] * len(candidates)
    return side_by_side(oracles, candidates, rounds)


def _greedy(
    policy: DopplerPolicy, gfs: Sequence[GraphFeatures], gts: Sequence[GraphTensors]
) -> list[list[int]]:
    return [policy.decode(gf, tensors=gt).assignment for gf, gt in zip(gfs, gts)]


def _per_graph(
    oracle: Oracle | Sequence[Oracle | None] | None, gfs: list[GraphFeatures]
) -> list[Oracle]:
    """One cost oracle per graph; None (or a None entry) is the simulator."""
    if oracle is None or callable(oracle):
        many: list[Oracle | None] = [oracle] * len(gfs)
    else:
        many = list(oracle)
        if len(many) != len(gfs):
            raise CompileError(f"{len(many)} oracles for {len(gfs)} graphs")
    return [o if o is not None else make_simulator(gf.graph) for o, gf in zip(many, gfs)]


def _discounted(reward: float, steps: int, gamma: float = GAMMA) -> torch.Tensor:
    """R_t = γ^(T−1−t) · reward for a reward paid after the last of `steps` steps."""
    return torch.from_numpy((reward * gamma ** np.arange(steps - 1, -1, -1)).astype(np.float32))
