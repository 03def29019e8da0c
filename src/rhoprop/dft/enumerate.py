"""Candidates of the fast tier ``gpaw-scf-v1``: 63 elements, 39 structure types, ≤ 8 atoms.

The 15 prototypes of ``gpaw-v1`` (:mod:`rhoprop.dft.prototypes`, same ids and start structures) plus
24 structure types built with pymatgen from their space group and Wyckoff positions
(``Structure.from_spacegroup``), reduced to the standard primitive cell:

* elemental: ``beta_sn`` (A5, I4₁/amd), ``a7`` (α-As, R-3m);
* binary: ``nias`` (P6₃/mmc), ``wc`` (P-6m2), ``l10`` (CuAu, P4/mmm), ``rutile`` (P4₂/mnm),
  ``anatase`` (I4₁/amd), ``cdi2`` (P-3m1, layered), ``mos2`` (2H, P6₃/mmc, layered), ``alb2``
  (P6/mmm), ``mosi2`` (C11b, I4/mmm), ``c15_laves`` (MgCu₂, Fd-3m), ``a15`` (Cr₃Si, Pm-3n), ``d03``
  (BiF₃/Li₃Bi, Fm-3m), ``reo3`` (Pm-3m), ``cu3n`` (anti-ReO₃), ``cuprite`` (Cu₂O, Pn-3m),
  ``cacu5`` (P6/mmm);
* ternary: ``chalcopyrite`` (I-42d), ``delafossite`` (CuFeO₂, R-3m, layered), ``alpha_nafeo2``
  (LiCoO₂, R-3m, layered), ``antiperovskite`` (A₃BX, Pm-3m), ``thcr2si2`` (I4/mmm),
  ``inverse_heusler`` (Hg₂CuTi, F-43m).

Ids are the site-ordered formula (counts reduced) and the type, e.g. ``CuFeS2-chalcopyrite``. Start
structures: the type's lattice shape and internal parameters, scaled so that every site's nearest
neighbour sits at the sum of the two radii (metallic radii in intermetallic types, Slater's
otherwise); elemental cells at the element's molar volume. CHGNet relaxes all of it.

Order (deterministic for a seed): the ``gpaw-v1`` validation materials, then a round-robin over
the structure families drawing first every *plausible* composition (charge-balanced with common
oxidation states, or all metals: an intermetallic) and only then the rest; at each turn a family
takes, among the next :data:`WINDOW` of its shuffled list, the composition with the most elements
not yet seen in any compound, so all 63 elements appear within the first few hundred candidates.
Before the first compound of an element come its references (:func:`scf_reference_ids`: the seven
elemental structures, or the dimer of a gas); the gases' own solids come last.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
import warnings
from collections.abc import Iterator

import numpy as np
from pymatgen.core import Element, Lattice, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from rhoprop.dft.material import Candidate
from rhoprop.dft.prototypes import (
    ALKALI,
    CYCLE,
    ELEMENTAL_PROTOTYPES,
    ELEMENTS,
    GASES,
    METALS,
    SITES_PER_ELEMENT,
    VALIDATION,
    ReferencesFirst,
    _family_pools,
    _radius,
    build,
    charge_balanced,
    dimer_id,
    material_id,
)
from rhoprop.errors import RhopropError

SCF_ELEMENTS: tuple[str, ...] = tuple(ELEMENTS)
"""The 63 elements of the fast tier: H-Bi without the noble gases, the lanthanides after La, and Tc
(gpaw-data 1.2.1 ships no Tc setup)."""

WINDOW = 256
"""How far down its list a family looks for a composition with elements not yet seen."""


@dataclasses.dataclass(frozen=True)
class StructureType:
    """A structure type given by space group and Wyckoff positions (one role index per site).

    ``lattice`` is (kind, a, c) with kind ``cubic``, ``hexagonal`` or ``tetragonal`` (Å; only its
    shape matters, the start volume comes from radii); ``metallic``: use metallic radii.
    """

    name: str
    spacegroup: str
    lattice: tuple[str, float, float]
    sites: tuple[tuple[int, tuple[float, float, float]], ...]
    metallic: bool = False


def _t(
    name: str,
    spacegroup: str,
    lattice: tuple[str, float, float],
    sites: list[tuple[int, tuple[float, float, float]]],
    metallic: bool = False,
) -> StructureType:
    return StructureType(name, spacegroup, lattice, tuple(sites), metallic)


# fmt: off
STRUCTURE_TYPES: dict[str, StructureType] = {t.name: t for t in (
    _t("beta_sn", "I4_1/amd", ("tetragonal", 5.83, 3.18), [(0, (0, 0, 0))], metallic=True),
    _t("a7", "R-3m", ("hexagonal", 3.76, 10.55), [(0, (0, 0, 0.227))]),
    _t("nias", "P6_3/mmc", ("hexagonal", 3.62, 5.03), [(0, (0, 0, 0)), (1, (1 / 3, 2 / 3, 0.25))]),
    _t("wc", "P-6m2", ("hexagonal", 2.91, 2.84), [(0, (0, 0, 0)), (1, (1 / 3, 2 / 3, 0.5))]),
    _t("l10", "P4/mmm", ("tetragonal", 2.80, 3.70), [(0, (0, 0, 0)), (1, (0.5, 0.5, 0.5))],
       metallic=True),
    _t("rutile", "P4_2/mnm", ("tetragonal", 4.59, 2.96), [(0, (0, 0, 0)), (1, (0.305, 0.305, 0))]),
    _t("anatase", "I4_1/amd", ("tetragonal", 3.78, 9.51), [(0, (0, 0, 0)), (1, (0, 0, 0.2083))]),
    _t("cdi2", "P-3m1", ("hexagonal", 4.24, 6.84), [(0, (0, 0, 0)), (1, (1 / 3, 2 / 3, 0.25))]),
    _t("mos2", "P6_3/mmc", ("hexagonal", 3.16, 12.30),
       [(0, (1 / 3, 2 / 3, 0.25)), (1, (1 / 3, 2 / 3, 0.621))]),
    _t("alb2", "P6/mmm", ("hexagonal", 3.01, 3.26), [(0, (0, 0, 0)), (1, (1 / 3, 2 / 3, 0.5))],
       metallic=True),
    _t("mosi2", "I4/mmm", ("tetragonal", 3.20, 7.85), [(0, (0, 0, 0)), (1, (0, 0, 1 / 3))],
       metallic=True),
    _t("c15_laves", "Fd-3m", ("cubic", 7.0, 7.0), [(0, (0, 0, 0)), (1, (5 / 8, 5 / 8, 5 / 8))],
       metallic=True),
    _t("a15", "Pm-3n", ("cubic", 4.7, 4.7), [(0, (0.25, 0, 0.5)), (1, (0, 0, 0))], metallic=True),
    _t("d03", "Fm-3m", ("cubic", 6.0, 6.0),
       [(0, (0.5, 0.5, 0.5)), (0, (0.25, 0.25, 0.25)), (1, (0, 0, 0))], metallic=True),
    _t("reo3", "Pm-3m", ("cubic", 3.75, 3.75), [(0, (0, 0, 0)), (1, (0.5, 0, 0))]),
    _t("cu3n", "Pm-3m", ("cubic", 3.82, 3.82), [(0, (0.5, 0, 0)), (1, (0, 0, 0))]),
    _t("cuprite", "Pn-3m", ("cubic", 4.27, 4.27), [(0, (0.25, 0.25, 0.25)), (1, (0, 0, 0))]),
    _t("cacu5", "P6/mmm", ("hexagonal", 5.09, 4.09),
       [(0, (0, 0, 0)), (1, (1 / 3, 2 / 3, 0)), (1, (0.5, 0, 0.5))], metallic=True),
    _t("chalcopyrite", "I-42d", ("tetragonal", 5.29, 10.40),
       [(0, (0, 0, 0)), (1, (0, 0, 0.5)), (2, (0.25, 0.25, 0.125))]),
    _t("delafossite", "R-3m", ("hexagonal", 3.03, 17.10),
       [(0, (0, 0, 0)), (1, (0, 0, 0.5)), (2, (0, 0, 0.1066))]),
    _t("alpha_nafeo2", "R-3m", ("hexagonal", 2.82, 14.05),
       [(0, (0, 0, 0.5)), (1, (0, 0, 0)), (2, (0, 0, 0.2396))]),
    _t("antiperovskite", "Pm-3m", ("cubic", 3.90, 3.90),
       [(0, (0, 0.5, 0.5)), (1, (0, 0, 0)), (2, (0.5, 0.5, 0.5))]),
    _t("thcr2si2", "I4/mmm", ("tetragonal", 4.00, 10.50),
       [(0, (0, 0, 0)), (1, (0, 0.5, 0.25)), (2, (0, 0, 0.375))]),
    _t("inverse_heusler", "F-43m", ("cubic", 6.0, 6.0),
       [(0, (0, 0, 0)), (0, (0.25, 0.25, 0.25)), (1, (0.5, 0.5, 0.5)), (2, (0.75, 0.75, 0.75))],
       metallic=True),
)}
# fmt: on
"""The structure types the fast tier adds to ``gpaw-v1``'s prototypes (space group, sites)."""

