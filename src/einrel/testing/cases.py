"""Random einrel programs with gradients, written as Python source.

A `Case` is a few lines of einrel code (`t3 = er.softmax(t1 @ x0, axis=-1)`), a scalar loss
over its unconsumed tensors and the gradients of that loss. The lines are the case: running them
with `er` bound to einrel builds the graph, running them with `er` bound to `torchref.TorchRef`
computes the same thing with torch autograd, and printing them gives a program anyone can run
to reproduce a failure. Cases are drawn through a `Choices` source, so hypothesis can shrink them.

How a case is drawn lives in `builder` (the state and the bounds on values) and `draws` (the
ops).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from .builder import Builder, Choices
from .draws import OPS


@dataclass(frozen=True)
class Case:
    """One random program: `lines` of einrel code over inputs and run-time variables.

    `DT` in the lines is the dtype (a variable of the program), `loss` is built by the last
    line, `outputs` are extra forward results, `wrt` the tensors the gradients are taken for.
    """

    dtype: str
    inputs: tuple[tuple[str, tuple[int, ...]], ...]
    lines: tuple[str, ...]
    outputs: tuple[str, ...]
    wrt: tuple[str, ...]
    variables: tuple[str, ...]
    seed: int

    def body(self) -> str:
        """The lines that build `outs` (loss, forward outputs, gradients) with `er` and `DT`."""
        ins = [f'{n} = er.input("{n}", {s!r}, DT)' for n, s in self.inputs]
        outs = ", ".join(self.outputs)
        tail = f"outs = [loss{', ' if outs else ''}{outs}, *er.grad(loss, [{', '.join(self.wrt)}])]"
        return "\n".join([*ins, *self.lines, tail])

    def used_inputs(self) -> list[tuple[str, tuple[int, ...]]]:
        """The inputs some line reads (the others are declared and only differentiated for)."""
        words = set(re.findall(r"\w+", "\n".join(self.lines)))
        return [(n, s) for n, s in self.inputs if n in words]

    def feeds_source(self) -> str:
        """The lines that draw `feeds` (inputs uniform in [-1, 1], variables in [0.5, 1.5])."""
        lines = [f"rng = np.random.default_rng({self.seed})", "feeds = {"]
        for n, s in self.used_inputs():
            lines.append(f'    "{n}": rng.uniform(-1, 1, {s!r}).astype(DT),')
        for v in self.variables:
            lines.append(f'    "{v}": float(rng.uniform(0.5, 1.5)),')
        lines.append("}")
        return "\n".join(lines)

    def build(self, er: Any, dtype: str | None = None) -> tuple[list[Any], dict[str, Any]]:
        """Run the lines with `er` as the einrel namespace; returns `outs` and all names."""
        env: dict[str, Any] = {"er": er, "DT": dtype or self.dtype}
        exec(self.body(), env)
        return env["outs"], env

    def feeds(self, dtype: str | None = None) -> dict[str, Any]:
        env: dict[str, Any] = {"np": np, "DT": dtype or self.dtype}
        exec(self.feeds_source(), env)
        return env["feeds"]

    def program(self, compile_source: str = "prog = er.compile(outs)", run: str = "") -> str:
        """A standalone program that builds the case, compiles it with `compile_source`, runs
        it and prints each output's error; `run` replaces everything after the feeds."""
        run = run or "\n".join(
            [
                "want = er.evaluate(outs, feeds)",
                compile_source,
                "got = prog.run(feeds)",
                "for k, (w, g) in enumerate(zip(want, got)):",
                '    print(k, w.shape, "max abs error", np.max(np.abs(np.asarray(w) - g)))',
            ]
        )
        return "\n".join(
            [
                "import numpy as np",
                "import einrel as er",
                "",
                f'DT = "{self.dtype}"',
                self.body(),
                self.feeds_source(),
                run,
            ]
        )


# --- ops: each draws its operands and emits one or a few lines -------------------------------


def draw_case(ch: Choices, max_ops: int = 8) -> Case:
    """A random case: 1-3 inputs, up to `max_ops` ops, a loss over the unconsumed tensors."""
    dtype = ch.pick(["float64", "float32"])
    b = Builder(ch, dtype)
    for _ in range(ch.integer(1, 3)):
        b.new_input(b.shape())
    table = [op for op, w in OPS for _ in range(w)]
    for _ in range(ch.integer(1, max_ops)):
        ch.pick(table)(b)
    # Tensors no later line reads are the loss's terms, so that every line reaches the loss.
    read = [set(re.findall(r"\w+", line.partition("=")[2])) for line in b.lines]
    sinks = [t for t in b.pool if not t.input and not any(t.name in words for words in read)] or [
        b.pool[-1]
    ]
    terms = []
    for t in sinks:
        t = b.bounded(t, 1e3) if math.isfinite(t.lo) else t
        r = b.new_input(t.shape, prefix="r")
        terms.append(f"er.sum({t.name} * {r.name})")
    b.lines.append("loss = " + " + ".join(terms))
    inner = [t.name for t in b.pool if not t.input]
    outputs = tuple(ch.sample(inner, ch.integer(0, min(2, len(inner)))))
    wrt = [t.name for t in b.pool if t.input]
    if inner and ch.coin(0.2):
        wrt.append(ch.pick(inner))
    return Case(
        dtype,
        tuple(b.inputs),
        tuple(b.lines),
        outputs,
        tuple(wrt),
        tuple(b.variables),
        ch.integer(0, 2**31 - 1),
    )
