"""Built-in datasets shipped with rhoprop, by name: ``rhoprop.datasets.load("gpaw-v1")``.

A built-in dataset is a dataset store directory ``src/rhoprop/datasets/data/<name>/`` (a folder
covered by the package data, so it ships in the wheel), built with
``rhoprop dataset build ... --dtype float16 --out src/rhoprop/datasets/data/<name>``.
Everything that accepts a dataset path also accepts a built-in name (see :func:`resolve`).

Built-in datasets and the pretrained models are part of the installed package and read-only: the
commands that write refuse them (:func:`check_writable`) and say how to copy one
(:func:`copy_dataset`, ``rhoprop dataset copy gpaw-v1 my-gpaw-v1.rho``). Each built-in ships its
``default`` split, so training on one writes nothing into it. Maintainers who grow a built-in
dataset set the environment variable ``RHOPROP_WRITE_BUILTIN=1`` for those commands.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from rhoprop.data.store import DatasetError, DatasetStore

#: Folder holding the built-in stores, one sub-folder per dataset.
BUILTIN_ROOT = Path(__file__).resolve().parent / "data"
#: Folders of the installed package that no command writes to: built-in datasets, pretrained models.
READ_ONLY_ROOTS = (BUILTIN_ROOT, Path(__file__).resolve().parents[1] / "pretrained")
#: Set to ``1`` to let commands write into the built-in datasets (for rhoprop's maintainers).
WRITE_BUILTIN_VARIABLE = "RHOPROP_WRITE_BUILTIN"


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


def check_writable(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path, or a :class:`DatasetError` when it is (inside) a built-in dataset or the
    pretrained models, which ship read-only inside rhoprop; the message says how to copy one."""
    path = Path(path)
    if os.environ.get(WRITE_BUILTIN_VARIABLE) == "1":
        return path
    resolved = path.resolve()
    for root in READ_ONLY_ROOTS:
        if resolved != root and root not in resolved.parents:
            continue
        if root != BUILTIN_ROOT:
            raise DatasetError(
                f"{path} is inside rhoprop's pretrained models ({root}), which are read-only (they "
                "ship with rhoprop); write to a folder of your own instead"
            )
        inside = resolved.relative_to(root).parts
        name = inside[0] if inside and inside[0] in available() else None
        if name is None:
            what = f"inside rhoprop's built-in datasets ({root})"
        else:
            what = f"{'' if len(inside) == 1 else 'inside '}the built-in dataset {name}"
        example = name or (available() or ["gpaw-v1"])[0]
        raise DatasetError(
            f"{path} is {what}, which is read-only (it ships with rhoprop); copy the dataset "
            f"first, e.g. `rhoprop dataset copy {example} my-{example}.rho`, and use the copy"
        )
    return path


def copy_dataset(name_or_path: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Copy a store (a built-in name or a path) to the new folder ``dest``, complete or not at all.

    Lock files and unfinished shards are left out; the copy is assembled beside ``dest`` and renamed
    into place, so an interrupted copy leaves no half store at ``dest``.
    """
    source, dest = resolve(name_or_path), Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DatasetError(f"{dest} already exists; copy the dataset to a new folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.copy-{os.getpid()}.tmp")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        shutil.copytree(source, partial, ignore=shutil.ignore_patterns(".lock", ".shard-*.tmp"))
        if dest.exists():
            dest.rmdir()
        partial.rename(dest)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return dest


__all__ = [
    "BUILTIN_ROOT",
    "READ_ONLY_ROOTS",
    "available",
    "check_writable",
    "copy_dataset",
    "load",
    "resolve",
]
