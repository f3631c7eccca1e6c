"""What the relational workloads' training loops share: a compiled step that keeps its
parameters and optimiser state (`Stepper`), a history of losses and held-out metrics per
epoch, a progress bar that shows them, the finished run (`Trained`) and a plot of the curves."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..devices import Devices, cpu
from ..errors import EinrelError
from ..frontend import optim
from ..frontend.tensor import Tensor


@dataclass
class History:
    """Per epoch: the training loss, the metrics measured on held-out data, the seconds the
    epoch's steps took (measuring excluded)."""

    title: str
    epochs: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    measured: list[int] = field(default_factory=list)  # the epochs the metrics were taken at
    metrics: dict[str, list[float]] = field(default_factory=dict)

    def record(self, epoch: int, loss: float, seconds: float, metrics: dict[str, float]) -> None:
        self.epochs.append(epoch)
        self.loss.append(loss)
        self.seconds.append(seconds)
        if metrics:
            self.measured.append(epoch)
        for k, v in metrics.items():
            self.metrics.setdefault(k, []).append(v)

    def last(self, metric: str) -> float:
        return self.metrics[metric][-1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "epochs": self.epochs,
            "loss": self.loss,
            "seconds": self.seconds,
            "measured": self.measured,
            "metrics": self.metrics,
        }


def _unheld(arrays: list[Any], k: int, fresh: Any) -> bool:
    """Whether only the list `arrays` holds its k-th array (no view of it, no snapshot a user
    took), so the next step may write over it; never an array the next step reads."""
    a = arrays[k]
    return (
        isinstance(a, np.ndarray)
        and a.base is None
        and a.flags.writeable
        and a.flags.c_contiguous
        and sys.getrefcount(a) <= 3  # the list, `a`, getrefcount's argument
        and not any(a is f for f in fresh)
    )


def make_optimizer(name: str, lr: Any, weight_decay: float = 0.0) -> Any:
    """`er.optim.Adam` or `er.optim.SGD` by name, at rate `lr` (a number or an `er.var`)."""
    table = {"adam": optim.Adam, "sgd": optim.SGD}
    if name not in table:
        raise EinrelError(f"unknown optimizer {name!r}; expected one of {sorted(table)}")
    return table[name](lr=lr, weight_decay=weight_decay)


class Stepper:
    """A training step compiled once and run every step: it keeps the parameters and the
    optimiser state between steps and feeds the rate `lr` and the step number.

    Under a memory budget the step's relations are relabeled per feed (`relabel=True`,
    unless `compile_options` say otherwise): sampled batches draw skewed keys (popular
    entities, busy users), and a budget plans each block's tuples for an even spread."""

    def __init__(
        self,
        outputs: Sequence[Tensor],
        update: optim.Update,
        params: Mapping[str, np.ndarray],
        lr: float,
        devices: Devices | None = None,
        compile_options: Mapping[str, Any] | None = None,
    ) -> None:
        from ..program import compile as compile_

        self.update, self.lr, self.done = update, lr, 0
        t0 = time.perf_counter()
        self.devices = devices if devices is not None else cpu(2)
        opts: dict[str, Any] = {"progress": False, "relabel": self.devices.memory is not None}
        opts.update(compile_options or {})
        self.program = compile_(list(outputs), devices=self.devices, **opts)
        self.compile_s = time.perf_counter() - t0
        self.feeds: dict[str, Any] = {**params, **update.init_state()}
        self.spare: list[Any] = []  # arrays replaced by the last step, to be written again

    def step(self, batch: Mapping[str, Any]) -> float:
        """One update on `batch` (the step's own feeds); returns the loss (the first output).
        The new parameters and state are written into the arrays they replaced the step
        before, when nothing else holds those: no fresh memory (and its page faults) for
        tables of 10^6 rows every step."""
        self.done += 1
        run = {**self.feeds, **batch, "lr": self.lr, **self.update.variables(self.done)}
        out = [None, *self.spare] if self.spare else None
        self.spare = []
        loss, *new = self.program(run, out=out)
        del run, out
        fresh = self.update.next_feeds(new)
        old = [self.feeds.get(name) for name in fresh]
        self.feeds.update(fresh)
        for k in range(len(old)):
            self.spare.append(old[k] if _unheld(old, k, fresh.values()) else None)
        return float(loss)

    def close(self) -> None:
        self.program.close()


def torch_grad(t: Any) -> np.ndarray:
    """A torch leaf's gradient as numpy, for the workloads' torch twins (zeros where nothing
    depended on the leaf, as einrel's gradients are)."""
    return np.zeros(tuple(t.shape)) if t.grad is None else t.grad.numpy()


def fit(
    title: str,
    epochs: int,
    epoch: Callable[[int], float],
    measure: Callable[[], dict[str, float]],
    every: int = 1,
    progress: bool = True,
) -> History:
    """Run `epoch(e)` (returns the epoch's mean loss) for e = 1..epochs, `measure()` the
    held-out metrics every `every` epochs and after the last, with a rich progress bar that
    shows the loss and the metrics."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    hist = History(title)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    columns.append(TextColumn("{task.fields[status]}"))
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task(title, total=epochs, status="")
        for e in range(1, epochs + 1):
            t0 = time.perf_counter()
            loss = epoch(e)
            took = time.perf_counter() - t0
            metrics = measure() if e % every == 0 or e == epochs else {}
            hist.record(e, loss, took, metrics)
            shown = " ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            bar.update(task, advance=1, status=f"loss {loss:.4f} {shown}")
    return hist


@dataclass
class Trained:
    """A finished training run: its history, final parameters and last held-out metrics."""

    history: History
    params: dict[str, np.ndarray]
    metrics: dict[str, float]
    compile_s: float
    peak_bytes: int  # the training step's last peak over its devices, summed


def run_trainer(trainer: Any, title: str, epochs: int, every: int, progress: bool) -> Trained:
    """`fit` a workload's trainer (its `epoch`, `measure`, `params`, `stepper`), then close it."""
    try:
        hist = fit(title, epochs, trainer.epoch, trainer.measure, every, progress)
        peak = sum(trainer.stepper.program.report.peak_bytes.values())
    finally:
        trainer.close()
    metrics = {k: v[-1] for k, v in hist.metrics.items()}
    return Trained(hist, trainer.params, metrics, trainer.stepper.compile_s, peak)


def plot_curves(histories: list[History], path: str | Path, title: str = "") -> Path:
    """The loss and every metric per epoch, one panel each, one line per history."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = ["loss", *dict.fromkeys(k for h in histories for k in h.metrics)]
    fig = Figure(figsize=(4.2 * len(names), 3.4))
    FigureCanvasAgg(fig)
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1)
        for h in histories:
            if name == "loss":
                ax.plot(h.epochs, h.loss, label=h.title)
                continue
            ax.plot(h.measured, h.metrics.get(name, []), marker="o", ms=2, label=h.title)
        ax.set_xlabel("epoch")
        ax.set_title(name, loc="left", fontsize="medium")
        if i == 0:
            ax.legend(fontsize="small")
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out
