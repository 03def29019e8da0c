"""Markdown tables for the reports of the analyses (datasheet, multi-task study, benchmark)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_cell(value: object) -> str:
    """A table cell: ``str(value)`` with pipes escaped and newlines flattened."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(
    header: Sequence[object], rows: Iterable[Sequence[object]], align: str = ""
) -> str:
    """A GitHub-flavoured markdown table (lines joined by newlines, no trailing newline).

    ``align`` holds one letter per column, ``l`` (left) or ``r`` (right, for numbers); columns
    beyond it are left-aligned. A row with another number of cells than ``header`` raises
    ValueError.
    """
    if set(align) - {"l", "r"}:
        raise ValueError(f"align must hold only 'l' and 'r' (one per column), got {align!r}")
    width = len(header)
    rule = ["---:" if a == "r" else "---" for a in align[:width].ljust(width, "l")]
    lines = ["| " + " | ".join(markdown_cell(h) for h in header) + " |", "|" + "|".join(rule) + "|"]
    for k, row in enumerate(rows):
        cells = [markdown_cell(v) for v in row]
        if len(cells) != width:
            raise ValueError(f"row {k} has {len(cells)} cells, the header {width}: {cells}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
