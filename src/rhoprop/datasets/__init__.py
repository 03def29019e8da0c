"""Built-in datasets shipped with rhoprop, by name: ``rhoprop.datasets.load("gpaw-v1")``.

A built-in dataset is a dataset store directory ``src/rhoprop/datasets/data/<name>/`` (a folder
covered by the package data, so it ships in the wheel), built with
``rhoprop dataset build ... --dtype float16 --out src/rhoprop/datasets/data/<name>``.
Everything that accepts a dataset path also accepts a built-in name (see :func:`resolve`).
"""

from __future__ import annotations

import os
from pathlib import Path

from rhoprop.data.store import DatasetError, DatasetStore

#: Folder holding the built-in stores, one sub-folder per dataset.
BUILTIN_ROOT = Path(__file__).resolve().parent / "data"


def available() -> list[str]:
    """Names of the built-in datasets installed with this rhoprop."""
    if not BUILTIN_ROOT.is_dir():
        return []
    return sorted(p.name for p in BUILTIN_ROOT.iterdir() if (p / "settings.json").is_file())


def resolve(name_or_path: str | os.PathLike[str]) -> Path:
    """The store directory for a path to a store or the name of a built-in dataset.

    An existing path wins over a built-in of the same name. Anything else raises
    :class:`~rhoprop.data.DatasetError` listing the built-in names.
    """
    path = Path(name_or_path)
    if path.exists():
        if not (path / "settings.json").is_file():
            raise DatasetError(
                f"{path} is not a rhoprop dataset (no settings.json in it); build one with "
                "`rhoprop dataset build`"
            )
        return path
    name = str(name_or_path)
    if name in available():
        return BUILTIN_ROOT / name
    names = available()
    raise DatasetError(
        f"no dataset {name!r}: it is neither an existing dataset folder nor a built-in dataset "
        f"(built-in: {', '.join(names) if names else 'none installed'})"
    )


def load(name: str | os.PathLike[str]) -> DatasetStore:
    """Open a built-in dataset (or a dataset path) as a :class:`~rhoprop.data.DatasetStore`."""
    return DatasetStore(resolve(name))


__all__ = ["BUILTIN_ROOT", "available", "load", "resolve"]