SCF_ELEMENTAL_TYPES: tuple[str, ...] = (*ELEMENTAL_PROTOTYPES, "beta_sn", "a7")
"""Elemental structures of the fast tier: its formation-energy references (gases: their dimer)."""

NEW_CYCLE: tuple[str, ...] = (
    "nias",
    "rutile",
    "l10",
    "chalcopyrite",
    "cdi2",
    "a15",
    "delafossite",
    "wc",
    "c15_laves",
    "anatase",
    "alpha_nafeo2",
    "d03",
    "antiperovskite",
    "mos2",
    "alb2",
    "thcr2si2",
    "reo3",
    "inverse_heusler",
    "cu3n",
    "cuprite",
    "mosi2",
    "cacu5",
)
"""The new compound types, once each per round-robin cycle after ``gpaw-v1``'s :data:`CYCLE`."""

_TM3 = ["Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn"]
_TM4 = ["Y", "Zr", "Nb", "Mo", "Ru", "Rh", "Pd", "Ag", "Cd"]
_TM5 = ["La", "Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg"]


def _pairs(a: list[str], b: list[str]) -> list[tuple[str, ...]]:
    return [(x, y) for x in a for y in b if x != y]


def _triples(a: list[str], b: list[str], c: list[str]) -> list[tuple[str, ...]]:
    return [(x, y, z) for x in a for y in b for z in c if len({x, y, z}) == 3]


