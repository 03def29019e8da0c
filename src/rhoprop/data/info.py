"""A summary of a dataset store: counts, label coverage, settings, shards and size on disk."""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from rhoprop.data.split import available_splits, read_split
from rhoprop.data.store import DatasetStore

if TYPE_CHECKING:
    from rich.console import JustifyMethod


def _size_on_disk(store: DatasetStore) -> int:
    """Bytes of every file under the store directory."""
    return sum(p.stat().st_size for p in store.path.rglob("*") if p.is_file())


def dataset_info(store: DatasetStore) -> dict[str, Any]:
    """Everything ``rhoprop dataset info`` prints, as plain JSON types."""
    labels = store.labels
    n = len(store)
    targets = []
    for name, spec in store.targets.items():
        have = int(labels[name].notna().sum()) if name in labels else 0
        targets.append(
            {
                "name": name,
                "kind": spec.kind,
                "unit": spec.unit,
                "classes": list(spec.classes),
                "n": have,
                "percent": round(100.0 * have / n, 1) if n else 0.0,
            }
        )
    has_spin = store.column("has_spin") if n else np.zeros(0, bool)
    formats = Counter(str(v) for v in store.column("fmt")) if n else Counter()
    formulas = store.column("formula") if n else np.zeros(0)
    splits: dict[str, dict[str, int | str]] = {}
    for name in available_splits(store):
        try:
            splits[name] = {part: len(ids) for part, ids in read_split(store, name).items()}
        except ValueError as exc:
            splits[name] = {"error": str(exc)}
    report_path = store.path / "report.json"
    last_report = None
    if report_path.is_file():
        data = json.loads(report_path.read_text())
        last_report = {"counts": data.get("counts", {}), "exit_code": data.get("exit_code")}
    return {
        "path": str(store.path),
        "n_samples": n,
        "n_with_spin": int(np.sum(has_spin)),
        "n_formulas": len(set(formulas.tolist())),
        "formats": dict(formats),
        "targets": targets,
        "settings": store.store_settings.to_dict(),
        "n_shards": len(store.shards),
        "size_bytes": _size_on_disk(store),
        "splits": splits,
        "last_build": last_report,
    }


def _human_bytes(n: int) -> str:
    """``1234567`` -> ``"1.2 MB"``."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1000
    return f"{size:.1f} GB"


def print_info(info: dict[str, Any], console: Any, as_json: bool = False) -> None:
    """Print :func:`dataset_info`'s summary with rich (tables) or as JSON."""
    from rich.table import Table

    if as_json:
        console.print_json(json.dumps(info))
        return
    std = info["settings"]["standardize"]
    console.print(
        f"[bold]{info['path']}[/]: {info['n_samples']} samples ({info['n_with_spin']} with spin, "
        f"{info['n_formulas']} formulas), {info['n_shards']} shards, "
        f"{_human_bytes(info['size_bytes'])} on disk"
    )
    console.print(
        f"tensors: {std['n_channels'] if 'n_channels' in std else len(std['channels'])} x "
        f"{std['n']}^3 {info['settings']['dtype']}; mode {std['mode']}"
        + (
            f" edge {std['edge']} Å, {std.get('interpolation', 'cubic')} interpolation"
            if std["mode"] == "cube"
            else ""
        )
        + f"; channels {','.join(std['channels'])}; transform {std['transform']} "
        f"(scale {std['scale']}); standardize version {std['version']}; store format "
        f"{info['settings']['format_version']}"
    )
    if info["formats"]:
        console.print(
            "formats: " + ", ".join(f"{k} {v}" for k, v in sorted(info["formats"].items()))
        )
    table = Table(title="labels")
    for col in ("target", "kind", "unit", "labelled", "%", "classes"):
        justify: JustifyMethod = "right" if col in ("labelled", "%") else "left"
        table.add_column(col, justify=justify, no_wrap=col != "classes")
    for t in info["targets"]:
        classes = ", ".join(t["classes"])
        table.add_row(t["name"], t["kind"], t["unit"], str(t["n"]), f"{t['percent']:.1f}", classes)
    if info["targets"]:
        console.print(table)
    else:
        console.print("labels: none")
    for name, parts in info["splits"].items():
        console.print(f"split {name}: " + ", ".join(f"{k} {v}" for k, v in parts.items()))
    if info["last_build"] and info["last_build"]["counts"]:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(info["last_build"]["counts"].items()))
        console.print(f"last build reported: {counts} (see report.csv)")
