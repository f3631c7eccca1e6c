"""The `einrel` command line: `demo`, `plan`, `calibrate`, and `place` (from `cli.place`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .place import app as place_app

app = typer.Typer(
    name="einrel",
    help="Tensor-relational ML: extended einsum graphs decomposed, placed, memory-planned, run.",
    no_args_is_help=True,
    add_completion=False,
)


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


def _check_names(partitioner: str, placer: str) -> None:
    """Unknown partitioner / placer names as usage errors, with the valid names."""
    from ..decompose.partitioners import PARTITIONERS
    from ..place.placers import PLACERS

    if partitioner not in PARTITIONERS:
        raise typer.BadParameter(
            f"{partitioner!r}: use one of {', '.join(PARTITIONERS)}", param_hint="--partitioner"
        )
    if placer not in PLACERS:
        raise typer.BadParameter(
            f"{placer!r}: use one of {', '.join(PLACERS)}", param_hint="--placer"
        )


def _positive(n: int, hint: str) -> None:
    if n < 1:
        raise typer.BadParameter(f"{n}: need at least 1", param_hint=hint)


@app.command()
def demo(
    size: Annotated[
        str,
        typer.Option(
            help="demo (medium width, batch 8, seq 512), or a llama_block size: tiny, small, "
            "medium."
        ),
    ] = "demo",
    devices: Annotated[int, typer.Option(help="Logical CPU devices: er.cpu(N).")] = 4,
    partitioner: Annotated[str, typer.Option(help="Partitioner name.")] = "eindecomp",
    placer: Annotated[str, typer.Option(help="Placer name.")] = "critical-path",
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
) -> None:
    """Decompose, place and run one LLaMA-block training step; check it, explain it, time it."""
    from ..demos.demo import SIZES, grad_check
    from ..demos.demo import demo as run

    if size not in SIZES:
        raise typer.BadParameter(f"size {size!r}: use {', '.join(SIZES)}", param_hint="--size")
    if dtype not in ("", "float32", "float64"):
        raise typer.BadParameter(f"dtype {dtype!r}: use float32 or float64", param_hint="--dtype")
    if engine not in ("local", "ray"):
        raise typer.BadParameter(f"engine {engine!r}: use local or ray", param_hint="--engine")
    if check_grads:
        code = grad_check("small" if size == "demo" else size, dtype or "float64", seed)
    else:
        _positive(devices, "--devices")
        _positive(runs, "--runs")
        _check_names(partitioner, placer)
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


@app.command()
def plan(
    workload: Annotated[str, typer.Argument(help="matmul_chain, ffnn_train or llama_block.")],
    devices: Annotated[int, typer.Option(help="Logical CPU devices: er.cpu(N).")] = 2,
    size: Annotated[str, typer.Option(help="The workload's size name.")] = "small",
    dtype: Annotated[str, typer.Option(help="float32 or float64 (default: the size's own).")] = "",
    mode: Annotated[str, typer.Option(help="llama_block only: inference or train.")] = "",
    partitioner: Annotated[str, typer.Option(help="Partitioner name.")] = "eindecomp",
    placer: Annotated[str, typer.Option(help="Placer name.")] = "critical-path",
    cost_model: Annotated[
        str, typer.Option(help="'calibrated' (from `einrel calibrate`) or a saved model's path.")
    ] = "",
) -> None:
    """Print the plan and explain() for a workload, without running it."""
    import einrel as er

    from ..errors import EinrelError
    from ..workloads import SIZES, WORKLOADS, get_workload

    if workload not in WORKLOADS:
        raise typer.BadParameter(
            f"{workload!r}: use one of {', '.join(sorted(WORKLOADS))}", param_hint="WORKLOAD"
        )
    if size not in SIZES[workload]:
        raise typer.BadParameter(
            f"{size!r}: {workload} has sizes {', '.join(SIZES[workload])}", param_hint="--size"
        )
    _positive(devices, "--devices")
    _check_names(partitioner, placer)
    options = {"mode": mode} if mode else {}
    try:
        wl = get_workload(workload, size, dtype or None, **options)
        prog = er.compile(
            wl.outputs,
            devices=er.cpu(devices),
            partitioner=partitioner,
            placer=placer,
            cost_model=cost_model or None,
        )
    except (EinrelError, TypeError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    from ..explain import wide_console

    console = wide_console()
    console.print(f"[bold]{workload}[/] size {size}: {wl.flops / 1e9:.3g} GFLOP")
    console.print(str(prog.plan))
    prog.explain(console)
    prog.close()


@app.command()
def calibrate(
    ndev: Annotated[int, typer.Option(help="Devices sharing this machine's cores.")] = 2,
    path: Annotated[
        str, typer.Option(help="Where to store it (default: $EINREL_CALIBRATION or ~/.cache).")
    ] = "",
) -> None:
    """Measure this machine's cost model (kernel throughputs, engine overhead) and save it."""
    from ..runtime import calibrate_and_save, default_path

    _positive(ndev, "--ndev")
    cm = calibrate_and_save(path or None, ndev)
    for k, v in cm.to_dict().items():
        typer.echo(f"{k:>24} {v:.4g}" if isinstance(v, float) else f"{k:>24} {v}")
    typer.echo(f"saved to {path or default_path()}")


app.add_typer(place_app, name="place")
