"""VASP volumetric files (CHGCAR, CHG, AECCAR0/1/2, PARCHG): read through pymatgen, write through
pymatgen.

Reading hands the file to :meth:`pymatgen.io.vasp.outputs.VolumetricData.parse_file` (pymatgen's
grid parser); this module only adds what pymatgen does not do:

* VASP 4 headers have no element line and pymatgen then silently names the atoms H, He, Li...
  Here the species come from the caller or from a POSCAR/CONTCAR/OUTCAR/POTCAR beside the file
  and replace those placeholders (same atom groups, in order); without species
  :class:`SpeciesRequiredError` is raised. Nothing is guessed.
* Compression is recognised from content; compressed files are decompressed once into a temporary
  file (pymatgen's parser seeks backwards, which restarts a gzip stream: ~7x slower).
* Grids are checked against their values: missing values (truncation), values that are not numbers,
  NaN/inf and surplus values (pymatgen skips those silently) raise :class:`DensityFormatError` with
  the file and line.

VASP stores ρ(r)·V_cell at each grid point (so the grid average is the electron count): blocks are
divided by the cell volume to give electrons/Å³ (magnetization blocks likewise, μB/Å³).
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
from pymatgen.core import Element, Structure
from pymatgen.io.vasp.inputs import Poscar
from pymatgen.io.vasp.outputs import Chgcar, VolumetricData

from rhoprop.errors import DensityFormatError, SpeciesRequiredError
from rhoprop.io import _files
from rhoprop.io.density import Density, check_cell, check_positions

NEIGHBOUR_FILES = ("POSCAR", "CONTCAR", "OUTCAR", "POTCAR")
_COMPRESSED_SUFFIXES = ("", ".gz", ".bz2", ".xz")
_OUTCAR_MAX_LINES = 50000
_KINDS = ("AECCAR0", "AECCAR1", "AECCAR2", "CHGCAR", "PARCHG", "CHG")


@dataclasses.dataclass
class VaspHeader:
    """The POSCAR part of a VASP volumetric file, as raw lines plus what the reader needs from
    it."""

    lines: list[bytes]
    symbols: list[str] | None
    counts: list[int]
    symbols_index: int

    @property
    def n_atoms(self) -> int:
        """Number of atoms in the cell."""
        return sum(self.counts)

    @property
    def is_vasp4(self) -> bool:
        """True when the header has no element-symbol line."""
        return self.symbols is None


def vasp_kind(path: str | os.PathLike[str]) -> str:
    """The VASP file kind from its name (``CHGCAR``, ``CHG``, ``AECCAR0``..., ``PARCHG``) or
    ``unknown``."""
    name = Path(path).name.upper()
    return next((kind for kind in _KINDS if kind in name), "unknown")


def _is_int(token: bytes | str) -> bool:
    try:
        int(token)
    except ValueError:
        return False
    return True


def _clean_symbol(token: str) -> str:
    """``Li_sv`` -> ``Li``; ``Co/7a8b9c`` (VASP 6 hash) -> ``Co``."""
    return token.split("/")[0].split("_")[0].split(".")[0]


def read_header(fh: IO[bytes], where: str, poscar: bool = False) -> VaspHeader:
    """Read the POSCAR block of a VASP volumetric file (up to the first blank line) from ``fh``.

    With ``poscar=True`` the block may also end at the end of the file (a POSCAR/CONTCAR).
    """
    lines: list[bytes] = []
    while True:
        raw = fh.readline()
        if not raw and poscar:
            break
        if not raw:
            raise DensityFormatError(
                f"{where}: the file ends at line {len(lines)} inside the VASP header (no blank "
                "line and grid follow the coordinates); the file is truncated or not a VASP "
                "volumetric file"
            )
        if raw.strip() or not lines:
            lines.append(raw if raw.endswith(b"\n") else raw + b"\n")
        else:
            break
    if len(lines) < 7:
        raise DensityFormatError(
            f"{where}: the VASP header is incomplete ({len(lines)} line(s) before the first blank "
            "line, expected a title, scale, three lattice vectors, atom counts and coordinates)"
        )
    tokens = [line.split() for line in lines]
    for index in range(1, 5):
        try:
            [float(tok) for tok in tokens[index]]
        except ValueError:
            raise DensityFormatError(
                f"{where}: line {index + 1} of the VASP header should hold numbers, found "
                f"{lines[index].decode('latin-1').strip()!r}"
            ) from None
    if tokens[5] and all(_is_int(tok) for tok in tokens[5]):
        return VaspHeader(lines, None, [int(tok) for tok in tokens[5]], 5)
    symbols: list[str] = []
    index = 5
    while index < len(tokens) and tokens[index] and not _is_int(tokens[index][0]):
        symbols.extend(_clean_symbol(tok.decode("latin-1")) for tok in tokens[index])
        index += 1
    counts: list[int] = []
    while index < len(tokens) and tokens[index] and all(_is_int(tok) for tok in tokens[index]):
        counts.extend(int(tok) for tok in tokens[index])
        index += 1
    if not counts or len(counts) != len(symbols):
        raise DensityFormatError(
            f"{where}: the VASP header lists element(s) {symbols} but atom counts {counts} (line "
            "6-7); they must have the same length"
        )
    return VaspHeader(lines, symbols, counts, 5)


def normalize_species(species: Sequence[str] | str | None, where: str) -> list[str] | None:
    """Validate user species: a sequence of element symbols or a string like ``"Li,Co,O"``."""
    if species is None:
        return None
    items = re.split(r"[,\s]+", species.strip()) if isinstance(species, str) else list(species)
    items = [str(item).strip() for item in items if str(item).strip()]
    bad = [item for item in items if not Element.is_valid_symbol(item)]
    if not items or bad:
        raise DensityFormatError(
            f"species for {where}: {bad or items!r} are not element symbols; pass symbols such as "
            "['Li', 'Co', 'O'] (CLI: --species Li,Co,O), one per species group, in file order"
        )
    return items


def _titel_symbols(path: Path) -> tuple[list[str], list[int] | None]:
    """Species (from TITEL or VRHFIN lines) and ``ions per type`` of an OUTCAR or POTCAR."""
    titel: list[str] = []
    vrhfin: list[str] = []
    counts: list[int] | None = None
    source = _files.open_source(path)
    with source.open() as fh, _files.decompression_errors(source):
        for number, raw in enumerate(fh):
            line = raw.decode("latin-1")
            if "TITEL" in line and "=" in line:
                parts = line.split("=", 1)[1].split()
                if parts:
                    titel.append(_clean_symbol(parts[1] if len(parts) > 1 else parts[0]))
            elif "VRHFIN" in line and "=" in line:
                vrhfin.append(line.split("=", 1)[1].split(":")[0].strip())
            elif "ions per type" in line:
                counts = [int(tok) for tok in line.split("=", 1)[1].split()]
                break
            if number > _OUTCAR_MAX_LINES:
                break
    return (titel or vrhfin), counts


def species_from_neighbours(
    path: Path, counts: list[int]
) -> tuple[list[str] | None, str, list[str]]:
    """Look for species beside ``path`` in POSCAR, CONTCAR, OUTCAR or POTCAR (plain or compressed).

    Returns the species (or None), the file they came from, and notes on files that were found but
    did not fit (different atom counts, no element line).
    """
    notes: list[str] = []
    their_counts: list[int] | None
    for name in NEIGHBOUR_FILES:
        for suffix in _COMPRESSED_SUFFIXES:
            candidate = path.parent / f"{name}{suffix}"
            if not candidate.is_file() or candidate.resolve() == path.resolve():
                continue
            try:
                if name in ("POSCAR", "CONTCAR"):
                    source = _files.open_source(candidate)
                    with source.open() as fh, _files.decompression_errors(source):
                        header = read_header(fh, str(candidate), poscar=True)
                    symbols, their_counts = header.symbols, header.counts
                else:
                    symbols, their_counts = _titel_symbols(candidate)
            except DensityFormatError as exc:
                notes.append(f"{candidate.name}: unreadable ({exc})")
                continue
            if not symbols:
                notes.append(f"{candidate.name}: has no element symbols")
            elif their_counts is not None and their_counts != counts:
                notes.append(
                    f"{candidate.name}: atom counts {their_counts} differ from the file's {counts}"
                )
            elif len(symbols) != len(counts) or not all(
                Element.is_valid_symbol(s) for s in symbols
            ):
                notes.append(f"{candidate.name}: species {symbols} do not fit the counts {counts}")
            else:
                return symbols, str(candidate), notes
    return None, "", notes


def _resolve_species(
    source: _files.Source, header: VaspHeader, species: list[str] | None
) -> tuple[list[str], str]:
    """Species for the file and where they came from; raises when a VASP 4 file has none."""
    if not header.is_vasp4:
        given = list(species) if species is not None else []
        if len(given) == len(header.symbols or []) and given != list(header.symbols or []):
            raise DensityFormatError(
                f"{source.path} names its species {','.join(header.symbols or [])} (line 6), but "
                f"the species given (--species) are {','.join(given)}; a file that names its "
                "species keeps them: drop --species for it, or give the ones it names"
            )
        return header.symbols, "file"  # type: ignore[return-value]
    if species is not None:
        if len(species) != len(header.counts):
            raise DensityFormatError(
                f"{source.path} has {len(header.counts)} species group(s) with atom counts "
                f"{header.counts} (line 6) but {len(species)} species were given ({species}); "
                "pass one element per group in the order of the counts"
            )
        return species, "argument"
    found, origin, notes = species_from_neighbours(source.path, header.counts)
    if found is not None:
        return found, origin
    seen = f" Files found beside it that did not fit: {'; '.join(notes)}." if notes else ""
    example = ",".join(["X"] * len(header.counts))
    raise SpeciesRequiredError(
        f"{source.path} is a VASP 4 file: its header gives atom counts {header.counts} (line 6) "
        "but no element symbols, and no POSCAR, CONTCAR, OUTCAR or POTCAR with matching species "
        f"is beside it.{seen} The species cannot be guessed (the title line is free text). Pass "
        "them in the order of the counts: read_density(path, species=[...]) or on the command "
        f"line --species {example} (e.g. --species Li,Co,O)."
    )


def _locate_problem(lines: list[str], first: int, n_atoms: int) -> str | None:
    """Walk the blocks after the header (error path only) and describe the first inconsistency."""
    remaining = expected = got = 0
    what = ""
    block = 0
    loose = 0
    loose_start = 0
    for index in range(first, len(lines)):
        tokens = lines[index].split()
        if not tokens:
            continue
        lineno = index + 1
        is_aug = tokens[0].lower() == "augmentation"
        if remaining > 0 and is_aug:
            return (
                f"{what} ends early at {_files.describe_line(lines, lineno)}: expected {expected} "
                f"values, got {got}; the grid line and the number of values disagree"
            )
        if remaining > 0 or not (is_aug or (len(tokens) == 3 and all(t.isdigit() for t in tokens))):
            for token in tokens:
                try:
                    value = float(token)
                except ValueError:
                    where = what if remaining > 0 else "between blocks"
                    return (
                        f"{_files.describe_line(lines, lineno)}: {token!r} is not a number "
                        f"({where})"
                    )
                if not np.isfinite(value):
                    return (
                        f"{_files.describe_line(lines, lineno)}: value {token} is not finite "
                        f"({what})"
                    )
            if remaining > 0:
                remaining -= len(tokens)
                got += len(tokens)
            else:
                loose_start = loose_start or lineno
                loose += len(tokens)
                if loose > 3 * n_atoms:
                    return (
                        f"the numbers from line {loose_start} on belong to no block (after "
                        f"{what}): the block has more values than its grid line says"
                    )
            continue
        if loose and (is_aug or loose % max(n_atoms, 1)):
            return (
                f"the {loose} numbers from line {loose_start} on belong to no block (after {what}; "
                f"VASP writes one moment per atom, {n_atoms} here, only before a grid line): the "
                "block has more values than its grid line says"
            )
        loose = loose_start = 0
        if is_aug:
            what = f"augmentation block {tokens[-2]} (from line {lineno})"
            remaining = expected = int(tokens[-1])
        else:
            block += 1
            dims = [int(t) for t in tokens]
            what = f"grid block {block} ({'x'.join(tokens)} from line {lineno})"
            remaining = expected = int(np.prod(dims))
        got = 0
    if remaining > 0:
        return (
            f"the file ends at line {len(lines)} inside {what}: expected {expected} values, got "
            f"{got} (truncated file?)"
        )
    if loose:
        return (
            f"the {loose} numbers from line {loose_start} to the end belong to no block (after "
            f"{what}): the block has more values than its grid line says"
        )
    return None


def _problem(source: _files.Source, header: VaspHeader, fallback: str) -> DensityFormatError:
    """A DensityFormatError for ``source`` with the location found by :func:`_locate_problem`."""
    try:
        lines = _files.text_lines(source.read_all())
        where = _locate_problem(lines, len(header.lines), header.n_atoms)
    except DensityFormatError:
        where = None
    return DensityFormatError(f"{source.path}: {where or fallback}")


def _aug_tokens(data_aug: dict[str, Any]) -> int:
    total = 0
    for per_block in data_aug.values():
        for values in (per_block or {}).values():
            values = np.asarray(values)
            total += 4 + values.size
            if np.iscomplexobj(values):
                total += 6 + values.size
    return total


def read_chgcar(
    source: _files.Source, species: list[str] | None = None, digest: str | None = None
) -> Density:
    """Read a VASP volumetric charge-density file (any of CHGCAR/CHG/AECCAR/PARCHG; VASP 4 or 5).

    With ``digest`` (a content hash of :mod:`rhoprop.io.digest`), a plain file is hashed in the
    pass that counts its values and the hex digest is put in ``meta[digest]``.
    """
    with source.open() as fh, _files.decompression_errors(source):
        header = read_header(fh, str(source.path))
        symbols, species_source = _resolve_species(source, header, species)
        header_tokens = sum(len(line.split()) for line in header.lines)
        direct = source.compression is None and (
            source.path.suffix.lower() not in _files.ZOPEN_COMPRESSED_SUFFIXES
        )
        content_hash = None
        if direct:
            if digest is not None:
                body_tokens, content_hash = _files.count_tokens_and_digest(fh, fh.tell(), digest)
            else:
                body_tokens = _files.count_tokens(_files.iter_chunks(fh))
            n_tokens = header_tokens + body_tokens
            parsed = _parse(source, str(source.path), header)
        else:
            with _files.scratch_file() as (scratch, scratch_path):
                scratch.writelines(header.lines)
                scratch.write(b"\n")
                chunks = _files.tee(_files.iter_chunks(fh), scratch.write)
                n_tokens = header_tokens + _files.count_tokens(chunks)
                scratch.flush()
                parsed = _parse(source, scratch_path, header)
    poscar, data, data_aug = parsed
    structure: Structure = poscar.structure
    if header.is_vasp4:  # pymatgen named the atoms H, He, ... as placeholders: put the real ones
        per_site = [el for el, n in zip(symbols, header.counts, strict=True) for _ in range(n)]
        structure = Structure(structure.lattice, per_site, structure.frac_coords)
    meta = {
        "vasp_format": 4 if header.is_vasp4 else 5,
        "vasp_file": vasp_kind(source.path),
        "title": str(poscar.comment).strip(),
        "augmentation": any(bool(per_block) for per_block in data_aug.values()),
        "species_source": species_source,
        "compression": source.compression,
    }
    if content_hash is not None:
        meta[str(digest)] = content_hash
    grid_tokens = n_tokens - header_tokens - _aug_tokens(data_aug)
    return _to_density(source, header, structure, data, grid_tokens, meta)


def _parse(
    source: _files.Source, parse_path: str, header: VaspHeader
) -> tuple[Poscar, dict[str, Any], dict[str, Any]]:
    """Run pymatgen's parser on ``parse_path``, turning its errors into located
    DensityFormatErrors."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return VolumetricData.parse_file(parse_path)
    except MemoryError:
        raise
    except Exception as exc:
        raise _problem(
            source, header, f"unreadable VASP file ({type(exc).__name__}: {exc})"
        ) from exc


