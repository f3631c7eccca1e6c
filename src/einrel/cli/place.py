"""`einrel place`: place a Doppler-format graph file with any placer, and train Doppler policies.

    einrel place GRAPH --devices N [--placer NAME] [--policy P] [--seed S] [--budget SEC] [--json]
    einrel place train GRAPH... --stage 1|2|3 --devices N [--episodes K] [--out P] [--init P]

`einrel place GRAPH ...` is short for `einrel place graph GRAPH ...`. As in every einrel command
(`cli.common`), a bad option value (an unknown placer, --policy with a placer that takes none) is
a usage error with status 2, and an error einrel raises on purpose (a malformed graph file, a
policy trained for another device count) prints one line on stderr and exits with status 1,
without a traceback.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..place.placers import PLACERS
from .common import Command, Group, check_choice, check_placer, einrel_errors, names_help, positive

if TYPE_CHECKING:
    from typer._click import Context  # the click that typer vendors and its commands run on

UNIT = 1e10  # Doppler's tools report makespans in cost units / 1e10
# The placers that place a bare operation DAG (eindecomp-greedy needs an einrel task graph).
GRAPH_PLACERS = tuple(name for name in PLACERS if name != "eindecomp-greedy")


class _GraphIsDefault(Group):
    """Treat `einrel place GRAPH ...` as `einrel place graph GRAPH ...`."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["graph", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    name="place",
    cls=_GraphIsDefault,
    help="Place a Doppler-format graph on N devices (`einrel place GRAPH --devices N`), or "
    "train Doppler policies (`einrel place train`).",
    no_args_is_help=True,
    add_completion=False,
)


@app.command("graph", cls=Command)
def place_graph(
    graph: Annotated[
        Path,
        typer.Argument(
            metavar="GRAPH",
            help="A graph file in Doppler's format, or a released graph's name (ffnn_192nodes).",
        ),
    ],
    devices: Annotated[int, typer.Option("--devices", "-n", help="Number of devices.")],
    placer: Annotated[
        str,
        typer.Option(help=names_help("Placer", "critical-path", GRAPH_PLACERS), show_default=False),
    ] = "critical-path",
    policy: Annotated[
        Path | None,
        typer.Option(help="Doppler policy file (default: the stored one for this graph)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of seeded placers.")] = 0,
    budget: Annotated[
        float, typer.Option(help="Seconds of simulator search for search and doppler+search.")
    ] = 10.0,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
) -> None:
    """Place GRAPH and report the simulated makespan (cost units / 1e10) and the assignment."""
    from ..place.dag import lower_bound, single_device_makespan
    from ..place.doppler.policy import cache_dir
    from ..place.graphfile import load_graph_file
    from ..place.listsched import critical_path
    from ..place.placers import get_placer
    from ..place.simulate import simulate

    positive(devices, "--devices")
    check_placer(placer, GRAPH_PLACERS)
    options: dict[str, Any] = {}
    if policy is not None:
        if placer not in ("doppler", "doppler+search"):
            raise typer.BadParameter(
                f"applies to doppler and doppler+search, not {placer!r}", param_hint="--policy"
            )
        options["policy"] = policy
    if placer in ("search", "doppler+search"):
        options["budget_s"] = budget
    if placer in ("doppler", "doppler+search"):
        options["cache"] = cache_dir()  # the CLI keeps the policies it trains
    with einrel_errors():
        g = load_graph_file(graph)
        fn = get_placer(placer, **options)
        t0 = time.perf_counter()
        assignment = [int(d) for d in fn(g, devices, seed)]
        seconds = time.perf_counter() - t0
        span = simulate(g, assignment, devices).makespan
    if json_out:
        typer.echo(
            json.dumps(
                {
                    "graph": str(graph),
                    "devices": devices,
                    "placer": placer,
                    "makespan": span / UNIT,
                    "assignment": assignment,
                }
            )
        )
        return
    from rich.console import Console
    from rich.table import Table

    cp = simulate(g, critical_path(g, devices), devices).makespan
    table = Table(title=f"{graph.name}: {g.num_ops} ops on {devices} devices")
    table.add_column("")
    table.add_column("makespan / 1e10", justify="right")
    table.add_column("vs critical path", justify="right")
    rows = [(f"[bold]{placer}[/] ({seconds:.2f} s)", span)]
    if placer != "critical-path":  # the baseline of the last column, unless it was placed here
        rows.append(("critical-path", cp))
    rows += [
        ("1 device", single_device_makespan(g)),
        ("lower bound", lower_bound(g, devices)),
    ]
    for label, value in rows:
        table.add_row(label, f"{value / UNIT:.1f}", f"{value / cp:.3f}" if cp else "-")
    console = Console()
    console.print(table)
    per_dev = [assignment.count(d) for d in range(devices)]
    console.print(f"ops per device: {per_dev}")


