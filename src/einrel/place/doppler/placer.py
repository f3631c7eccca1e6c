"""The "doppler" placer: greedy decoding of a trained policy, found or trained for the graph.

`policy_for(graph, ndev, policy=None, cache=None)`: with a policy (a path or a DopplerPolicy)
it must have been trained for `ndev` devices; without one, the committed policy whose graph
fingerprint and device count match is used, then one in the `cache` folder when one is named,
and failing both a short policy is trained (stages I and II, with a progress bar on stderr;
makespans shown in the graph's units / 1e10, or in ms for graphs costed in seconds) and kept in
`cache` for the next call. `place.placers.Doppler` is the placer built on it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Mapping
from pathlib import Path

from ...errors import CompileError
from ..dag import PlaceGraph, check_ndev
from .features import fingerprint
from .policy import POLICY_DIR, DopplerPolicy, find_policy, load_policy, policy_filename
from .recipes import RECIPES
from .trainer import TrainLog, train

# Episodes of the policy trained on the fly for a graph without a stored one.
SHORT_EPISODES: Mapping[int, int] = {1: 200, 2: 300}
# Rough training seconds per episode and op (stages I and II), for the note before training.
SECONDS_PER_OP_EPISODE = 2.5e-4


def training_note(graph: PlaceGraph, ndev: int, cache: str | Path | None) -> str:
    """What `policy_for` says on stderr before it trains: a run that stalls for seconds without
    saying why looks hung, and the user can train a policy ahead instead."""
    episodes = sum(n for n in SHORT_EPISODES.values() if n > 0)
    seconds = max(1, round(SECONDS_PER_OP_EPISODE * graph.num_ops * episodes))
    name = graph.name or fingerprint(graph)
    spec = name if graph.origin is None else "NAME[:SIZE]"  # a graph file, or an einrel workload
    head = (
        f"note: no stored Doppler policy for graph {name!r} on {ndev} devices; training one "
        f"now ({episodes} episodes of stages I and II, roughly {seconds} s)"
    )
    train = f"einrel place train {spec} --devices {ndev} --stage"
    if cache is None:
        return (
            f"{head}, kept nowhere. To train one ahead: `{train} 1 --out P.pt`, then "
            f"`{train} 2 --init P.pt --out P.pt`, and place with policy=P.pt."
        )
    path = Path(cache) / policy_filename(graph.name, ndev, fingerprint(graph))
    return (
        f"{head}, kept in {path} for the next run. To train one ahead: `{train} 1`, then "
        f"`{train} 2 --init {path}`."
    )


def train_policy(
    graph: PlaceGraph,
    ndev: int,
    *,
    episodes: Mapping[int, int] | None = None,
    seed: int = 0,
    progress: bool = True,
    policy: DopplerPolicy | None = None,
) -> tuple[DopplerPolicy, list[TrainLog]]:
    """Stages I then II on `graph` (episodes per stage, default `SHORT_EPISODES`)."""
    check_ndev(ndev)
    plan = dict(episodes if episodes is not None else SHORT_EPISODES)
    pol = policy or DopplerPolicy(ndev, seed=seed)
    logs = []
    for stage in sorted(plan):
        if plan[stage] <= 0:
            continue
        opts = dict(RECIPES["einrel"][stage])
        logs.append(
            train(
                pol,
                graph,
                stage,
                episodes=plan[stage],
                seed=seed + stage,
                progress=progress,
                title=f"doppler stage {stage}",
                unit=1e10 if max(graph.comp, default=0.0) >= 1e6 else 1e-3,
                **opts,
            )
        )
    return pol, logs


def policy_for(
    graph: PlaceGraph,
    ndev: int,
    *,
    policy: str | Path | DopplerPolicy | None = None,
    seed: int = 0,
    progress: bool = True,
    train_missing: bool = True,
    cache: str | Path | None = None,
) -> DopplerPolicy:
    """The policy to place `graph` on `ndev` devices with (see the module docstring)."""
    check_ndev(ndev)
    if isinstance(policy, DopplerPolicy):
        policy.check_devices(ndev)
        return policy
    if policy is not None:
        return load_policy(policy, ndev)
    fp = fingerprint(graph)
    dirs = [POLICY_DIR] + ([Path(cache)] if cache is not None else [])
    found = find_policy(fp, ndev, dirs)
    if found is not None:
        return load_policy(found, ndev)
    if not train_missing:
        raise CompileError(
            f"no Doppler policy for graph {graph.name or fp!r} on {ndev} devices; "
            f"train one with `einrel place train`"
        )
    if progress:
        print(training_note(graph, ndev, cache), file=sys.stderr, flush=True)
    pol, _ = train_policy(graph, ndev, seed=seed, progress=progress)
    if cache is not None:
        with contextlib.suppress(OSError):  # an unwritable cache only costs a retrain next time
            pol.save(Path(cache) / policy_filename(graph.name, ndev, fp))
    return pol
