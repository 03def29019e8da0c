"""rhoprop.progress: a bar on a terminal, one line per step elsewhere, nothing when disabled."""

from __future__ import annotations

import io

from rich.console import Console

from rhoprop.progress import progress


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=100), out


def test_off_a_terminal_each_step_is_one_log_line_with_count_and_total() -> None:
    console, out = _console(terminal=False)
    with progress("trainings", 3, console=console) as steps:
        for k in range(3):
            steps.advance(description=f"trainings (seed {k})")
    lines = out.getvalue().splitlines()
    assert [line.rsplit(" (", 1)[0] for line in lines] == [
        "trainings (seed 0) 1/3",
        "trainings (seed 1) 2/3",
        "trainings (seed 2) 3/3",
    ]
    assert all(line.endswith(" s)") for line in lines)


def test_log_interval_thins_the_lines_but_the_last_step_is_always_logged() -> None:
    console, out = _console(terminal=False)
    with progress("pairs", console=console, log_interval=3600.0) as steps:
        for done in range(1, 46):
            steps.update(done, 45)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("pairs 1/45") and lines[1].startswith("pairs 45/45")


def test_a_disabled_progress_prints_nothing_and_still_counts() -> None:
    console, out = _console(terminal=False)
    with progress("verify", console=console, enabled=False) as steps:
        steps.advance(2)
    assert steps.completed == 2 and out.getvalue() == ""


def test_on_a_terminal_a_bar_with_the_count_is_drawn() -> None:
    console, out = _console(terminal=True)
    with progress("building", 4, console=console, transient=False, refresh_thread=False) as steps:
        steps.advance(4)
    assert "building" in out.getvalue() and "4/4" in out.getvalue()
