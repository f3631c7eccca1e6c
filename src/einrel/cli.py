"""The `einrel` command line: `einrel demo` now; `plan`, `place`, `bench`, `calibrate` later."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    name="einrel",
    help="Tensor-relational ML: extended einsum graphs decomposed, placed, memory-planned, run.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """einrel command line."""
    # A callback keeps typer in multi-command mode, so `einrel demo` stays a subcommand.


@app.command()
def demo(
    size: Annotated[str, typer.Option(help="LLaMA block size: tiny, small, medium.")] = "small",
    dtype: Annotated[str, typer.Option(help="float64 or float32.")] = "float64",
    seed: Annotated[int, typer.Option(help="Seed for the random inputs.")] = 0,
) -> None:
    """Run one LLaMA-block training step and check it against torch.autograd."""
    from .demo import demo as run

    if size not in ("tiny", "small", "medium"):
        raise typer.BadParameter(f"size {size!r}: use tiny, small or medium", param_hint="--size")
    if dtype not in ("float32", "float64"):
        raise typer.BadParameter(f"dtype {dtype!r}: use float32 or float64", param_hint="--dtype")
    code = run(size, dtype, seed)
    if code:
        raise typer.Exit(code)
