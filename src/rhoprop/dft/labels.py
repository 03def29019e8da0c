"""Assemble ``labels.csv`` (and its unit schema) from the per-material result JSONs of a generation
folder.

Run after (or during) a batch: formation energies use the elemental references present at the
time, so re-assembling as references arrive updates them. Only results computed with one protocol
hash are combined (the newest protocol's, unless one is named). The label set is the tier's:
``gpaw-v1`` has all of :data:`LABEL_SCHEMA`, the fast tier ``gpaw-scf-v1`` all but the EOS and
elastic ones (:data:`EOS_LABELS`), measured at the CHGNet-relaxed structure (:func:`label_schema`).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rhoprop.dft.protocol import (
    DFTProtocol,
    GPAWProtocol,
    load_protocol,
    protocol_by_name,
    protocol_hash_of,
)
from rhoprop.errors import RhopropError
from rhoprop.settings import atomic_write_text

CRYSTAL_SYSTEMS = (
    "triclinic",
    "monoclinic",
    "orthorhombic",
    "tetragonal",
    "trigonal",
    "hexagonal",
    "cubic",
)

LABEL_SCHEMA: dict[str, dict[str, Any]] = {
    "volume_per_atom": {
        "kind": "regression",
        "minimum": 0.0,
        "unit": "Å^3/atom",
        "definition": "V0 of the Birch-Murnaghan fit divided by the number of atoms",
    },
    "bulk_modulus": {
        "kind": "regression",
        "minimum": 0.0,
        "unit": "GPa",
        "definition": (
            "B0 of the Birch-Murnaghan fit; blank when the scan's energies do not lie "
            "on one smooth curve (RMS about the fit above EOS_MAX_RMS_MEV_PER_ATOM, "
            "2 meV/atom: SCFs that reached different magnetic states)"
        ),
    },
    "density": {
        "kind": "regression",
        "minimum": 0.0,
        "unit": "g/cm^3",
        "definition": "mass density at V0",
    },
    "total_energy": {
        "kind": "regression",
        "unit": "eV/atom",
        "definition": (
            "GPAW total energy at V0 per atom (GPAW's reference: isolated "
            "non-spin-polarized atoms of the PAW setups)"
        ),
    },
    "formation_energy": {
        "kind": "regression",
        "unit": "eV/atom",
        "definition": (
            "(E - sum_i n_i mu_i)/N, mu_i = lowest energy per atom of element i "
            "over its computed elemental solids and dimer molecule (same protocol); "
            "blank while a reference is missing"
        ),
    },
    "fermi_energy": {
        "kind": "regression",
        "unit": "eV",
        "definition": "GPAW Fermi level of the SCF at V0",
    },
    "band_gap": {
        "kind": "regression",
        "minimum": 0.0,
        "unit": "eV",
        "definition": (
            "CBM - VBM over the Γ-centred k-mesh of the SCF at V0 (both spins); 0 for metals"
        ),
    },
    "bandwidth": {
        "kind": "regression",
        "minimum": 0.0,
        "unit": "eV",
        "definition": (
            "top of the occupied states (E_F for metals, VBM otherwise) minus the bottom "
            "of the highest contiguous block of occupied eigenvalues; blocks are separated "
            "by gaps > bandwidth_gap_ev (2 eV), which drops semicore states"
        ),
    },
    "magnetic_moment": {
        "kind": "regression",
        "minimum": 0.0,
        "unit": "μB/atom",
        "definition": "|total cell magnetic moment| / number of atoms (0 if not spin-polarized)",
    },
    "is_metal": {
        "kind": "binary",
        "unit": "",
        "classes": [0, 1],
        "definition": (
            "1 when a band of some spin has eigenvalues on both sides of E_F on the k-mesh"
        ),
    },
    "crystal_system": {
        "kind": "multiclass",
        "unit": "",
        "classes": list(CRYSTAL_SYSTEMS),
        "definition": "spglib crystal system of the structure at V0 (symprec 0.01 Å)",
    },
    "c11": {
        "kind": "regression",
        "unit": "GPa",
        "definition": "cubic elastic constant from ± strain stresses; blank for non-cubic",
    },
    "c12": {
        "kind": "regression",
        "unit": "GPa",
        "definition": "cubic elastic constant; blank for non-cubic",
    },
    "c44": {
        "kind": "regression",
        "unit": "GPa",
        "definition": "cubic elastic constant, internal coordinates relaxed; blank for non-cubic",
    },
    "mechanically_stable": {
        "kind": "binary",
        "unit": "",
        "classes": [0, 1],
        "definition": "Born criteria c11-c12>0, c11+2c12>0, c44>0; blank for non-cubic",
    },
}
"""Every label column of ``labels.csv``: kind, unit and exact definition."""

INFO_COLUMNS = (
    "formula",
    "prototype",
    "natoms",
    "spin_polarized",
    "spacegroup_number",
    "eos_fit_rms_mev_per_atom",
)

EOS_LABELS = ("bulk_modulus", "c11", "c12", "c44", "mechanically_stable")
"""Labels that need the equation of state or strained cells: ``gpaw-v1`` only."""

SCF_DEFINITIONS: dict[str, str] = {
    "volume_per_atom": (
        "volume of the CHGNet-relaxed cell (symmetry kept) divided by the number of atoms"
    ),
    "density": "mass density of the CHGNet-relaxed cell",
    "total_energy": (
        "GPAW total energy of the SCF at the CHGNet-relaxed structure per atom "
        "(GPAW's reference: isolated non-spin-polarized atoms of the PAW setups)"
    ),
    "formation_energy": (
        "(E - sum_i n_i mu_i)/N, mu_i = lowest energy per atom of element i over "
        "its computed elemental solids and dimer molecule (same tier: CHGNet-relaxed, one SCF); "
        "blank while a reference is missing"
    ),
    "fermi_energy": "GPAW Fermi level of the SCF at the CHGNet-relaxed structure",
    "band_gap": (
        "CBM - VBM over the Γ-centred k-mesh of the SCF at the CHGNet-relaxed structure "
        "(both spins); 0 for metals"
    ),
    "crystal_system": "spglib crystal system of the CHGNet-relaxed structure (symprec 0.01 Å)",
}
"""Definitions of the fast tier's labels where they differ from ``gpaw-v1``'s (CHGNet geometry)."""

SCF_INFO_COLUMNS = (
    "formula",
    "prototype",
    "natoms",
    "spin_polarized",
    "spacegroup_number",
    "scf_max_force",
    "chgnet_formation_energy",
)
"""``materials.csv`` columns of the fast tier: the GPAW force left at the CHGNet geometry (eV/Å) and
CHGNet's formation energy where the screening computed it (eV/atom)."""