# fmt: off
def _new_pools() -> dict[str, list[tuple[str, ...]]]:
    """Element tuples (one element per role, in role order) of every new compound type."""
    alkali = list(ALKALI)
    return {
        "nias": _pairs(_TM3 + _TM4 + _TM5 + ["Sn", "Ge", "In"],
                       ["S", "Se", "Te", "P", "As", "Sb", "Bi", "Sn", "Ge", "Si", "Ga"]),
        "wc": _pairs(["Ti", "Zr", "Hf", "V", "Nb", "Ta", "Cr", "Mo", "W", "Re", "Ru", "Os", "Sc",
                      "Y", "Mn", "Fe", "Co", "Ni"], ["B", "C", "N", "P", "Si", "Al", "Ga"]),
        "l10": _pairs(["Fe", "Co", "Ni", "Cu", "Mn", "Cr", "V", "Ti", "Zr", "Hf", "Sc", "Mg", "Al",
                       "Li", "Zn", "Cd"],
                      ["Pt", "Pd", "Au", "Ag", "Ir", "Rh", "Al", "Ga", "In", "Zn", "Hg", "Ni", "Cu",
                       "Sn", "Ti"]),
        "rutile": _pairs(["Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Zn", "Mg", "Nb", "Ta", "Mo",
                          "W", "Ru", "Os", "Rh", "Ir", "Re", "Sn", "Pb", "Ge", "Si", "Te", "Zr",
                          "Hf", "Pd", "Pt", "Cd", "Ca"], ["O", "F", "S", "Cl"]),
        "anatase": _pairs(["Ti", "Zr", "Hf", "Sn", "Ge", "Si", "V", "Nb", "Ta", "Mn", "Ru", "Ir",
                           "Pb", "Te", "Mo", "W", "Cr"], ["O", "S", "F"]),
        "cdi2": _pairs(["Mg", "Ca", "Sr", "Ba", "Cd", "Zn", "Mn", "Fe", "Co", "Ni", "Ti", "Zr",
                        "Hf", "Sn", "Pb", "Pt", "Pd", "V", "Cr", "Nb", "Ta", "Mo", "W", "Re", "Rh",
                        "Ir", "Sc", "Y", "La", "Cu", "Ag", "Hg", "Ge"],
                       ["Cl", "Br", "I", "S", "Se", "Te", "F", "O", "H"]),
        "mos2": _pairs(["Mo", "W", "Nb", "Ta", "Ti", "Zr", "Hf", "V", "Cr", "Re", "Sn", "Pt", "Pd",
                        "Sc", "Y", "Ga", "In"], ["S", "Se", "Te", "O", "Cl", "Br", "I"]),
        "alb2": _pairs(["Mg", "Al", "Sc", "Y", "La", "Ti", "Zr", "Hf", "V", "Nb", "Ta", "Cr", "Mo",
                        "W", "Mn", "Re", "Ca", "Sr", "Ba", "Li", "Na", "Ru", "Os", "Be", "Ga"],
                       ["B", "Be", "Si", "Ge", "Ga", "Al", "C", "Sn", "Sb", "In", "Hg", "Cd",
                        "Zn"]),
        "mosi2": _pairs(["Mo", "W", "Re", "Cr", "Ti", "Zr", "Hf", "V", "Nb", "Ta", "Mn", "Fe", "Co",
                         "Ni", "Cu", "Pd", "Pt", "Ag", "Au", "Ca", "Sr", "Ba"],
                        ["Si", "Ge", "Sn", "Al", "Ga", "Be", "B", "Zn", "Cd", "In", "Hg"]),
        "c15_laves": _pairs(["Mg", "Ca", "Sr", "Ba", "Sc", "Y", "La", "Ti", "Zr", "Hf", "Nb", "Ta",
                             *alkali],
                            ["Al", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "V", "Cr", "Mo", "W", "Re",
                             "Ru", "Os", "Rh", "Ir", "Pt", "Au", "Ag", "Pd", "Be", "Cd"]),
        "a15": _pairs(["Nb", "V", "Ta", "Cr", "Mo", "W", "Ti", "Zr", "Hf", "Re", "Mn", "Sc"],
                      ["Sn", "Ge", "Si", "Al", "Ga", "In", "Sb", "Pt", "Au", "Ir", "Os", "Rh", "Pb",
                       "Bi", "As", "Pd", "Ru", "Tl", "Hg", "Co", "Ni"]),
        "d03": _pairs([*alkali, "Cu", "Ag", "Fe", "Ni", "Co", "Mn", "Al", "Ti", "Mg", "Cr", "V",
                       "Pd", "Pt", "Au", "H", "F"],
                      ["Bi", "Sb", "As", "P", "N", "Al", "Si", "Ge", "Sn", "Ga", "In", "Pb", "Zn",
                       "Pd", "Pt", "Au", "Ti", "Cr", "V", "Y", "Sc", "Fe"]),
        "reo3": _pairs(["Re", "W", "Mo", "Sc", "Al", "Ga", "In", "Fe", "Co", "Ti", "V", "Cr", "Nb",
                        "Ta", "Y", "La", "Bi", "Sb", "Mn", "Ni", "Ru", "Rh", "Ir", "Os", "Tl", "Pd",
                        "Pt", "Au"], ["O", "F", "Cl", "Br", "I", "H", "N", "S"]),
        "cu3n": _pairs(["Cu", "Ag", "Au", *alkali, "Mg", "Ca", "Sc", "Ni", "Co", "Fe", "Mn", "Pd",
                        "Pt", "Zn", "Cd", "H"], ["N", "P", "As", "Sb", "Bi", "O", "S", "C", "B"]),
        "cuprite": _pairs(["Cu", "Ag", "Au", *alkali, "Tl", "Hg", "Pd", "Pt", "Zn", "Cd", "Be",
                           "Mg"], ["O", "S", "Se", "Te", "F", "Cl", "N"]),
        "cacu5": _pairs(["Ca", "Sr", "Ba", "La", "Y", "Sc", "Zr", "Hf", "Mg", "Li", "Na", "K"],
                        ["Cu", "Ni", "Co", "Zn", "Pt", "Pd", "Au", "Ag", "Fe", "Mn", "Al", "Ga",
                         "Rh", "Ir", "Be", "Cd"]),
        "chalcopyrite": _triples(["Cu", "Ag", "Li", "Na", "Au", "K", "Tl"],
                                 ["Al", "Ga", "In", "Fe", "Tl", "B", "Sc", "Y", "La", "Cr", "V",
                                  "Ti", "Bi", "Sb", "Co", "Mn", "Rh"], ["S", "Se", "Te", "O"])
        + _triples(["Zn", "Cd", "Mg", "Be", "Mn", "Ca", "Hg"],
                   ["Si", "Ge", "Sn", "Ti", "Zr", "Hf", "Pb"], ["N", "P", "As", "Sb"]),
        "delafossite": _triples(["Cu", "Ag", "Pd", "Pt", "Au", "Hg", "Li", "Na", "Tl"],
                                ["Al", "Ga", "In", "Sc", "Y", "La", "Fe", "Co", "Cr", "Rh", "Ti",
                                 "V", "Mn", "Ni", "B", "Bi", "Ir", "Ru"], ["O", "S", "Se"]),
        "alpha_nafeo2": _triples([*alkali, "Ag", "Cu", "Tl"],
                                 ["Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Al", "Ga", "In",
                                  "Y", "La", "Rh", "Bi", "Sb", "Mo", "Ru", "Nb", "Ir", "Zr", "Hf",
                                  "Ta", "W", "Cu", "Ag", "Au"], ["O", "S", "Se", "Te", "F"]),
        "antiperovskite": _triples([*alkali[:4], "Ca", "Sr", "Ba", "Mg", "Mn", "Fe", "Co", "Ni",
                                    "Cu", "Ti", "Cr", "Zn", "Ga", "Pd", "Pt", "Ag", "V", "Sc"],
                                   ["Cl", "Br", "I", "F", "Bi", "Sb", "As", "P", "Sn", "Ge", "Al",
                                    "Ga", "Zn", "In", "Cu", "Ni", "Pd", "Rh", "Pb", "Si", "Hg",
                                    "Au", "Ag", "Tl"], ["O", "N", "C", "B", "S", "H", "F"]),
        "thcr2si2": _triples(["Ca", "Sr", "Ba", "K", "Rb", "Cs", "La", "Y", "Mg", "Na", "Sc", "Li"],
                             ["Fe", "Co", "Ni", "Cu", "Zn", "Mn", "Cr", "Ru", "Rh", "Pd", "Ir",
                              "Pt", "Al", "Ga", "Cd", "Ag", "Au", "Os", "Re", "Be", "Mg", "Li"],
                             ["Si", "Ge", "As", "P", "Sb", "Sn", "Ga", "Al", "Bi", "S", "Se", "Te",
                              "N", "B"]),
        "inverse_heusler": _triples(["Mn", "Fe", "Co", "Ni", "Cu", "Ti", "V", "Cr", "Sc", "Zn",
                                     "Li", "Ag"],
                                    ["Mn", "Fe", "Co", "Ni", "Cu", "Ti", "V", "Cr", "Ru", "Rh",
                                     "Pd", "Ir", "Pt", "Zr", "Sc"],
                                    ["Al", "Ga", "In", "Si", "Ge", "Sn", "Sb", "As", "Mg", "Zn",
                                     "Pb", "Bi", "P"]),
    }
