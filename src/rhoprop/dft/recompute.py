"""Recompute the density of a finished material from its result JSON: one SCF, no EOS.

CHGCARs are a few MB each and are not committed, so a fresh clone of a generation folder holds
result JSONs without densities. The result holds everything the density depends on: the final
structure (at V0, positions relaxed), the k-mesh and the protocol. :func:`recompute_density` runs
that one SCF again, writes ``DIR/chgcar/<id>.CHGCAR`` and checks that the total energy reproduces
the stored one (:data:`ENERGY_TOLERANCE_EV_PER_ATOM`): a density that would not reproduce its
labels is refused, never written.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

from rhoprop.dft.calc import DFTError, material_scope, run_scf
from rhoprop.dft.material import chgcar_path, result_path, write_chgcar
from rhoprop.dft.protocol import DFTProtocol
from rhoprop.errors import RhopropError

#: Largest accepted difference between the recomputed and the stored total energy (eV/atom).
ENERGY_TOLERANCE_EV_PER_ATOM = 1e-3


class DensityMismatchError(DFTError):
    """The recomputed SCF does not reproduce the stored total energy of the material."""


def recompute_density(
    out_dir: str | Path, material_id: str, protocol: DFTProtocol | None = None
) -> dict[str, Any]:
    """Run the SCF of a finished crystal again from its result JSON and write its CHGCAR.

    Returns ``{"id", "energy", "stored_energy", "delta_ev_per_atom", "seconds"}``. Raises
    :class:`DensityMismatchError` (nothing written) when the energy differs from the stored one by
    more than :data:`ENERGY_TOLERANCE_EV_PER_ATOM`, RhopropError when there is no crystal result.
    """
    out = Path(out_dir)
    path = result_path(out, material_id)
    if not path.is_file():
        raise RhopropError(
            f"{path} does not exist: {material_id} has no result to recompute the density of"
        )
    record = json.loads(path.read_text())
    if record.get("kind") != "crystal":
        raise RhopropError(
            f"{path} is a {record.get('kind')!r} result; only crystals have a density"
        )
    protocol = protocol or DFTProtocol()
    if not protocol.accepts(record):
        raise RhopropError(
            f"{path} was computed with protocol hash {record.get('protocol_hash')}, which the "
            f"protocol {protocol.name} (hash {protocol.hash()}) does not accept; recompute the "
            "material instead"
        )
    structure = Structure.from_dict(record["structure"])
    atoms = AseAtomsAdaptor.get_atoms(structure)
    t0 = time.perf_counter()
    log = out / "logs" / f"{material_id}.recompute.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as txt, material_scope() as scfs:
        # A material whose SCFs needed the fallback mixer starts with it again (same ground state).
        scfs.fallbacks = int(record.get("scf_fallbacks", 0) or 0)
        scf = run_scf(atoms, structure.volume, tuple(record["kpts"]), protocol, txt)
    stored = float(record["scf"]["energy"])
    delta = (scf.energy - stored) / len(structure)
    if not math.isfinite(delta) or abs(delta) > ENERGY_TOLERANCE_EV_PER_ATOM:
        raise DensityMismatchError(
            f"{material_id}: recomputed energy {scf.energy:.5f} eV differs from the stored "
            f"{stored:.5f} eV by {delta * 1000:.2f} meV/atom (tolerance "
            f"{ENERGY_TOLERANCE_EV_PER_ATOM * 1000:.1f}); not written"
        )
    final = AseAtomsAdaptor.get_structure(scf.atoms)
    for prop in list(final.site_properties):
        final.remove_site_property(prop)
    write_chgcar(final, scf.density, scf.magnetization, chgcar_path(out, material_id))
    return {
        "id": material_id,
        "energy": scf.energy,
        "stored_energy": stored,
        "delta_ev_per_atom": delta,
        "seconds": time.perf_counter() - t0,
    }


def missing_densities(out_dir: str | Path, ids: Sequence[str] | None = None) -> list[str]:
    """Ids of the crystal results in ``out_dir`` (or of ``ids``) whose CHGCAR is absent, sorted."""
    out = Path(out_dir)
    if ids is None:
        ids = sorted(p.stem for p in (out / "results").glob("*.json"))
    missing = []
    for mid in ids:
        try:
            kind = json.loads(result_path(out, mid).read_text()).get("kind")
        except (OSError, json.JSONDecodeError):
            continue
        if kind == "crystal" and not chgcar_path(out, mid).exists():
            missing.append(mid)
    return missing


def recompute_missing(
    out_dir: str | Path,
    ids: Sequence[str] | None = None,
    protocol: DFTProtocol | None = None,
    on_done: Callable[[str, dict[str, Any] | None, str | None], None] | None = None,
) -> dict[str, Any]:
    """Recompute every missing density of ``out_dir`` in this process, one material at a time.

    Resumable: a material counts as done once its CHGCAR exists (written atomically). Failures are
    collected, never fatal. ``on_done(id, result, error)`` is called after each material.
    Returns ``{"done": {id: result}, "failed": {id: reason}}``.
    """
    report: dict[str, Any] = {"done": {}, "failed": {}}
    for mid in missing_densities(out_dir, ids):
        try:
            res = recompute_density(out_dir, mid, protocol)
            report["done"][mid] = res
            err = None
        except Exception as exc:
            res, err = None, f"{type(exc).__name__}: {exc}"
            report["failed"][mid] = err
        if on_done is not None:
            on_done(mid, res, err)
    return report
