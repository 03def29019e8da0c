"""What a dataset build reports: one entry per skipped input or note, the run's counts, exit code.

``report.csv`` / ``report.json`` in the store list every entry with its reason; ``rhoprop dataset
build`` exits with :data:`EXIT_SKIPPED` when anything was skipped.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd

from rhoprop.settings import atomic_write_text

#: Exit code of ``rhoprop dataset build`` when something was skipped (0 when nothing was).
EXIT_SKIPPED = 3
#: Report categories that mean an input (file, label row or cell) was skipped.
SKIP_CATEGORIES = (
    "bad_file",
    "duplicate_file",
    "file_without_id",
    "duplicate_id",
    "blank_id",
    "id_without_file",
    "bad_value",
)
#: Report categories that are notes only (nothing the user gave was dropped from a sample).
NOTE_CATEGORIES = ("ignored_column",)


@dataclasses.dataclass(frozen=True)
class ReportEntry:
    """One line of a build report: what was skipped (or noted), which id/file, and why."""

    category: str
    id: str
    path: str
    detail: str
    line: int | None = None
    column: str = ""

    @property
    def skipped(self) -> bool:
        """True when an input was dropped (False for notes such as an ignored column)."""
        return self.category in SKIP_CATEGORIES


@dataclasses.dataclass
class BuildReport:
    """The outcome of one :func:`~rhoprop.data.build.build_dataset` run.

    Attributes:
        out: the store directory.
        n_files: density files found in the input folder.
        n_added: samples added by this run.
        n_already: files whose id was already in the store (not read again).
        n_total: samples in the store after the run.
        entries: what was skipped or noted, with reasons (also in ``report.csv``).
        elapsed_s: wall time of the run.
    """

    out: Path
    n_files: int
    n_added: int
    n_already: int
    n_total: int
    entries: list[ReportEntry]
    elapsed_s: float

    @property
    def skipped(self) -> list[ReportEntry]:
        """Entries that dropped an input."""
        return [e for e in self.entries if e.skipped]

    @property
    def clean(self) -> bool:
        """True when nothing was skipped."""
        return not self.skipped

    @property
    def exit_code(self) -> int:
        """0 when nothing was skipped, :data:`EXIT_SKIPPED` otherwise."""
        return 0 if self.clean else EXIT_SKIPPED

    def counts(self) -> dict[str, int]:
        """Number of entries per category."""
        out: dict[str, int] = {}
        for e in self.entries:
            out[e.category] = out.get(e.category, 0) + 1
        return out

    def summary(self) -> str:
        """One line: what was built, what was skipped, where the report is."""
        line = (
            f"{self.n_total} samples in {self.out} ({self.n_added} added, {self.n_already} "
            f"already there) from {self.n_files} files in {self.elapsed_s:.1f} s"
        )
        counts = self.counts()
        # A duplicated id has an entry for its label rows and one for its file: count it once.
        shown = {**counts}
        if "duplicate_id" in shown:
            shown["duplicate_id"] = len(
                {e.id for e in self.entries if e.category == "duplicate_id"}
            )
        words = {
            skipped: ", ".join(
                f"{n} {cat.replace('_', ' ')}"
                for cat, n in sorted(shown.items())
                if (cat in SKIP_CATEGORIES) == skipped
            )
            for skipped in (True, False)
        }
        line += f"; skipped: {words[True]}" if words[True] else "; nothing skipped"
        if words[False]:
            line += f"; notes: {words[False]}"
        if counts:
            line += f" (see {self.out / 'report.csv'})"
        return line


def write_report(out: Path, report: BuildReport) -> None:
    """Write ``report.csv`` and ``report.json`` of a build into the store."""
    frame = pd.DataFrame(
        [dataclasses.asdict(e) for e in report.entries],
        columns=["category", "id", "path", "detail", "line", "column"],
    )
    frame["line"] = frame["line"].astype("Int64")
    atomic_write_text(out / "report.csv", frame.to_csv(index=False, lineterminator="\n"))
    data = {
        "summary": report.summary(),
        "n_files": report.n_files,
        "n_added": report.n_added,
        "n_already": report.n_already,
        "n_total": report.n_total,
        "elapsed_s": round(report.elapsed_s, 3),
        "counts": report.counts(),
        "exit_code": report.exit_code,
        "entries": [dataclasses.asdict(e) for e in report.entries],
    }
    atomic_write_text(out / "report.json", json.dumps(data, indent=2) + "\n")
