"""Progress for long compile steps: a rich status line on stderr that appears only once the
work has taken `delay_s` seconds, so that the common short compile prints nothing."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any


class StepProgress:
    """`with StepProgress("compiling") as p: p.step("placing 20000 tasks")`.

    Each `step` names what runs now. A timer shows the line (spinner, step, elapsed time) once
    `delay_s` has passed, even in the middle of a long step; it disappears when the work ends.
    When stderr is not a terminal, each step from then on is one plain line instead.
    `enabled=False` shows nothing.
    """

    def __init__(self, what: str, delay_s: float = 2.0, enabled: bool = True) -> None:
        self.what = what
        self.delay_s = delay_s
        self.enabled = enabled
        self.info = "starting"
        self._lock = threading.Lock()
        self._bar: Any = None
        self._task: Any = None
        self._timer: threading.Timer | None = None
        self._plain: Any = None
        self._closed = False

    def __enter__(self) -> StepProgress:
        if self.enabled:
            self._timer = threading.Timer(self.delay_s, self._show)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer.join()
        with self._lock:
            self._closed = True
            if self._bar is not None:
                self._bar.stop()
                self._bar = None

    def _show(self) -> None:
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        with self._lock:
            if self._closed:
                return
            console = Console(stderr=True)
            if not console.is_terminal:  # a log: plain lines, one per step from now on
                self._plain = console
                console.print(f"{self.what}: {self.info}", highlight=False)
                return
            self._bar = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.fields[what]}[/]: {task.description}"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.info, total=None, what=self.what)

    def step(self, info: str) -> None:
        """Name the step that runs now."""
        with self._lock:
            self.info = info
            if self._bar is not None:
                self._bar.update(self._task, description=info)
            elif self._plain is not None:
                self._plain.print(f"{self.what}: {info}", highlight=False)