def has_eos(protocol: GPAWProtocol) -> bool:
    """True for a tier with an equation of state and elastic constants (``gpaw-v1``)."""
    return isinstance(protocol, DFTProtocol)


def label_schema(protocol: GPAWProtocol | None = None) -> dict[str, dict[str, Any]]:
    """The label columns of a tier with kinds, units and definitions (``gpaw-v1`` when None)."""
    if protocol is None or has_eos(protocol):
        return LABEL_SCHEMA
    return {
        name: {**spec, "definition": SCF_DEFINITIONS.get(name, spec["definition"])}
        for name, spec in LABEL_SCHEMA.items()
        if name not in EOS_LABELS
    }


def info_columns(protocol: GPAWProtocol | None = None) -> tuple[str, ...]:
    """The ``materials.csv`` columns of a tier (``gpaw-v1`` when None)."""
    return INFO_COLUMNS if protocol is None or has_eos(protocol) else SCF_INFO_COLUMNS


EOS_MAX_RMS_MEV_PER_ATOM = 2.0
"""meV/atom: above this RMS about the Birch-Murnaghan fit, a scan's B0 is not a label. The other 266
materials of gpaw-v1 after five sessions scatter by at most 1.4 meV/atom (median 0.015); Fe hcp,
whose largest volume converged to a magnetic state 0.29 eV above the curve, by 7.1 (its fit gave B0
= 935 GPa)."""


def eos_fit_rms(volumes: Sequence[float], energies: Sequence[float], natoms: int) -> float:
    """RMS (meV/atom) of the energies about the third-order Birch-Murnaghan fit through them.

    The BM energy is a cubic polynomial in V^(-2/3), so the fit is a least-squares cubic in that
    variable; with the protocol's five volumes one degree of freedom remains to see an outlier.
    """
    x = np.asarray(volumes, dtype=float) ** (-2.0 / 3.0)
    e = np.asarray(energies, dtype=float) / natoms
    residual = e - np.polyval(np.polyfit(x, e, 3), x)
    return float(np.sqrt(np.mean(residual**2)) * 1000.0)


def folder_protocol_hash(out_dir: str | Path) -> str:
    """Hash of the protocol a generation folder was last run with (``DIR/protocol.json``), else the
    current one."""
    path = Path(out_dir) / "protocol.json"
    if path.exists():
        return protocol_hash_of(json.loads(path.read_text()))
    return DFTProtocol().hash()