def _moments_fit(surplus: int, n_blocks: int, n_atoms: int) -> bool:
    """True when ``surplus`` values beyond the grids can be VASP's per-atom moments between blocks.

    VASP writes one moment per atom before a collinear magnetization block (up to three per atom
    for non-collinear files); other writers none. Any other count means a grid holds more values
    than its grid line says (pymatgen's parser skips such lines silently).
    """
    if surplus == 0:
        return True
    return (
        n_blocks > 1
        and n_atoms > 0
        and surplus % n_atoms == 0
        and 0 < surplus <= (n_blocks - 1) * 3 * n_atoms
    )


def _to_density(
    source: _files.Source,
    header: VaspHeader,
    structure: Structure,
    data: dict[str, np.ndarray],
    grid_tokens: int,
    meta: dict[str, Any],
) -> Density:
    """Check the grids against the number of values, divide by the volume, build the Density.

    ``grid_tokens`` is the number of tokens in the file outside the header and augmentation blocks:
    grid lines and values, plus the per-atom magnetic moments VASP writes between blocks.
    """
    keys = (
        ["total", "diff_x", "diff_y", "diff_z"]
        if "diff_x" in data
        else [k for k in ("total", "diff") if k in data]
    )
    shapes = [data[k].shape for k in keys]
    if any(shape != shapes[0] for shape in shapes):
        raise _problem(
            source,
            header,
            f"its data blocks have different grids {shapes}; a grid line does not match its values",
        )
    surplus = grid_tokens - sum(3 + data[k].size for k in keys)
    if not _moments_fit(surplus, len(keys), header.n_atoms):
        raise _problem(
            source,
            header,
            f"it holds {surplus:+d} values beyond what its grid line(s) {shapes[0]} account for",
        )
    check_cell(structure.lattice.matrix, f"{source.path} (lines 2-5: scale and lattice vectors)")
    check_positions(structure, str(source.path), first_line=len(header.lines) - header.n_atoms + 1)
    volume = structure.volume
    total = data["total"]
    total /= volume
    spin = None
    if len(keys) == 2:
        spin = data["diff"]
        spin /= volume
    elif len(keys) == 4:
        spin = np.stack([data["diff_x"], data["diff_y"], data["diff_z"]])
        spin /= volume
    try:
        return Density(
            total=total,
            structure=structure,
            spin=spin,
            source=str(source.path),
            fmt="chgcar",
            code=_code_from_title(str(meta.get("title", ""))),
            meta=meta,
        )
    except DensityFormatError as exc:
        raise _problem(source, header, str(exc)) from exc


