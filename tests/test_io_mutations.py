"""Mutated copies of the real VASP fixture (and cube/XSF copies of it): every read either fails with
a DensityFormatError or returns a finite density on a real cell, never another exception."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import ase.io
import numpy as np
import pytest
from pymatgen.io.ase import AseAtomsAdaptor

from rhoprop.errors import DensityFormatError
from rhoprop.io import read_density, write_cube

SPIN = "CHGCAR.LiCoO2_spin.gz"
JUNK = [b"nan", b"inf", b"-inf", b"1e400", b"abc", b"***", b"0", b"-1", b"", b"1 2"]


def _mutate(data: bytes, rng: random.Random, header_lines: int) -> bytes:
    """One random corruption: truncation, flipped bytes, a line deleted, repeated or given a junk token."""
    kind = rng.randrange(5)
    if kind == 0:
        return data[: rng.randrange(len(data))]
    if kind == 1:
        out = bytearray(data)
        for _ in range(rng.randrange(1, 12)):
            out[rng.randrange(len(out))] = rng.randrange(256)
        return bytes(out)
    lines = data.split(b"\n")
    i = rng.randrange(header_lines) if rng.random() < 0.6 else rng.randrange(len(lines))
    if kind == 2:
        del lines[i]
    elif kind == 3:
        lines.insert(i, lines[i])
    else:
        tokens = lines[i].split() or [b""]
        tokens[rng.randrange(len(tokens))] = rng.choice(JUNK)
        lines[i] = b" ".join(tokens)
    return b"\n".join(lines)


@pytest.fixture(scope="module")
def originals(fixtures_dir: Path, tmp_path_factory) -> dict[str, bytes]:
    """The fixture as CHGCAR text, and a coarse copy of it as cube and XSF files."""
    folder = tmp_path_factory.mktemp("originals")
    density = read_density(fixtures_dir / SPIN)
    coarse = type(density)(total=density.total[::2, ::2, ::2], structure=density.structure,
                           spin=density.spin[::2, ::2, ::2], source="coarse")
    write_cube(coarse, folder / "d.cube")
    ase.io.write(folder / "d.xsf", AseAtomsAdaptor.get_atoms(density.structure), data=coarse.total)
    return {
        "CHGCAR": gzip.decompress((fixtures_dir / SPIN).read_bytes()),
        "d.cube": (folder / "d.cube").read_bytes(),
        "d.xsf": (folder / "d.xsf").read_bytes(),
    }


@pytest.mark.parametrize("name", ["CHGCAR", "d.cube", "d.xsf"])
def test_mutated_files_fail_with_a_format_error_or_read_as_finite_densities(
    originals: dict[str, bytes], name: str, tmp_path: Path
) -> None:
    rng = random.Random(7)
    path = tmp_path / name
    refused = 0
    for _ in range(40):
        path.write_bytes(_mutate(originals[name], rng, header_lines=30))
        try:
            density = read_density(path)
        except DensityFormatError as exc:
            assert str(path) in str(exc)
            refused += 1
            continue
        assert np.isfinite(density.total).all() and density.volume > 1.0
        assert np.isfinite(density.structure.cart_coords).all()
    assert refused >= 20
