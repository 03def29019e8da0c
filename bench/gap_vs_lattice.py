"""Band gap of a simple crystal at given lattice constants, with the gpaw-v1 protocol's SCF.

Usage: ``.venv/bin/python bench/gap_vs_lattice.py LiF rocksalt 4.010 4.063 4.107``. One SCF per
lattice constant (no EOS, no relaxation: the ``ase.build.bulk`` cell scaled isotropically), so a
band gap reference tabulated at one lattice constant can be compared at that lattice constant
rather than at the protocol's own equilibrium volume. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time


def main() -> int:
    """Print the gap (eV) and wall time at every lattice constant given."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("formula", help="e.g. LiF")
    parser.add_argument("structure", help="ase.build.bulk crystalstructure, e.g. rocksalt, zincblende, diamond")
    parser.add_argument("a", nargs="+", type=float, help="conventional cubic lattice constants (Å)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from ase.build import bulk

    from rhoprop.dft.calc import kpoint_mesh, run_scf
    from rhoprop.dft.protocol import DFTProtocol

    protocol = DFTProtocol()
    print(f"{args.formula} ({args.structure}), protocol {protocol.name} rev {protocol.protocol_revision} "
          f"({protocol.hash()})\n")
    print("| a (Å) | k-points | gap (eV) | wall s |\n|---|---|---|---|")
    for a in args.a:
        atoms = bulk(args.formula, args.structure, a=a)
        mesh = kpoint_mesh(atoms, protocol)
        start = time.perf_counter()
        result = run_scf(atoms, atoms.get_volume(), mesh, protocol, io.StringIO())
        print(f"| {a:.3f} | {'x'.join(map(str, mesh))} | {result.bands.band_gap:.2f} | {time.perf_counter() - start:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