# fmt: on


@dataclasses.dataclass(frozen=True)
class _Frame:
    """A structure type's standard primitive cell: lattice, fractional coordinates, the role of
    every site, its nearest neighbour (site index, distance) and the reduced count of every role."""

    matrix: np.ndarray
    coords: np.ndarray
    roles: tuple[int, ...]
    nearest: tuple[tuple[int, float], ...]
    counts: tuple[int, ...]


_PLACEHOLDERS = ("Li", "Be", "B")


@functools.cache
def _frame(name: str) -> _Frame:
    """Build a structure type once with placeholder species, reduced to its standard primitive cell.

    The conventional cell comes from the space group and Wyckoff positions through ASE's
    ``ase.spacegroup.crystal`` (ITA settings, origin choice 1; the same cells as pymatgen's
    ``Structure.from_spacegroup``, whose space-group set-up costs 0.3 s per group against 0.01 s).
    """
    from ase.spacegroup import crystal
    from pymatgen.io.ase import AseAtomsAdaptor

    t = STRUCTURE_TYPES[name]
    kind, a, c = t.lattice
    gamma = 120.0 if kind == "hexagonal" else 90.0
    conv = crystal(
        [_PLACEHOLDERS[r] for r, _ in t.sites],
        [xyz for _, xyz in t.sites],
        spacegroup=t.spacegroup.replace("_", ""),
        cellpar=[a, a, c, 90.0, 90.0, gamma],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prim = SpacegroupAnalyzer(
            AseAtomsAdaptor.get_structure(conv), symprec=1e-3
        ).get_primitive_standard_structure()
    roles = tuple(_PLACEHOLDERS.index(site.specie.symbol) for site in prim)
    reach = 1.5 * max(prim.lattice.abc)
    nearest = []
    for neighbours in prim.get_all_neighbors(reach):
        best = min(neighbours, key=lambda n: n.nn_distance)
        nearest.append((int(best.index), float(best.nn_distance)))
    raw = [roles.count(r) for r in range(max(roles) + 1)]
    g = functools.reduce(math.gcd, raw)
    return _Frame(
        prim.lattice.matrix.copy(),
        prim.frac_coords.copy(),
        roles,
        tuple(nearest),
        tuple(n // g for n in raw),
    )


def type_natoms(name: str) -> int:
    """Atoms in the primitive cell of a structure type (new types and ``gpaw-v1``'s prototypes)."""
    if name in STRUCTURE_TYPES:
        return len(_frame(name).roles)
    return len(build(name, tuple(_PLACEHOLDERS[: len(SITES_PER_ELEMENT[name])])))


def build_type(name: str, elements: tuple[str, ...]) -> Structure:
    """Standard primitive cell of a new structure type decorated with ``elements`` (one per role),
    scaled so that nearest neighbours sit at the sum of the radii (an element: its molar volume)."""
    frame = _frame(name)
    if len(elements) != len(frame.counts):
        raise RhopropError(
            f"structure type {name} takes {len(frame.counts)} element(s), got {elements}"
        )
    species = [elements[r] for r in frame.roles]
    metallic = STRUCTURE_TYPES[name].metallic
    scales = [
        (_radius(species[i], metallic) + _radius(species[j], metallic)) / d
        for i, (j, d) in enumerate(frame.nearest)
    ]
    structure = Structure(Lattice(frame.matrix * float(np.mean(scales))), species, frame.coords)
    if len(set(species)) == 1 and Element(species[0]).molar_volume:
        structure.scale_lattice(
            float(Element(species[0]).molar_volume) / 0.602214076 * len(structure)
        )
    return structure


def scf_material_id(prototype: str, elements: tuple[str, ...]) -> str:
    """Id of an enumerated material: ``gpaw-v1``'s ids for its prototypes, else the site-ordered
    reduced formula and the type (``CuFeS2-chalcopyrite``; an element alone: ``Sn-beta_sn``)."""
    if prototype not in STRUCTURE_TYPES:
        return material_id(prototype, elements)
    if len(set(elements)) == 1:
        return f"{elements[0]}-{prototype}"
    counts = _frame(prototype).counts
    return (
        "".join(el + (str(n) if n > 1 else "") for el, n in zip(elements, counts, strict=True))
        + f"-{prototype}"
    )


def build_any(prototype: str, elements: tuple[str, ...]) -> Structure:
    """Start structure of any enumerated type: a ``gpaw-v1`` prototype or a new structure type."""
    return (
        build_type(prototype, elements)
        if prototype in STRUCTURE_TYPES
        else build(prototype, elements)
    )


def _counts(prototype: str) -> tuple[int, ...]:
    return (
        _frame(prototype).counts if prototype in STRUCTURE_TYPES else SITES_PER_ELEMENT[prototype]
    )


def plausible(prototype: str, elements: tuple[str, ...]) -> bool:
    """A composition drawn first: charge-balanced with the elements' common oxidation states (one
    negative at least), or made of metals only (an intermetallic: charge balance says nothing)."""
    return all(el in METALS for el in elements) or charge_balanced(elements, _counts(prototype))


def scf_reference_ids(element: str) -> tuple[str, ...]:
    """Ids of the fast tier's formation-energy references of an element: the dimer of a gas (H, N,
    O, F, Cl, Br, I), else its seven elemental structures (:data:`SCF_ELEMENTAL_TYPES`)."""
    if element in GASES:
        return (dimer_id(element),)
    return tuple(scf_material_id(proto, (element,)) for proto in SCF_ELEMENTAL_TYPES)


def compound_families(max_atoms: int = 8) -> list[str]:
    """The fast tier's compound families with at most ``max_atoms`` atoms per primitive cell."""
    families = list(dict.fromkeys([*CYCLE, *NEW_CYCLE]))
    return [f for f in families if type_natoms(f) <= max_atoms]


def _pick(entries: list[tuple[str, ...]], seen: set[str]) -> tuple[str, ...]:
    """Remove and return the entry among the first :data:`WINDOW` with the most unseen elements."""
    if len(seen) >= len(SCF_ELEMENTS):
        return entries.pop(0)
    best, best_new = 0, -1
    for i, entry in enumerate(entries[:WINDOW]):
        new = sum(el not in seen for el in entry)
        if new > best_new:
            best, best_new = i, new
            if new == len(entry):
                break
    return entries.pop(best)


def enumerate_scf_candidates(seed: int = 0, max_atoms: int = 8) -> Iterator[Candidate]:
    """Yield the fast tier's candidates in their fixed order (see the module docstring): the
    validation set and its references, plausible compositions round-robin over the families with
    unseen elements first, then the rest, then the gases' solids. ``max_atoms`` (≥ 2) drops the
    types with larger primitive cells."""
    if max_atoms < 2:
        raise RhopropError(
            f"max_atoms must be at least 2 (elemental references have 2 atoms), got {max_atoms}"
        )
    rng = random.Random(seed)
    families = compound_families(max_atoms)
    pools = {**_family_pools(), **_new_pools()}
    first: dict[str, list[tuple[str, ...]]] = {}
    rest: dict[str, list[tuple[str, ...]]] = {}
    for family in families:
        tuples = sorted(set(pools[family]))
        rng.shuffle(tuples)
        first[family] = [t for t in tuples if plausible(family, t)]
        rest[family] = [t for t in tuples if not plausible(family, t)]
    elemental = [p for p in SCF_ELEMENTAL_TYPES if type_natoms(p) <= max_atoms]

    def make(prototype: str, elements: tuple[str, ...]) -> Candidate:
        source = (
            f"spacegroup {STRUCTURE_TYPES[prototype].spacegroup}"
            if prototype in STRUCTURE_TYPES
            else "prototype"
        )
        return Candidate(
            scf_material_id(prototype, elements), build_any(prototype, elements), prototype, source
        )

    refs = ReferencesFirst(elemental, scf_material_id, make)
    yield from refs.validation([(p, e) for p, e in VALIDATION if type_natoms(p) <= max_atoms])
    cycle = [f for f in [*CYCLE, *NEW_CYCLE] if f in first]
    for lists in (first, rest):
        while any(lists[f] for f in cycle):
            for family in cycle:
                if lists[family]:
                    yield from refs.emit(family, _pick(lists[family], refs.seen_elements))
    yield from refs.gas_solids()


__all__ = [
    "SCF_ELEMENTAL_TYPES",
    "SCF_ELEMENTS",
    "STRUCTURE_TYPES",
    "StructureType",
    "build_any",
    "build_type",
    "compound_families",
    "enumerate_scf_candidates",
    "plausible",
    "scf_material_id",
    "scf_reference_ids",
    "type_natoms",
]
