"""The `einrel` command line: `demo`, `plan`, `calibrate`, and `place` (from `cli.place`).

Every command reports a bad option value as a usage error (status 2) and an error einrel raises
while loading, compiling or running as one `error: <message>` line (status 1); see `cli.common`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..decompose.partitioners import PARTITIONERS
from ..place.placers import PLACERS
from .common import (
    Command,
    Group,
    check_choice,
    check_partitioner,
    check_placer,
    einrel_errors,
    names_help,
    positive,
)
from .place import app as place_app

app = typer.Typer(
    name="einrel",
    cls=Group,
    help="Tensor-relational ML: extended einsum graphs decomposed, placed, memory-planned, run.",
    no_args_is_help=True,
    add_completion=False,
)
DTYPES = ("float32", "float64")
PARTITIONER_HELP = names_help("Partitioner", "eindecomp", PARTITIONERS)
PLACER_HELP = names_help("Placer", "critical-path", PLACERS)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"einrel {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """einrel command line."""
    # A callback keeps typer in multi-command mode, so `einrel demo` stays a subcommand.


@app.command(cls=Command)
def demo(
    size: Annotated[
        str,
        typer.Option(
            help="demo (medium width, batch 8, seq 512), or a llama_block size: tiny, small, "
            "medium."
        ),
    ] = "demo",
    devices: Annotated[
        int, typer.Option("--devices", "-n", help="Logical CPU devices: er.cpu(N).")
    ] = 4,
    partitioner: Annotated[str, typer.Option(help=PARTITIONER_HELP, show_default=False)] = (
        "eindecomp"
    ),
    placer: Annotated[str, typer.Option(help=PLACER_HELP, show_default=False)] = "critical-path",
    dtype: Annotated[
        str, typer.Option(help="float32 or float64 (default float32; float64 with --check-grads).")
    ] = "",
    runs: Annotated[int, typer.Option(help="Timed runs of einrel and of torch.")] = 3,
    trace: Annotated[
        str, typer.Option(help="Chrome trace JSON path (the Gantt PNG goes next to it).")
    ] = "out/demo_trace.json",
    check_grads: Annotated[
        bool,
        typer.Option(
            "--check-grads",
            help="Only the gradient check against torch.autograd (default size small, "
            "float64), through the reference interpreter and the compiled pipeline.",
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed for the random inputs.")] = 0,
    engine: Annotated[
        str,
        typer.Option(
            help="local: er.cpu(N) in this process; ray: er.ray(N), one pinned Ray actor per "
            "device on a local Ray cluster (or the cluster in RAY_ADDRESS)."
        ),
    ] = "local",
    workload: Annotated[
        str,
        typer.Option(
            help="llama: the LLaMA-block step; gcn (a graph convolutional network on a block "
            "model), mf (matrix factorisation with SimCE), kge (TransE knowledge-graph "
            "embeddings) or xc (extreme classification with label hashing): a relational "
            "workload, its gradients checked and under a minute of training."
        ),
    ] = "llama",
) -> None:
    """Decompose, place and run one LLaMA-block training step; check it, explain it, time it.
    With --workload gcn|mf|kge|xc: check and train a relational workload instead."""
    from ..demos.demo import SIZES, grad_check
    from ..demos.demo import demo as run
    from ..demos.relational import DEMOS, relational_demo

    check_choice(workload, ("llama", *DEMOS), "--workload")
    if workload != "llama":
        positive(devices, "--devices")
        with einrel_errors():
            out = Path(trace).parent if trace else Path("out")
            code = relational_demo(workload, devices=devices, seed=seed, out=out)
        if code:
            raise typer.Exit(code)
        return
    check_choice(size, SIZES, "--size")
    if dtype:
        check_choice(dtype, DTYPES, "--dtype")
    check_choice(engine, ("local", "ray"), "--engine")
    if not check_grads:
        positive(devices, "--devices")
        positive(runs, "--runs")
        check_partitioner(partitioner)
        check_placer(placer)
    with einrel_errors():
        if check_grads:
            code = grad_check("small" if size == "demo" else size, dtype or "float64", seed)
        else:
            common: dict[str, Any] = dict(
                devices=devices,
                partitioner=partitioner,
                placer=placer,
                dtype=dtype or "float32",
                runs=runs,
                seed=seed,
            )
            if engine == "ray":
                from ..demos.ray import ray_demo

                code = ray_demo(size, **common)
            else:
                code = run(size, trace=trace or None, **common)
    if code:
        raise typer.Exit(code)


@app.command(cls=Command)
def plan(
    workload: Annotated[
        str, typer.Argument(metavar="WORKLOAD", help="matmul_chain, ffnn_train or llama_block.")
    ],
    devices: Annotated[
        int, typer.Option("--devices", "-n", help="Logical CPU devices: er.cpu(N).")
    ] = 2,
    size: Annotated[str, typer.Option(help="The workload's size name.")] = "small",
    dtype: Annotated[str, typer.Option(help="float32 or float64 (default: the size's own).")] = "",
    mode: Annotated[
        str, typer.Option(help="llama_block only: inference or train (default inference).")
    ] = "",
    partitioner: Annotated[str, typer.Option(help=PARTITIONER_HELP, show_default=False)] = (
        "eindecomp"
    ),
    placer: Annotated[str, typer.Option(help=PLACER_HELP, show_default=False)] = "critical-path",
    cost_model: Annotated[
        str, typer.Option(help="'calibrated' (from `einrel calibrate`) or a saved model's path.")
    ] = "",
    dot: Annotated[
        str,
        typer.Option(
            metavar="PATH",
            help="Also write the plan's picture: DOT text for .dot, an image for .png/.svg/.pdf "
            "(needs graphviz).",
        ),
    ] = "",
    dot_level: Annotated[
        str, typer.Option(help="What --dot draws: tasks (per device) or nodes (partitions).")
    ] = "tasks",
) -> None:
    """Print the plan and explain() for a workload, without running it."""
    import einrel as er

    from ..workloads import SIZES, WORKLOADS, get_workload
    from ..workloads.llama import MODES

    check_choice(workload, sorted(WORKLOADS), "WORKLOAD")
    if size not in SIZES[workload]:
        raise typer.BadParameter(
            f"{size!r}: {workload} has sizes {', '.join(SIZES[workload])}", param_hint="--size"
        )
    if dtype:
        check_choice(dtype, DTYPES, "--dtype")
    if mode:
        if workload != "llama_block":
            raise typer.BadParameter(f"applies to llama_block, not {workload}", param_hint="--mode")
        check_choice(mode, MODES, "--mode")
    positive(devices, "--devices")
    check_partitioner(partitioner)
    check_placer(placer)
    check_choice(dot_level, ["tasks", "nodes"], "--dot-level")
    options = {"mode": mode} if mode else {}
    with einrel_errors():
        wl = get_workload(workload, size, dtype or None, **options)
        prog = er.compile(
            wl.outputs,
            devices=er.cpu(devices),
            partitioner=partitioner,
            placer=placer,
            cost_model=cost_model or None,
        )
    from ..explain import wide_console

    console = wide_console()
    console.print(f"[bold]{workload}[/] size {size}: {wl.flops / 1e9:.3g} GFLOP")
    console.print(str(prog.plan))
    prog.explain(console)
    if dot:
        with einrel_errors():
            written = prog.plan.render(dot, level=dot_level)
        console.print(f"plan picture written to {written}")
    prog.close()


@app.command(cls=Command)
def calibrate(
    devices: Annotated[
        int, typer.Option("--devices", "-n", help="Devices sharing this machine's cores.")
    ] = 2,
    out: Annotated[
        str,
        typer.Option(help="Cost model file to write (default: $EINREL_CALIBRATION or ~/.cache)."),
    ] = "",
) -> None:
    """Measure this machine's cost model (kernel throughputs, engine overhead) and save it."""
    from ..runtime import calibrate_and_save, default_path

    positive(devices, "--devices")
    with einrel_errors():
        cm = calibrate_and_save(out or None, devices)
    for k, v in cm.to_dict().items():
        typer.echo(f"{k:>24} {v:.4g}" if isinstance(v, float) else f"{k:>24} {v}")
    typer.echo(f"saved to {out or default_path()}")


app.add_typer(place_app, name="place")
