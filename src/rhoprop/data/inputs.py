"""Finding density files in an input folder and naming each with a sample id.

Which files are inputs: every file under ``INPUT_DIR`` (recursively; hidden files and folders
skipped) whose name, after an optional ``.gz``/``.bz2``/``.xz`` suffix is removed, contains one of
the VASP volumetric names ``CHGCAR``, ``AECCAR0``/``1``/``2``, ``PARCHG``, ``CHG`` as a token
(separated by ``.``, ``_`` or ``-``), or ends in ``.cube``, ``.cub`` or ``.xsf``. A ``glob`` pattern
replaces this rule (e.g. ``"*.dat"``).

The id of a file (the matching rule with ``labels.csv``):

1. drop a compression suffix (``.gz``, ``.bz2``, ``.xz``);
2. drop a format extension (``.cube``, ``.cub``, ``.xsf``), or else one VASP name token at the end
   or the start of the name with its separator: ``mp-149.CHGCAR`` -> ``mp-149``,
   ``CHGCAR_mp-149`` -> ``mp-149``, ``mp-149.cube`` -> ``mp-149``;
3. if nothing is left (the file is called just ``CHGCAR``, ``CHGCAR.gz``...), the id is the path of
   its folder relative to ``INPUT_DIR``: ``mp-149/CHGCAR`` -> ``mp-149``,
   ``batch1/mp-149/CHGCAR.gz`` -> ``batch1/mp-149``. Such a file directly in ``INPUT_DIR`` has
   no id.

Two files with the same id are both skipped (and reported): which one is meant is ambiguous.
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path

COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz")
FORMAT_EXTENSIONS = (".cube", ".cub", ".xsf")
VASP_NAMES = ("CHGCAR", "AECCAR0", "AECCAR1", "AECCAR2", "PARCHG", "CHG")
_TOKEN = "|".join(VASP_NAMES)
_HAS_TOKEN = re.compile(rf"(?:^|[._-])(?:{_TOKEN})(?:$|[._-])", re.IGNORECASE)
_TOKEN_SUFFIX = re.compile(rf"[._-](?:{_TOKEN})$", re.IGNORECASE)
_TOKEN_PREFIX = re.compile(rf"^(?:{_TOKEN})[._-]", re.IGNORECASE)
_TOKEN_ONLY = re.compile(rf"^(?:{_TOKEN})$", re.IGNORECASE)


def strip_compression(name: str) -> str:
    """``name`` without a trailing ``.gz``, ``.bz2`` or ``.xz``."""
    for suffix in COMPRESSION_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_density_name(name: str) -> bool:
    """True when a file name looks like a charge-density file (see the module docstring)."""
    base = strip_compression(name)
    return base.lower().endswith(FORMAT_EXTENSIONS) or bool(_HAS_TOKEN.search(base))


def id_from_path(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> str | None:
    """The sample id of a density file under ``root`` (None when the rule gives none)."""
    path, root = Path(path), Path(root)
    base = strip_compression(path.name)
    lowered = base.lower()
    stem: str | None = None
    for ext in FORMAT_EXTENSIONS:
        if lowered.endswith(ext):
            stem = base[: -len(ext)]
            break
    if stem is None:
        if _TOKEN_ONLY.match(base):
            stem = ""
        elif m := _TOKEN_SUFFIX.search(base):
            stem = base[: m.start()]
        elif m := _TOKEN_PREFIX.match(base):
            stem = base[m.end() :]
        else:
            stem = base
    if stem:
        return stem
    try:
        folder = path.parent.resolve().relative_to(root.resolve())
    except ValueError:
        return None
    rel = folder.as_posix()
    return None if rel in ("", ".") else rel


def find_density_files(
    root: str | os.PathLike[str], glob: str | None = None, exclude: Path | None = None
) -> list[Path]:
    """Density files under ``root`` in sorted order (hidden entries and ``exclude`` skipped)."""
    root = Path(root)
    excluded = exclude.resolve() if exclude is not None else None
    found: list[Path] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and (here / d).resolve() != excluded
        )
        for name in files:
            if name.startswith("."):
                continue
            ok = fnmatch.fnmatch(name, glob) if glob else is_density_name(name)
            if ok:
                found.append(here / name)
    return sorted(found)