def written_lattice(structure: Structure) -> np.ndarray:
    """The lattice matrix as pymatgen's CHGCAR writer prints it (6 decimals)."""
    return np.array([[float(f"{x:12.6f}") for x in row] for row in structure.lattice.matrix])


def write_chgcar(density: Density, path: str | os.PathLike[str]) -> Path:
    """Write ``density`` as a VASP 5 CHGCAR (magnetization block(s) when spin is present).

    The name decides compression (``.gz``, ``.bz2``, ``.xz``). Values have 11 significant digits;
    the lattice and fractional coordinates 6 decimals (VASP's own precision). Values are scaled by
    the volume of the lattice as written, so reading the file back returns the same densities.
    """
    path = Path(path)
    volume = abs(float(np.linalg.det(written_lattice(density.structure))))
    data = {"total": density.total * volume}
    if density.spin is not None and density.spin.ndim == 4:
        data.update({f"diff_{axis}": density.spin[i] * volume for i, axis in enumerate("xyz")})
    elif density.spin is not None:
        data["diff"] = density.spin * volume
    title = f"{density.structure.composition.reduced_formula} written by rhoprop"
    if density.code != "unknown":
        title += f" (code={density.code})"
    chgcar = Chgcar(Poscar(density.structure, comment=title), data)
    chgcar.name = title  # VolumetricData.__init__ overwrites the title taken from the Poscar
    with _files.atomic_output(path) as tmp:
        chgcar.write_file(str(tmp))
    return path


def _code_from_title(title: str) -> str:
    """The code that produced a CHGCAR: the ``code=`` tag rhoprop writes, else VASP for a VASP file.

    A file rhoprop wrote without a tag (before the tag existed) is ``"unknown"``, not VASP.
    """
    if "written by rhoprop" not in title:
        return "vasp"
    match = re.search(r"\(code=([A-Za-z0-9_.-]+)\)", title)
    return match.group(1) if match else "unknown"