def load_results(out_dir: str | Path, protocol_hash: str | None = None) -> list[dict[str, Any]]:
    """Result records of ``DIR/results`` computed with ``protocol_hash``, or by default those the
    folder's protocol (``DIR/protocol.json``) accepts (see :meth:`DFTProtocol.accepts`)."""
    results_dir = Path(out_dir) / "results"
    if not results_dir.is_dir():
        raise RhopropError(
            f"{out_dir} has no results/ folder; run `rhoprop generate --out {out_dir}` first"
        )
    wanted = protocol_hash or folder_protocol_hash(out_dir)
    protocol = None if protocol_hash else _folder_protocol(out_dir)
    records = []
    for path in sorted(results_dir.glob("*.json")):
        rec = json.loads(path.read_text())
        if rec.get("protocol_hash") == wanted or (protocol is not None and protocol.accepts(rec)):
            records.append(rec)
    return records


def _folder_protocol(out_dir: str | Path) -> GPAWProtocol | None:
    """The folder's protocol as an object (the current default when there is none), None if it no
    longer parses."""
    path = Path(out_dir) / "protocol.json"
    if not path.exists():
        return DFTProtocol()
    try:
        return load_protocol(json.loads(path.read_text()))
    except RhopropError:
        return None


def folder_protocol(out_dir: str | Path) -> GPAWProtocol:
    """The protocol of a generation folder (``DIR/protocol.json``; ``gpaw-v1`` when there is none).

    A file that no longer parses (written by another rhoprop) gives the default protocol of the
    tier it names, which is enough to choose the tier's label columns."""
    protocol = _folder_protocol(out_dir)
    if protocol is not None:
        return protocol
    try:
        name = json.loads((Path(out_dir) / "protocol.json").read_text()).get("name", "gpaw-v1")
        return protocol_by_name(name)
    except (OSError, json.JSONDecodeError, AttributeError, RhopropError):
        return DFTProtocol()


def elemental_references(records: list[dict[str, Any]]) -> dict[str, tuple[float, str]]:
    """Element → (lowest energy per atom, id) over elemental crystals and molecules of the
    records."""
    refs: dict[str, tuple[float, str]] = {}
    for rec in records:
        if len(rec["composition"]) != 1:
            continue
        (el,) = rec["composition"]
        e = rec["scf"]["energy"] / rec["natoms"]
        if el not in refs or e < refs[el][0]:
            refs[el] = (e, rec["id"])
    return refs


def _blank(value: float | None) -> float:
    return math.nan if value is None else float(value)


def labels_frame(
    records: list[dict[str, Any]], protocol: GPAWProtocol | None = None
) -> pd.DataFrame:
    """One row of labels per crystal record (molecules excluded), indexed by id, with the label and
    info columns of the ``protocol``'s tier (``gpaw-v1`` when None)."""
    refs = elemental_references(records)
    rows = []
    for rec in records:
        if rec.get("kind", "crystal") != "crystal":
            continue
        s, natoms = rec["scf"], rec["natoms"]
        structure_density = _density(rec)
        comp = rec["composition"]
        if all(el in refs for el in comp):
            ef = (s["energy"] - sum(n * refs[el][0] for el, n in comp.items())) / natoms
        else:
            ef = math.nan
        el = rec.get("elastic") or {}
        eos = rec.get("eos")
        if eos is not None:
            scan = eos["scans"][-1]
            rms = eos_fit_rms(scan["volumes"], scan["energies"], natoms)
            volume, bulk = (
                eos["v0"],
                eos["bulk_modulus_gpa"] if rms <= EOS_MAX_RMS_MEV_PER_ATOM else math.nan,
            )
        else:
            rms, bulk, volume = math.nan, math.nan, _structure(rec).volume
        rows.append(
            {
                "id": rec["id"],
                "volume_per_atom": volume / natoms,
                "bulk_modulus": bulk,
                "density": structure_density,
                "total_energy": s["energy"] / natoms,
                "formation_energy": ef,
                "fermi_energy": s["fermi_energy"],
                "band_gap": s["band_gap"],
                "bandwidth": s["bandwidth"],
                "magnetic_moment": abs(s["magnetic_moment_cell"]) / natoms,
                "is_metal": int(bool(s["is_metal"])),
                "crystal_system": rec["symmetry"]["crystal_system"],
                "c11": _blank(el.get("c11")),
                "c12": _blank(el.get("c12")),
                "c44": _blank(el.get("c44")),
                "mechanically_stable": math.nan if not el else int(bool(el["mechanically_stable"])),
                "formula": rec["formula"],
                "prototype": rec["prototype"],
                "natoms": natoms,
                "spin_polarized": int(bool(rec["spin_polarized"])),
                "spacegroup_number": rec["symmetry"]["spacegroup_number"],
                "eos_fit_rms_mev_per_atom": round(rms, 4),
                "scf_max_force": s.get("max_force", math.nan),
                "chgnet_formation_energy": _blank(
                    (rec.get("chgnet") or {}).get("formation_energy")
                ),
            }
        )
    columns = ["id", *label_schema(protocol), *info_columns(protocol)]
    frame = pd.DataFrame(rows, columns=columns).set_index("id").sort_index()
    if "mechanically_stable" in frame:
        frame["mechanically_stable"] = frame["mechanically_stable"].astype("Int64")
    return frame


