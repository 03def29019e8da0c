"""Real labels for the analysis tests (no tests here): experimental properties of the elements.

Each row is one element: its reference crystal from ASE (``ase.build.bulk`` with ASE's reference
lattice constants) gives the volume per atom and the density; pymatgen's element data give the
measured density of the solid, molar volume, bulk and Young's moduli, melting point,
electronegativity and metallicity. Missing values are real (noble gases have no bulk modulus, most
elements have no Young's modulus in the table), as in a real DFT label table.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from ase.build import bulk
from ase.data import reference_states
from pymatgen.core.periodic_table import Element

from rhoprop.analysis.labels import LabelTable

AMU_PER_A3_TO_G_PER_CM3 = 1.66053906660


def _value(element: Element, name: str) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = getattr(element, name)
    return float(value) if value is not None else np.nan


def element_labels(max_z: int = 83) -> LabelTable:
    """A labels table of the elements H..Bi (one row per element, NaN where no data exist)."""
    rows = {}
    for z in range(1, max_z + 1):
        el = Element.from_Z(z)
        ref = reference_states[z] or {}
        symmetry = ref.get("symmetry")
        volume = density = np.nan
        try:
            atoms = bulk(el.symbol) if symmetry in ("fcc", "bcc", "hcp", "diamond") else None
        except ValueError:  # ASE lacks the data to build this reference crystal (e.g. Se)
            atoms, symmetry = None, None
        if atoms is not None:
            volume = atoms.get_volume() / len(atoms)
            density = atoms.get_masses().sum() / atoms.get_volume() * AMU_PER_A3_TO_G_PER_CM3
        solid = _value(el, "density_of_solid")
        rows[el.symbol] = {
            "volume_per_atom": volume,
            "density_ase": density,
            "density": solid / 1000.0 if np.isfinite(solid) else np.nan,
            "molar_volume": _value(el, "molar_volume"),
            "bulk_modulus": _value(el, "bulk_modulus"),
            "youngs_modulus": _value(el, "youngs_modulus"),
            "melting_point": _value(el, "melting_point"),
            "electronegativity": _value(el, "X"),
            "is_metal": float(el.is_metal),
            "structure": symmetry if symmetry in ("fcc", "bcc", "hcp", "diamond") else np.nan,
        }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "id"
    codes = {"bcc": 0.0, "diamond": 1.0, "fcc": 2.0, "hcp": 3.0}
    frame["structure"] = frame["structure"].map(codes)
    kinds = {c: "regression" for c in frame.columns}
    kinds.update(is_metal="binary", structure="multiclass")
    return LabelTable(
        labels=frame.astype(float),
        kinds=kinds,
        units={"volume_per_atom": "Å^3", "density_ase": "g/cm^3", "density": "g/cm^3"},
        classes={"is_metal": ("false", "true"), "structure": tuple(codes)},
        source="elements (ASE reference states + pymatgen element data)",
    )
