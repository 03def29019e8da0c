"""Progress of long work: a rich bar on a terminal, one plain line per step elsewhere (logs, CI).

``with progress("trainings", total=12) as steps: ... steps.advance()`` draws a bar with counts,
elapsed and remaining time when the console is a terminal; otherwise (output redirected to a file,
a CI log, a test runner) it writes one line per step, ``trainings 3/12 (41 s)``, so that a log
shows how far the work got.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Steps:
    """What a :func:`progress` block reports to: its count, total and description."""

    def __init__(
        self,
        description: str,
        total: int | None,
        console: Console | None,
        bar: Progress | None,
        log_interval: float,
    ) -> None:
        self.description = description
        self.total = total
        self.completed = 0
        self._console = console
        self._bar = bar
        self._task: TaskID | None = (
            bar.add_task(description, total=total) if bar is not None else None
        )
        self._log_interval = log_interval
        self._start = time.monotonic()
        self._logged: tuple[int, str] | None = None
        self._last_log = float("-inf")

    def update(
        self,
        completed: int | None = None,
        total: int | None = None,
        description: str | None = None,
    ) -> None:
        """Set how many steps are done, the total (None: unknown) and the description."""
        if completed is not None:
            self.completed = completed
        if total is not None:
            self.total = total
        if description is not None:
            self.description = description
        if self._bar is not None and self._task is not None:
            self._bar.update(
                self._task, completed=self.completed, total=self.total, description=self.description
            )
            self._bar.refresh()
        elif self._console is not None:
            self._log()

    def advance(self, steps: int = 1, description: str | None = None) -> None:
        """Count ``steps`` more steps done (and change the description when given)."""
        self.update(completed=self.completed + steps, description=description)

    def _log(self, final: bool = False) -> None:
        """One line for a step not logged yet (at most one per ``log_interval`` seconds, and the
        last one)."""
        state = (self.completed, self.description)
        now = time.monotonic()
        skip = state == self._logged or (not final and now - self._last_log < self._log_interval)
        if self._console is None or skip:
            return
        count = f"{self.completed}/{self.total}" if self.total is not None else f"{self.completed}"
        self._console.print(
            f"{self.description} {count} ({now - self._start:.0f} s)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        self._logged, self._last_log = state, now


@contextlib.contextmanager
def progress(
    description: str,
    total: int | None = None,
    *,
    console: Console | None = None,
    enabled: bool = True,
    transient: bool = True,
    refresh_thread: bool = True,
    log_interval: float = 0.0,
) -> Iterator[Steps]:
    """Report the progress of the work inside the block (see the module docstring).

    Args:
        description: what is counted (``"trainings"``); :meth:`Steps.update` may change it.
        total: number of steps, None while unknown.
        console: where to show it (default: standard error).
        enabled: False shows nothing (the block still gets a :class:`Steps`).
        transient: remove the bar from the terminal when the block ends.
        refresh_thread: redraw the bar from a background thread (smooth elapsed time); False
            redraws only at each update, so that no thread exists when the work forks processes.
        log_interval: off a terminal, seconds between two lines (the last step is always logged).
    """
    console = console or Console(stderr=True)
    if not enabled:
        yield Steps(description, total, None, None, log_interval)
        return
    if not console.is_terminal:
        steps = Steps(description, total, console, None, log_interval)
        try:
            yield steps
        finally:
            if steps.completed:
                steps._log(final=True)
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(
        *columns, console=console, transient=transient, auto_refresh=refresh_thread
    ) as bar:
        yield Steps(description, total, console, bar, log_interval)