def _structure(rec: dict[str, Any]) -> Any:
    from pymatgen.core import Structure

    return Structure.from_dict(rec["structure"])


def _density(rec: dict[str, Any]) -> float:
    return float(_structure(rec).density)


def targets_schema(labels: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The labels (``LABEL_SCHEMA`` by default, a tier's from :func:`label_schema`) as a
    ``targets.json`` for ``rhoprop dataset build --schema`` (kinds, units, class order)."""
    targets = []
    for name, spec in (labels or LABEL_SCHEMA).items():
        entry: dict[str, Any] = {"name": name, "kind": spec["kind"], "unit": spec["unit"]}
        if "classes" in spec:
            entry["classes"] = [str(c) for c in spec["classes"]]
        if "minimum" in spec:
            entry["minimum"] = spec["minimum"]
        targets.append(entry)
    return {"format_version": 1, "targets": targets}


def assemble_labels(out_dir: str | Path, protocol_hash: str | None = None) -> pd.DataFrame:
    """Write the label files of a generation folder and return the full table (labels + info
    columns).

    Files: ``labels.csv`` (id + label columns only), ``targets.json`` (kinds/units/classes for
    ``rhoprop dataset build --schema``), ``labels.schema.json`` (units and exact definitions),
    ``materials.csv`` (formula, prototype, natoms, spin, space group) and ``references.json``.
    Once ``DIR/phonons`` holds phonon results (``rhoprop generate --phonons``),
    ``dynamically_stable`` and ``min_frequency`` (:data:`~rhoprop.dft.phonons.PHONON_LABEL_SCHEMA`)
    are label columns too.
    """
    from rhoprop.dft.phonons import PHONON_LABEL_SCHEMA, phonon_labels

    out = Path(out_dir)
    records = load_results(out, protocol_hash)
    protocol = folder_protocol(out)
    frame = labels_frame(records, protocol)
    columns = dict(label_schema(protocol))
    phonons = phonon_labels(out, records)
    if len(
        phonons
    ):  # DIR/phonons has results: their labels become columns (blank where not computed)
        frame = frame.join(phonons)
        columns.update(PHONON_LABEL_SCHEMA)
    atomic_write_text(out / "labels.csv", frame[list(columns)].to_csv(float_format="%.6g"))
    atomic_write_text(out / "materials.csv", frame[list(info_columns(protocol))].to_csv())
    atomic_write_text(
        out / "targets.json",
        json.dumps(targets_schema(columns), indent=1, ensure_ascii=False) + "\n",
    )
    schema = {
        "protocol_hash": protocol_hash or folder_protocol_hash(out),
        "protocol_name": protocol.name,
        "labels": columns,
        "info_columns_in_materials_csv": list(info_columns(protocol)),
    }
    atomic_write_text(
        out / "labels.schema.json", json.dumps(schema, indent=1, ensure_ascii=False) + "\n"
    )
    refs = {
        el: {"energy_per_atom": e, "id": mid}
        for el, (e, mid) in sorted(elemental_references(records).items())
    }
    atomic_write_text(out / "references.json", json.dumps(refs, indent=1) + "\n")
    return frame


def summary(frame: pd.DataFrame) -> dict[str, Any]:
    """Counts of a label table: materials, spin-polarized, metals, per prototype and crystal
    system."""
    return {
        "materials": len(frame),
        "spin_polarized": int(frame["spin_polarized"].sum()) if len(frame) else 0,
        "metals": int(frame["is_metal"].sum()) if len(frame) else 0,
        "with_formation_energy": int(frame["formation_energy"].notna().sum()) if len(frame) else 0,
        "prototypes": dict(Counter(frame["prototype"])),
        "crystal_systems": dict(Counter(frame["crystal_system"])),
    }