@app.command("train", cls=Command)
def train_policy(
    graphs: Annotated[
        list[str],
        typer.Argument(
            metavar="GRAPH",
            help="Doppler graph files, or einrel workloads as NAME[:SIZE] "
            "(e.g. llama_block:medium: the training step decomposed for --devices).",
        ),
    ],
    devices: Annotated[int, typer.Option("--devices", "-n", help="Number of devices.")],
    stage: Annotated[
        int,
        typer.Option(
            help="1 imitation of critical path; 2 policy gradient on the simulator; "
            "3 policy gradient on the local engine's wall time (workloads only)."
        ),
    ] = 1,
    episodes: Annotated[
        int | None, typer.Option(help="Episodes (default: the stage's, 2000/2000/4000).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Policy file to write (default: the user cache, where the doppler "
            "placer looks for it)."
        ),
    ] = None,
    init: Annotated[
        Path | None, typer.Option(help="Start from this policy (stages II and III warm-start).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the networks and the rollouts.")] = 0,
    recipe: Annotated[
        str,
        typer.Option(
            help="Training options: 'einrel' (those of the committed policies) or 'paper' "
            "(the Doppler paper's recipe as is); the options below override it."
        ),
    ] = "einrel",
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    eps: Annotated[float | None, typer.Option(help="ε of the ε-greedy rollouts.")] = None,
    batch: Annotated[int | None, typer.Option(help="Episodes per update.")] = None,
    self_imitation: Annotated[
        float | None, typer.Option(help="Weight of the self-imitation term (0: off).")
    ] = None,
    sample: Annotated[
        bool | None,
        typer.Option(
            help="Sample non-random actions from the softmax, or take the argmax "
            "(default: the recipe's)."
        ),
    ] = None,
    eval_every: Annotated[
        int | None, typer.Option(help="Updates between greedy checkpoints.")
    ] = None,
    polish: Annotated[
        float | None,
        typer.Option(help="Share of the stage's time spent imitating its cheapest episode."),
    ] = None,
    choose_devices: Annotated[
        int | None,
        typer.Option(help="Rounds of side-by-side runs picking how many devices to use (0: all)."),
    ] = None,
    confirm: Annotated[
        int | None,
        typer.Option(help="Rounds of the best checkpoint's rematch against the start (0: off)."),
    ] = None,
    time_limit: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    repeats: Annotated[int, typer.Option(help="Stage 3: runs per measured cost (median).")] = 1,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Train a Doppler policy on one or more graphs for one stage and save it."""
    positive(devices, "--devices")
    check_choice(str(stage), ("1", "2", "3"), "--stage")
    from ..place.doppler.recipes import RECIPES

    check_choice(recipe, RECIPES, "--recipe")
    with einrel_errors():
        given = {
            "lr": lr,
            "eps": eps,
            "batch": batch,
            "self_imitation": self_imitation,
            "sample": sample,
            "eval_every": eval_every,
            "polish": polish,
            "choose_devices": choose_devices,
            "confirm": confirm,
        }
        options = {**RECIPES[recipe].get(stage, {})}
        options.update({k: v for k, v in given.items() if v is not None})
        path, log = _train(
            graphs,
            devices,
            stage,
            episodes,
            out,
            init,
            seed,
            options,
            time_limit,
            repeats,
            not quiet,
        )
    unit, name = (UNIT, "/ 1e10") if log["unit"] == UNIT else (1e-3, "ms")
    typer.echo(
        f"stage {stage}: {log['episodes']} episodes in {log['seconds']:.1f} s "
        f"({log['seconds_per_episode'] * 1e3:.0f} ms/episode); greedy makespan "
        f"{log['start_greedy'] / unit:.2f} -> {log['best_greedy'] / unit:.2f} {name}; "
        f"saved {path}"
    )
    if log["active_devices"] is not None:
        typer.echo(
            f"places on {log['active_devices']} of {devices} devices (measured cost relative to "
            f"all {devices}: {log['device_ratios']})"
        )


def _train(
    specs: list[str],
    ndev: int,
    stage: int,
    episodes: int | None,
    out: Path | None,
    init: Path | None,
    seed: int,
    options: dict[str, Any],
    time_limit: float | None,
    repeats: int,
    progress: bool,
) -> tuple[Path, dict[str, Any]]:
    from ..place.doppler.policy import DopplerPolicy, cache_dir, load_policy, policy_filename
    from ..place.doppler.trainer import train
    from ..place.graphfile import load_graph_file
    from ..workloads.targets import is_workload_spec, workload_target

    graphs = []
    oracles = []
    workloads = 0
    for spec in specs:
        if not Path(spec).exists() and is_workload_spec(spec):
            target = workload_target(spec, ndev, seed=seed)
            graphs.append(target.graph)
            oracles.append((lambda a, t=target: t.run(a, repeats)) if stage == 3 else None)
            workloads += 1
        else:
            if stage == 3:
                raise typer.BadParameter(
                    f"{spec}: stage 3 measures einrel's engine, so it needs an einrel workload "
                    f"(NAME[:SIZE], e.g. llama_block:medium), not a graph file",
                    param_hint="GRAPH",
                )
            graphs.append(load_graph_file(spec))
            oracles.append(None)
    if workloads and workloads != len(graphs):
        raise typer.BadParameter(
            "graph files or einrel workloads, not both at once", param_hint="GRAPH"
        )
    policy = load_policy(init, ndev) if init is not None else DopplerPolicy(ndev, seed=seed)
    unit = UNIT if not workloads else 1.0
    log = train(
        policy,
        graphs,
        stage,
        episodes=episodes,
        seed=seed,
        oracle=oracles if stage == 3 else None,
        time_limit=time_limit,
        progress=progress,
        unit=UNIT if not workloads else 1e-3,
        **options,
    )
    if out is None:
        g = graphs[0]
        out = cache_dir() / policy_filename(g.name, ndev, policy.fingerprint or "")
    path = policy.save(out)
    summary = log.summary()
    summary["unit"] = unit
    return path, summary


def main() -> None:
    app(prog_name="einrel place")


if __name__ == "__main__":
    main()
