"""What every `einrel` command shares, so that all of them behave alike.

Two kinds of failure, told apart by their exit status:

* usage errors (an option value out of range, an unknown placer, partitioner or size) are click's:
  the usage line, the message and status 2 (`typer.BadParameter`, raised by the helpers here);
* errors einrel raises on purpose while loading, compiling or running (`EinrelError`, or an
  `OSError` from a file named on the command line) print one line `error: <message>` on stderr
  and exit with status 1, without a traceback (`einrel_errors`).

`Command` and `Group` render flags as flags in help: `--json`, not `--json <bool>`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

from ..errors import EinrelError

if TYPE_CHECKING:
    from typer._click import Context, Parameter  # the click that typer vendors


@contextmanager
def einrel_errors() -> Iterator[None]:
    """Turn an error einrel reports on purpose into `error: <message>` on stderr and status 1."""
    try:
        yield
    except (EinrelError, OSError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None


def positive(n: int, hint: str) -> None:
    """A count that must be at least 1, as a usage error naming the option."""
    if n < 1:
        raise typer.BadParameter(f"{n}: need at least 1", param_hint=hint)


def check_choice(value: str, choices: Collection[str], hint: str) -> None:
    """A name that must be one of `choices`, as a usage error listing them."""
    if value not in choices:
        raise typer.BadParameter(f"{value!r}: use one of {', '.join(choices)}", param_hint=hint)


def check_partitioner(name: str) -> None:
    from ..decompose.partitioners import PARTITIONERS

    check_choice(name, PARTITIONERS, "--partitioner")


def check_placer(name: str, names: Collection[str] | None = None) -> None:
    """`names`: the placers this command accepts (default: every registered placer)."""
    from ..place.placers import PLACERS

    check_choice(name, PLACERS if names is None else names, "--placer")


def names_help(what: str, default: str, names: Collection[str]) -> str:
    """`Placer: critical-path (default), round-robin, ...`: every name said once."""
    rest = [n for n in names if n != default]
    return f"{what}: {', '.join([f'{default} (default)', *rest])}."


def _plain_flags(params: list[Parameter]) -> list[Parameter]:
    """A flag takes no value, so its help shows no type (typer would show `<bool>`)."""
    for p in params:
        if isinstance(p, TyperOption) and p.is_flag and p.metavar is None:
            p.metavar = ""
    return params


class Command(TyperCommand):
    """A command whose help shows flags without a value type."""

    def get_params(self, ctx: Context) -> list[Parameter]:
        return _plain_flags(super().get_params(ctx))


class Group(TyperGroup):
    """A command group whose help shows flags (`--help`, `--version`) without a value type."""

    def get_params(self, ctx: Context) -> list[Parameter]:
        return _plain_flags(super().get_params(ctx))
