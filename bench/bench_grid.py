"""Benchmark rhoprop.grid.standardize against pyrho's regrid, and measure its accuracy.

Speed (one thread, best of ``--repeat`` interleaved rounds): on a physical density (free-atom
superposition of a 2x2x2 NaCl conventional cell, 64 atoms, a native 100^3 grid, 0.113 Å) we time
pyrho ``ChargeDensity(...).get_data_in_cube(edge, n)`` (the baseline: trilinear regrid) against
``standardize`` in mode cube with cubic and linear interpolation and in mode cell, for n = 32 and
64, plus the end-to-end per-file cost (pymatgen ``Chgcar.from_file`` + pyrho versus
``rhoprop.io.read_density`` + ``standardize``) on the same density written as a CHGCAR.

Accuracy: the error of cube sampling against the exact field (known at the cube points because
``edge = a`` and n divides the cell: the cube points are a cell grid) for native spacings 0.15,
0.10 and 0.07 Å, and the invariance of the tensor over primitive / conventional / 2x2x2 supercell
cells of Si and NaCl (max and mean voxel differences relative to the tensor's max and mean).

Usage: OMP_NUM_THREADS=1 .venv/bin/python bench/bench_grid.py [--repeat 7]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from ase.build import bulk  # noqa: E402
from pymatgen.io.ase import AseAtomsAdaptor  # noqa: E402
from pymatgen.io.vasp import Chgcar  # noqa: E402
from pyrho.charge_density import ChargeDensity  # noqa: E402
from pyrho.pgrid import PGrid  # noqa: E402

from _timing import best_times  # noqa: E402
from rhoprop.grid import StandardizeSettings, atomic_superposition, standardize  # noqa: E402
from rhoprop.io import Density, read_density, write_chgcar  # noqa: E402

G_CUT = 12.0



def physical(structure, spacing: float | None = None, shape=None, g_cut: float | None = G_CUT) -> Density:
    """Free-atom superposition on a native grid (``shape`` or finer than ``spacing`` Å)."""
    if shape is None:
        shape = tuple(int(np.ceil(length / spacing)) for length in structure.lattice.abc)
    return Density(total=atomic_superposition(structure, shape, g_cut=g_cut), structure=structure)


def speed(repeat: int) -> None:
    """Standardize-only and end-to-end timings against pyrho."""
    structure = AseAtomsAdaptor.get_structure(bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat((2, 2, 2)))
    density = physical(structure, shape=(100, 100, 100), g_cut=None)
    print(f"\nSpeed: NaCl 2x2x2 conventional (64 atoms), native grid {density.shape}, one thread\n")
    print("| n | pyrho get_data_in_cube | rhoprop cube cubic | rhoprop cube linear | rhoprop cell | cubic / pyrho |")
    print("|---|---|---|---|---|---|")
    cd = ChargeDensity({"total": PGrid(density.total * density.volume, structure.lattice.matrix)}, structure)
    for n in (32, 64):
        funcs = [
            lambda: cd.get_data_in_cube(10.0, n),
            lambda: standardize(density, StandardizeSettings(n=n)),
            lambda: standardize(density, StandardizeSettings(n=n, interpolation="linear")),
            lambda: standardize(density, StandardizeSettings(n=n, mode="cell")),
        ]
        t = best_times(funcs, repeat)
        print(f"| {n} | {t[0]*1e3:.1f} ms | {t[1]*1e3:.1f} ms | {t[2]*1e3:.1f} ms | {t[3]*1e3:.1f} ms | {t[1]/t[0]:.2f} |")
    deformation = best_times(
        [lambda: standardize(density, StandardizeSettings(channels=("total", "deformation")))], max(1, repeat // 2)
    )[0]
    print(f"\nWith the deformation channel (free-atom superposition on the 100^3 grid): {deformation*1e3:.0f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "CHGCAR"
        write_chgcar(density, path)
        funcs = [
            lambda: ChargeDensity.from_pmg(Chgcar.from_file(str(path))).get_data_in_cube(10.0, 32),
            lambda: standardize(read_density(path), StandardizeSettings(n=32)),
        ]
        t = best_times(funcs, max(1, repeat // 2))
    print(
        f"\nEnd to end per file (n=32): pymatgen read + pyrho {t[0]*1e3:.0f} ms, rhoprop read + standardize "
        f"{t[1]*1e3:.0f} ms, ratio rhoprop / baseline {t[1]/t[0]:.2f}"
    )


def accuracy() -> None:
    """Interpolation error against exact values, and invariance over the choice of cell."""
    print("\nAccuracy of cube sampling against the exact field (max and mean |error| / max rho)\n")
    print("| crystal | native spacing | cubic max | cubic mean | linear max | linear mean |")
    print("|---|---|---|---|---|---|")
    for name, kw in (("Si", {"name": "Si"}), ("NaCl", {"name": "NaCl", "crystalstructure": "rocksalt", "a": 5.64})):
        structure = AseAtomsAdaptor.get_structure(bulk(**kw, cubic=True))
        exact = atomic_superposition(structure, (16, 16, 16), g_cut=G_CUT)
        for spacing in (0.15, 0.10, 0.07):
            density = physical(structure, spacing)
            row = []
            for method in ("cubic", "linear"):
                settings = StandardizeSettings(n=16, edge=structure.lattice.a, transform="none", interpolation=method)
                err = np.abs(standardize(density, settings).x[0] - exact) / exact.max()
                row += [f"{err.max():.1e}", f"{err.mean():.1e}"]
            print(f"| {name} | {density.grid_spacing:.3f} Å | " + " | ".join(row) + " |")
    print("\nInvariance over cells (n=32, edge 10 Å, native spacing < 0.14 Å): difference to the primitive cell's tensor\n")
    print("| crystal | cell | interpolation | max / max | mean / mean |")
    print("|---|---|---|---|---|")
    for name, kw in (("Si", {"name": "Si"}), ("NaCl", {"name": "NaCl", "crystalstructure": "rocksalt", "a": 5.64})):
        cells = {
            "primitive": bulk(**kw),
            "conventional": bulk(**kw, cubic=True),
            "2x2x2 supercell": bulk(**kw).repeat((2, 2, 2)),
        }
        densities = {k: physical(AseAtomsAdaptor.get_structure(a), 0.14) for k, a in cells.items()}
        for method in ("cubic", "linear"):
            settings = StandardizeSettings(transform="none", interpolation=method)
            ref = standardize(densities["primitive"], settings).x
            for cell in ("conventional", "2x2x2 supercell"):
                diff = np.abs(standardize(densities[cell], settings).x - ref)
                print(f"| {name} | {cell} | {method} | {diff.max()/ref.max():.1e} | {diff.mean()/ref.mean():.1e} |")


def main() -> None:
    """Run the speed and accuracy measurements and print markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(f"Machine: {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}")  # fmt: skip
    speed(args.repeat)
    accuracy()


if __name__ == "__main__":
    main()
