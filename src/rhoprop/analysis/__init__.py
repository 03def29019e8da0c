"""Analyses of targets and results: target similarity and grouping, multi-task studies, metrics,
plots."""

from typing import Any

_LAZY = {
    "DatasheetSummary": "rhoprop.analysis.datasheet",
    "write_datasheet": "rhoprop.analysis.datasheet_report",
}


def __getattr__(name: str) -> Any:
    """Import public functions on first use, so that importing one analysis module stays light."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rhoprop.analysis' has no attribute {name!r}")


__all__ = ["DatasheetSummary", "write_datasheet"]
