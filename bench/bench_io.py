"""Benchmark rhoprop.io.read_density against the readers a user would otherwise call.

Baselines, in the same run on the same files: pymatgen ``Chgcar.from_file`` for VASP files (plain
and gzip; note that for the VASP 4 file pymatgen silently names the atoms H..., so it is only a
timing baseline) and ASE ``read_cube`` for cube files. Files: the two real VASP fixtures in
shared/fixtures/vasp, and a 2x2x2 supercell of the LiCoO2 density (8x the data) written by
rhoprop. Prints a markdown table of best-of-N times and ratios (baseline / rhoprop; > 1 = faster).

Usage: python bench/bench_io.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import gzip
import platform
import tempfile
import warnings
from pathlib import Path

import numpy as np
from ase.io.cube import read_cube
from pymatgen.io.vasp.outputs import Chgcar

from _timing import best_times
from rhoprop.io import Density, read_density, write_chgcar, write_cube

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "vasp"



def pymatgen_chgcar(path: Path) -> Chgcar:
    """pymatgen's CHGCAR reader on a path."""
    return Chgcar.from_file(str(path))


def read_cube_file(path: Path) -> dict:
    """ASE's cube reader on a path."""
    with open(path) as fh:
        return read_cube(fh)


def supercell(density: Density) -> Density:
    """The density of the 2x2x2 supercell (the grid tiled, the structure repeated)."""
    structure = density.structure.copy()
    structure.make_supercell([2, 2, 2])
    spin = None if density.spin is None else np.tile(density.spin, (2, 2, 2))
    return Density(total=np.tile(density.total, (2, 2, 2)), structure=structure, spin=spin)


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        spin_plain = work / "CHGCAR_LiCoO2"
        spin_plain.write_bytes(gzip.decompress((FIXTURES / "CHGCAR.LiCoO2_spin.gz").read_bytes()))
        vasp4_plain = work / "CHGCAR_vasp4"
        vasp4_plain.write_bytes(
            gzip.decompress((FIXTURES / "CHGCAR.vasp4_8atom_nospecies.gz").read_bytes())
        )
        big = supercell(read_density(spin_plain))
        big_plain = write_chgcar(big, work / "CHGCAR_LiCoO2_2x2x2")
        big_gz = work / "CHGCAR_LiCoO2_2x2x2.gz"
        big_gz.write_bytes(gzip.compress(big_plain.read_bytes(), compresslevel=6))
        cube = write_cube(read_density(spin_plain), work / "LiCoO2.cube")
        cases = [
            (
                "LiCoO2 spin CHGCAR, plain (3.9 MB)",
                spin_plain,
                None,
                pymatgen_chgcar,
            ),
            (
                "LiCoO2 spin CHGCAR, gzip (fixture)",
                FIXTURES / "CHGCAR.LiCoO2_spin.gz",
                None,
                pymatgen_chgcar,
            ),
            (
                "VASP 4 CHGCAR, plain (3.1 MB)",
                vasp4_plain,
                ["C"],
                pymatgen_chgcar,
            ),
            (
                "VASP 4 CHGCAR, gzip (fixture)",
                FIXTURES / "CHGCAR.vasp4_8atom_nospecies.gz",
                ["C"],
                pymatgen_chgcar,
            ),
            (
                "LiCoO2 2x2x2 spin CHGCAR, plain",
                big_plain,
                None,
                pymatgen_chgcar,
            ),
            ("LiCoO2 2x2x2 spin CHGCAR, gzip", big_gz, None, pymatgen_chgcar),
            ("LiCoO2 spin cube (2 values/point)", cube, None, read_cube_file),
        ]
        for label, path, species, baseline in cases:
            ours, theirs = best_times(
                [
                    lambda path=path, species=species: read_density(path, species=species),
                    lambda path=path, baseline=baseline: baseline(path),
                ],
                args.repeat,
            )
            size = path.stat().st_size / 1e6
            rows.append((label, size, theirs, ours))
    baseline_names = "pymatgen Chgcar.from_file (VASP), ASE read_cube (cube)"
    print(
        f"machine: {platform.node()} | {platform.processor() or platform.machine()} | Python {platform.python_version()}"
    )
    print(f"baseline: {baseline_names}; best of {args.repeat} interleaved rounds\n")
    print("| file | MB on disk | baseline (ms) | rhoprop read_density (ms) | ratio |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, size, theirs, ours in rows:
        print(
            f"| {label} | {size:.1f} | {theirs * 1e3:.1f} | {ours * 1e3:.1f} | {theirs / ours:.2f} |"
        )


if __name__ == "__main__":
    main()
