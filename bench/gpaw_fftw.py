"""GPAW with FFTW against GPAW with numpy/scipy FFTs: CPU seconds of the same plane-wave SCFs.

Usage::

    .venv/bin/python bench/gpaw_fftw.py --plain-build /tmp/gfft/plain
    .venv/bin/python bench/gpaw_fftw.py --plain-build /tmp/gfft/plain --ids NaCl-rocksalt,Fe-bcc

GPAW's plane-wave mode spends much of an SCF in 3D FFTs. Built without FFTW (``fftw = False``, the
default of GPAW's ``setup.py``, what ``pip install gpaw`` gives) it calls numpy/scipy's pocketfft;
built with ``fftw = True`` and ``libraries += ['blas', 'fftw3']`` in its ``siteconfig.py`` (Debian:
``libfftw3-dev``) it plans FFTW transforms; ``scripts/setup.sh`` builds it so. ``--plain-build``
and ``--fftw-build`` are folders holding a build without and with FFTW (``pip wheel`` GPAW's sdist
with ``GPAW_CONFIG`` pointing to the siteconfig, then ``pip install --no-deps --target DIR
gpaw-*.whl``), put first on ``PYTHONPATH`` of their runs; the one left out is the environment's
own GPAW, which must be of the other kind (checked in every run).

For each material of ``data-gen/gpaw-scf-v1`` (``--ids``; their stored relaxed structure and
protocol), one SCF exactly as the fast tier runs it (:func:`rhoprop.dft.calc.converge`, one thread),
with each build in its own process, the two builds alternating (``--repeat`` rounds, the fastest
kept): CPU seconds of the SCF alone (imports and setup loading excluded), the ratio, and the energy
difference (the same calculation, so it should agree to well below 1 meV/atom).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IDS = (
    "NaCl-rocksalt",
    "Fe-bcc",
    "SrTiO3-perovskite",
    "ZnSiP2-chalcopyrite",
    "Hf3Pb-a15",
)


def one(material_id: str, folder: Path) -> dict[str, Any]:
    """The SCF of one stored material in this process: CPU seconds, energy, iterations."""
    import io

    from gpaw.fftw import have_fftw
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    from rhoprop.dft.calc import converge, kpoint_mesh, prepare_atoms
    from rhoprop.dft.protocol import load_protocol

    record = json.loads((folder / "results" / f"{material_id}.json").read_text())
    protocol = load_protocol(record["protocol"])
    structure = Structure.from_dict(record["structure"])
    atoms, spinpol = prepare_atoms(AseAtomsAdaptor.get_atoms(structure), protocol)
    kpts = kpoint_mesh(atoms, protocol)
    log = io.StringIO()
    start = resource.getrusage(resource.RUSAGE_SELF)
    energy = converge(atoms, protocol, kpts, log, spinpol)
    end = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "id": material_id,
        "natoms": len(atoms),
        "spin": spinpol,
        "fftw": bool(have_fftw()),
        "cpu_s": (end.ru_utime - start.ru_utime) + (end.ru_stime - start.ru_stime),
        "energy_per_atom": energy / len(atoms),
        "iterations": log.getvalue().count("iter:"),
    }


def run(material_id: str, folder: Path, build: Path | None) -> dict[str, Any]:
    """:func:`one` in a fresh process, with ``build`` first on the path when given."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    if build is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(build.resolve()), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, __file__, "--one", material_id, "--folder", str(folder)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd="/tmp",  # not the repository root, whose folders could shadow the build
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    """Alternate the two builds over the materials; print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--plain-build", type=Path, help="folder with a GPAW built without FFTW")
    parser.add_argument("--fftw-build", type=Path, help="folder with a GPAW built with FFTW")
    parser.add_argument("--ids", default=",".join(DEFAULT_IDS))
    parser.add_argument("--folder", type=Path, default=ROOT / "data-gen" / "gpaw-scf-v1")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.folder)))
        return 0
    if (args.plain_build is None) == (args.fftw_build is None):
        parser.error("give one of --plain-build DIR and --fftw-build DIR")
    print(
        "| material | atoms | spin | iterations | CPU s numpy FFT | CPU s FFTW | ratio "
        "| ΔE meV/atom |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    total = [0.0, 0.0]
    for mid in [i for i in args.ids.split(",") if i]:
        best: list[dict[str, Any] | None] = [None, None]
        for _ in range(args.repeat):
            for k, build in enumerate((args.plain_build, args.fftw_build)):
                res = run(mid, args.folder, build)
                if res["fftw"] != bool(k):
                    raise SystemExit(f"{mid}: a run meant to use FFTW={bool(k)} had {res['fftw']}")
                old = best[k]
                if old is None or res["cpu_s"] < old["cpu_s"]:
                    best[k] = res
        plain, fast = best
        assert plain is not None and fast is not None
        a, b = float(plain["cpu_s"]), float(fast["cpu_s"])
        total[0] += a
        total[1] += b
        de = 1000 * abs(plain["energy_per_atom"] - fast["energy_per_atom"])
        print(
            f"| {mid} | {plain['natoms']} | {'yes' if plain['spin'] else 'no'} | "
            f"{plain['iterations']}/{fast['iterations']} | {a:.1f} | {b:.1f} | {a / b:.2f} | "
            f"{de:.4f} |",
            flush=True,
        )
    print(f"| all | | | | {total[0]:.1f} | {total[1]:.1f} | {total[0] / total[1]:.2f} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
