"""Format detection and the single entry point :func:`read_density`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from rhoprop.errors import DensityFormatError
from rhoprop.io import _files, cube, vasp, xsf
from rhoprop.io.density import Density
from rhoprop.io.digest import check_digest, file_digest

FORMATS = ("chgcar", "cube", "xsf")
_ALIASES = {
    "chgcar": "chgcar", "chg": "chgcar", "aeccar": "chgcar", "parchg": "chgcar", "vasp": "chgcar",
    "cube": "cube", "cub": "cube", "gaussian": "cube",
    "xsf": "xsf",
}  # fmt: skip
_NOT_DENSITIES = ("LOCPOT", "ELFCAR")
_SUPPORTED = "VASP CHGCAR/CHG/AECCAR/PARCHG (VASP 4 or 5), Gaussian cube, XSF with a 3D data grid"


def _floats(line: str) -> list[float] | None:
    try:
        return [float(tok) for tok in line.split()]
    except ValueError:
        return None


def _ints(line: str) -> list[int] | None:
    try:
        return [int(tok) for tok in line.split()]
    except ValueError:
        return None


def _looks_like_vasp(lines: list[str]) -> bool:
    if len(lines) < 8:
        return False
    scale = _floats(lines[1])
    lattice = [_floats(line) for line in lines[2:5]]
    if scale is None or len(scale) not in (1, 3) or any(v is None or len(v) != 3 for v in lattice):
        return False
    counts = _ints(lines[5])
    if counts:
        return True
    tokens = lines[5].split()
    return bool(tokens) and all(tok[0].isalpha() for tok in tokens) and bool(_ints(lines[6]))


def _looks_like_cube(lines: list[str]) -> bool:
    if len(lines) < 7:
        return False
    head = lines[2].split()
    if len(head) not in (4, 5) or _ints(head[0]) is None or _floats(" ".join(head[1:4])) is None:
        return False
    for line in lines[3:6]:
        tokens = line.split()
        if len(tokens) != 4 or _ints(tokens[0]) is None or _floats(" ".join(tokens[1:])) is None:
            return False
    return True


def _looks_like_xsf(lines: list[str]) -> bool:
    content = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not content:
        return False
    first = content[0].split()[0].upper()
    return first in xsf.KEYWORDS or first.startswith(("BEGIN_BLOCK_", "BEGIN_INFO"))


def detect_format(head: bytes) -> str | None:
    """Name the format (``"chgcar"``, ``"cube"``, ``"xsf"``) from the first decompressed bytes, or
    None."""
    if b"\x00" in head[:4096]:
        return None
    lines = _files.text_lines(head[:16384])[:40]
    if _looks_like_vasp(lines):
        return "chgcar"
    if _looks_like_cube(lines):
        return "cube"
    if _looks_like_xsf(lines):
        return "xsf"
    return None


def normalize_format(fmt: str) -> str:
    """Map a format name or alias (``"CHGCAR"``, ``"parchg"``, ``"cube"``...) to one of
    :data:`FORMATS`."""
    key = str(fmt).strip().lower()
    if key not in _ALIASES:
        raise DensityFormatError(f"unknown density format {fmt!r}; use one of {sorted(_ALIASES)}")
    return _ALIASES[key]


def read_density(
    path: str | os.PathLike[str],
    species: Sequence[str] | str | None = None,
    fmt: str | None = None,
    digest: str | None = None,
) -> Density:
    """Read a charge density file (format from content unless ``fmt`` is given) into a
    :class:`Density`.

    ``species`` (element symbols, one per species group in file order, or ``"Li,Co,O"``) is needed
    only by VASP 4 files without a POSCAR/CONTCAR/OUTCAR/POTCAR beside them; files that name their
    elements keep their own (a dataset-wide ``--species`` does not override them).
    Gzip, bzip2 and xz compression are recognised from the content. With ``digest`` (``"xxh3_128"``
    or ``"sha256"``, see :mod:`rhoprop.io.digest`), ``meta[digest]`` holds that hash of the file's
    bytes as they are on disk (plain CHGCARs are hashed in the pass that counts their values).
    """
    if digest is not None:
        check_digest(digest)
    source = _files.open_source(path)
    user_species = vasp.normalize_species(species, str(source.path))
    if fmt is None:
        detected = detect_format(source.head)
        if detected is None:
            first = (
                _files.text_lines(source.head[:200])[:1]
                if b"\x00" not in source.head[:4096]
                else ["<binary>"]
            )
            raise DensityFormatError(
                f"cannot tell the format of {source.path} from its content (first line: "
                f"{(first or [''])[0].strip()[:60]!r}); supported are {_SUPPORTED}. If it is one "
                f"of these, pass fmt= (CLI: --format) with one of {list(FORMATS)}"
            )
        fmt = detected
        name = Path(source.path).name.upper()
        if fmt == "chgcar" and name.startswith(_NOT_DENSITIES):
            raise DensityFormatError(
                f"{source.path} is named like a VASP {name[:6]} (a potential or ELF, not a charge "
                "density); pass fmt='chgcar' to read it anyway"
            )
    else:
        fmt = normalize_format(fmt)
    if fmt == "chgcar":
        density = vasp.read_chgcar(source, user_species, digest)
    else:
        density = cube.read_cube(source) if fmt == "cube" else xsf.read_xsf(source)
    if digest is not None and digest not in density.meta:
        density.meta[digest] = file_digest(source.path, digest)
    return density
