"""The shared markdown-table helper of the analysis reports."""

from __future__ import annotations

import pytest

from rhoprop.analysis.markdown import markdown_table


def test_markdown_table_aligns_columns_and_escapes_pipes_and_newlines() -> None:
    text = markdown_table(["name", "n"], [["a|b", 3], ["two\nlines", 10]], "lr")
    assert text.splitlines() == [
        "| name | n |",
        "|---|---:|",
        "| a\\|b | 3 |",
        "| two lines | 10 |",
    ]


def test_markdown_table_refuses_rows_of_another_width_and_unknown_alignments() -> None:
    with pytest.raises(ValueError, match="row 1 has 1 cells, the header 2"):
        markdown_table(["a", "b"], [[1, 2], [3]])
    with pytest.raises(ValueError, match="align must hold only 'l' and 'r'"):
        markdown_table(["a"], [[1]], "c")
