"""Deterministic enumeration of prototype crystals (≤ 5 atoms per primitive cell) for the built-in
dataset.

Prototypes (cubic ones with cubic axes along x, y, z; site order = the order of elements in the id):

* elemental: ``fcc``, ``bcc``, ``hcp`` (ideal c/a), ``diamond``, ``sc``;
* binary: ``rocksalt`` AB, ``cscl`` AB, ``zincblende`` AB, ``wurtzite`` AB (ideal c/a, u = 3/8),
  ``fluorite`` AB2 (A on the fcc site), ``antifluorite`` A2B (B on the fcc site), ``l12`` A3B;
* ternary: ``perovskite`` ABX3 (cubic, A at the corner), ``half_heusler`` XYZ (X at ¼¼¼, Y at ½½½,
  Z at 000), ``full_heusler`` X2YZ (X at ¼¼¼ and ¾¾¾).

Start lattice constants come from radii (pymatgen element data): every site's nearest neighbour
distance is set to the sum of the two radii (metallic radii in metallic prototypes, Slater atomic
radii otherwise) and the lattice constant is the mean over sites; elemental solids start at the
element's experimental molar volume. The EOS step pre-centres on zero pressure from there.
"""

from __future__ import annotations

import itertools
import random
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
from pymatgen.core import Element, Lattice, Structure

from rhoprop.dft.material import Candidate
from rhoprop.dft.protocol import MAGNETIC_ELEMENTS

FCC = 0.5 * np.array([[0.0, 1, 1], [1, 0, 1], [1, 1, 0]])
BCC = 0.5 * np.array([[-1.0, 1, 1], [1, -1, 1], [1, 1, -1]])
SC = np.eye(3)
HCP_C_OVER_A = float(np.sqrt(8 / 3))

# Element tables laid out by hand, several symbols a line (ruff format would put one a line).
# fmt: off
ALKALI = ["Li", "Na", "K", "Rb", "Cs"]
ALKALINE_EARTH = ["Be", "Mg", "Ca", "Sr", "Ba"]
TM = ["Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Y", "Zr", "Nb", "Mo", "Ru", "Rh",
      "Pd", "Ag", "Cd", "La", "Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg"]
P_METALS = ["Al", "Ga", "In", "Tl", "Sn", "Pb", "Bi"]
ELEMENTS = sorted(
    set(ALKALI + ALKALINE_EARTH + TM + P_METALS
        + ["H", "B", "C", "N", "O", "F", "Si", "P", "S", "Cl", "Ge", "As", "Se", "Br", "Sb", "Te",
           "I"]),
    key=lambda s: Element(s).Z,
)
# fmt: on
METALS = ALKALI + ALKALINE_EARTH + TM + P_METALS
METALLIC_PROTOTYPES = {"fcc", "bcc", "hcp", "sc", "cscl", "l12", "half_heusler", "full_heusler"}
ELEMENTAL_PROTOTYPES = ("fcc", "bcc", "sc", "hcp", "diamond")
GASES = ("H", "N", "O", "F", "Cl", "Br", "I")
"""Elements whose formation-energy reference is the dimer molecule (their solids come last)."""
DIMER_BOX = (10.0, 10.5, 11.0)


def _frame(prototype: str) -> tuple[np.ndarray, list[list[float]]]:
    """Lattice (a = 1) and fractional site coordinates of a prototype, sites in id order."""
    q, h = 0.25, 0.5
    hexagonal = Lattice.hexagonal(1.0, HCP_C_OVER_A).matrix
    frames: dict[str, tuple[np.ndarray, list[list[float]]]] = {
        "fcc": (FCC, [[0, 0, 0]]),
        "bcc": (BCC, [[0, 0, 0]]),
        "sc": (SC, [[0, 0, 0]]),
        "hcp": (hexagonal, [[1 / 3, 2 / 3, q], [2 / 3, 1 / 3, 3 * q]]),
        "diamond": (FCC, [[0, 0, 0], [q, q, q]]),
        "rocksalt": (FCC, [[0, 0, 0], [h, h, h]]),
        "zincblende": (FCC, [[0, 0, 0], [q, q, q]]),
        "cscl": (SC, [[0, 0, 0], [h, h, h]]),
        "wurtzite": (
            hexagonal,
            [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, h], [1 / 3, 2 / 3, 3 / 8], [2 / 3, 1 / 3, 7 / 8]],
        ),
        "fluorite": (FCC, [[0, 0, 0], [q, q, q], [3 * q, 3 * q, 3 * q]]),
        "antifluorite": (FCC, [[q, q, q], [3 * q, 3 * q, 3 * q], [0, 0, 0]]),
        "l12": (SC, [[0, h, h], [h, 0, h], [h, h, 0], [0, 0, 0]]),
        "perovskite": (SC, [[0, 0, 0], [h, h, h], [h, h, 0], [h, 0, h], [0, h, h]]),
        "half_heusler": (FCC, [[q, q, q], [h, h, h], [0, 0, 0]]),
        "full_heusler": (FCC, [[q, q, q], [3 * q, 3 * q, 3 * q], [h, h, h], [0, 0, 0]]),
    }
    return frames[prototype]


SITES_PER_ELEMENT = {
    "fcc": (1,),
    "bcc": (1,),
    "sc": (1,),
    "hcp": (2,),
    "diamond": (2,),
    "rocksalt": (1, 1),
    "zincblende": (1, 1),
    "cscl": (1, 1),
    "wurtzite": (2, 2),
    "fluorite": (1, 2),
    "antifluorite": (2, 1),
    "l12": (3, 1),
    "perovskite": (1, 1, 3),
    "half_heusler": (1, 1, 1),
    "full_heusler": (2, 1, 1),
}


def _radius(symbol: str, metallic: bool) -> float:
    """Radius (Å) used for start volumes: metallic radius in metallic prototypes, else Slater's
    atomic radius."""
    el = Element(symbol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metallic_radius = el.metallic_radius if metallic and el.is_metal else None
    if metallic_radius:
        return float(metallic_radius)
    return float(el.atomic_radius or el.atomic_radius_calculated or 1.5)


def build(prototype: str, elements: tuple[str, ...]) -> Structure:
    """Build ``prototype`` decorated with ``elements`` (one per sublattice) at a radius-based
    lattice constant."""
    counts = SITES_PER_ELEMENT[prototype]
    if len(counts) != len(elements):
        raise ValueError(f"prototype {prototype} takes {len(counts)} element(s), got {elements}")
    species = [el for el, n in zip(elements, counts, strict=True) for _ in range(n)]
    matrix, coords = _frame(prototype)
    unit = Structure(Lattice(matrix), species, coords)
    metallic = prototype in METALLIC_PROTOTYPES
    dist = unit.distance_matrix + np.eye(len(unit)) * 1e9
    if len(unit) == 1:
        d1 = min(*Lattice(matrix).abc, float(np.linalg.norm(matrix.sum(0))))
        d1 = min(
            d1, *(float(np.linalg.norm(matrix[i] - matrix[j])) for i in range(3) for j in range(i))
        )
        scales = [2 * _radius(species[0], metallic) / d1]
    else:
        scales = []
        for i in range(len(unit)):
            j = int(np.argmin(dist[i]))
            scales.append(
                (_radius(species[i], metallic) + _radius(species[j], metallic)) / dist[i, j]
            )
    a = float(np.mean(scales))
    structure = Structure(Lattice(matrix * a), species, coords)
    molar_volume = Element(species[0]).molar_volume if len(set(species)) == 1 else None
    if molar_volume:
        structure.scale_lattice(float(molar_volume) / 0.602214076 * len(structure))
    return structure


def build_dimer(symbol: str) -> Structure:
    """A diatomic molecule in an orthorhombic box (Å), bond length twice Slater's radius, along
    z."""
    bond = 2 * _radius(symbol, metallic=False)
    a, b, c = DIMER_BOX
    return Structure(
        Lattice.orthorhombic(a, b, c),
        [symbol, symbol],
        [[0.5, 0.5, 0.5 - bond / 2 / c], [0.5, 0.5, 0.5 + bond / 2 / c]],
        coords_are_cartesian=False,
    )


def material_id(prototype: str, elements: tuple[str, ...]) -> str:
    """Id of a prototype material: site-ordered formula and prototype, e.g.
    ``NiTiSn-half_heusler``."""
    counts = SITES_PER_ELEMENT[prototype]
    formula = "".join(
        el + (str(n) if n > 1 else "") for el, n in zip(elements, counts, strict=True)
    )
    if prototype in ELEMENTAL_PROTOTYPES:
        formula = elements[0]
    return f"{formula}-{prototype}"


def dimer_id(symbol: str) -> str:
    """Id of an element's dimer molecule (the formation-energy reference of a gas), e.g.
    ``O2-dimer``."""
    return f"{symbol}2-dimer"


def charge_balanced(elements: tuple[str, ...], counts: tuple[int, ...]) -> bool:
    """True when some combination of the elements' common oxidation states (one negative at least),
    weighted by the site ``counts``, sums to 0."""
    states = [Element(el).common_oxidation_states or (0,) for el in elements]
    for combo in itertools.product(*states):
        if (
            any(q < 0 for q in combo)
            and sum(n * q for n, q in zip(counts, combo, strict=True)) == 0
        ):
            return True
    return False


def _balanced(prototype: str, elements: tuple[str, ...]) -> bool:
    """True when some combination of the elements' common oxidation states (one negative at least)
    sums to 0."""
    return charge_balanced(elements, SITES_PER_ELEMENT[prototype])


def _family_pools() -> dict[str, Sequence[tuple[str, ...]]]:
    """Element tuples per compound prototype (chemically motivated pools, hypothetical ones
    included)."""
    # Element pools laid out by hand, several symbols a line (ruff format would put one a line).
    # fmt: off
    halides = ["F", "Cl", "Br", "I"]
    chalcogens = ["O", "S", "Se", "Te"]
    pnictogens = ["N", "P", "As", "Sb"]
    rs_cations = [*ALKALI, *ALKALINE_EARTH,
                  "Sc", "Y", "La", "Ti", "Zr", "Hf", "V", "Nb", "Ta", "Cr", "Mn", "Fe", "Co", "Ni",
                  "Cu", "Zn", "Cd", "Ag", "Sn", "Pb"]
    fluorite_oxides = ["Zr", "Hf", "Ti", "Sn", "Pb", "Ge", "Si", "Mn", "Nb", "Mo", "W", "Ru", "Ir",
                       "Pt"]
    l12_a = ["Ni", "Pt", "Pd", "Cu", "Au", "Al", "Fe", "Co", "Ir", "Rh", "Ag", "Ti", "Zr", "Mn",
             "Cr", "V", "Ga", "Li"]
    l12_b = ["Al", "Ga", "In", "Ti", "Sn", "Mn", "Fe", "Zr", "Nb", "Ta", "Si", "Ge", "Sc", "Y",
             "Hf", "V", "Pt", "Au", "Ni", "Co", "Cr", "Mg", "Zn", "Pb", "Sb"]
    pv_b = ["Ti", "Zr", "Hf", "V", "Nb", "Ta", "Cr", "Mn", "Fe", "Co", "Ni", "Sn", "Ge", "Al", "Ga",
            "Sc", "Mg", "Zn", "Cu", "Cd", "Pb", "Mo", "W", "Ru", "Rh", "Ir", "Pt", "In", "Si"]
    # fmt: on
    rs_anions = ["H", *halides, *chalcogens, "C", *pnictogens]
    zb = (
        [(a, b) for a in ["B", "Al", "Ga", "In"] for b in pnictogens]
        + [(a, b) for a in ["Be", "Mg", "Zn", "Cd", "Hg", "Mn"] for b in chalcogens]
        + [(a, b) for a in ["Cu", "Ag"] for b in halides]
        + [(a, "C") for a in ["Si", "Ge", "Sn"]]
        + [("Si", "Ge"), ("Ge", "Sn")]
    )
    intermetallic = [m for m in METALS if m not in ("Hg",)]
    cscl = [(a, b) for a, b in itertools.combinations(intermetallic, 2)] + [
        (a, b) for a in ["Cs", "Rb", "Tl"] for b in ["Cl", "Br", "I"]
    ]
    fluorite = (
        [(a, b) for a in ["Ca", "Sr", "Ba", "Cd", "Pb", "Hg", "Mg", "Zn"] for b in ["F", "Cl", "H"]]
        + [(a, "O") for a in fluorite_oxides]
        + [
            (a, b)
            for a in ["Co", "Ni", "Fe", "Pt", "Pd", "Ir"]
            for b in ["Si", "Ge", "Sn", "Al", "Ga"]
        ]
    )
    antifluorite = [(a, b) for a in [*ALKALI, "Cu", "Ag"] for b in chalcogens] + [
        (a, b) for a in ["Mg", "Be", "Ca", "Sr"] for b in ["C", "Si", "Ge", "Sn", "Pb"]
    ]
    l12 = [(a, b) for a in l12_a for b in l12_b if a != b]
    pv_a = [*ALKALI, "Ca", "Sr", "Ba", "La", "Pb", "Y", "Cd", "Tl"]
    perovskite = [
        (a, b, x) for a in pv_a for b in pv_b for x in ["O", "F", "Cl", "Br", "I", "S", "N"]
    ]
    hh_x = ["Ni", "Co", "Pd", "Pt", "Fe", "Rh", "Ir", "Cu", "Au", "Mn", "Ru", "Li"]
    hh_y = ["Ti", "Zr", "Hf", "V", "Nb", "Ta", "Sc", "Y", "Mn", "Cr", "Mg", "Li", "La", "Fe"]
    hh_z = ["Sn", "Sb", "Bi", "Ge", "Si", "Ga", "In", "Al", "Pb", "As", "P"]
    half_heusler = [(x, y, z) for x in hh_x for y in hh_y for z in hh_z if x != y]
    fh_x = ["Co", "Ni", "Cu", "Fe", "Mn", "Rh", "Pd", "Ru", "Ir", "Pt", "Au", "Ag", "Li"]
    fh_y = ["Ti", "V", "Cr", "Mn", "Fe", "Zr", "Hf", "Nb", "Sc", "Y", "Mo", "Ta", "Co", "Ni", "Cu"]
    fh_z = ["Al", "Ga", "In", "Si", "Ge", "Sn", "Sb", "Mg", "Zn", "As", "Pb"]
    full_heusler = [(x, y, z) for x in fh_x for y in fh_y for z in fh_z if x != y]
    return {
        "rocksalt": [(a, b) for a in rs_cations for b in rs_anions],
        "zincblende": zb,
        "wurtzite": zb,
        "cscl": cscl,
        "fluorite": fluorite,
        "antifluorite": antifluorite,
        "l12": l12,
        "perovskite": perovskite,
        "half_heusler": half_heusler,
        "full_heusler": full_heusler,
    }


VALIDATION: list[tuple[str, tuple[str, ...]]] = [
    ("diamond", ("Si",)),
    ("rocksalt", ("Mg", "O")),
    ("fcc", ("Al",)),
    ("rocksalt", ("Na", "Cl")),
    ("diamond", ("C",)),
    ("rocksalt", ("Li", "F")),
    ("zincblende", ("Ga", "As")),
    ("bcc", ("Fe",)),
    ("perovskite", ("Sr", "Ti", "O")),
]
"""Validation materials (experiment / plane-wave PBE comparisons), computed first."""

# One cycle of the round-robin over compound families: cheap 2-atom cells most often.
# fmt: off
CYCLE = ["rocksalt", "cscl", "zincblende", "half_heusler", "rocksalt", "antifluorite", "l12",
         "perovskite", "cscl", "fluorite", "full_heusler", "zincblende", "rocksalt", "wurtzite",
         "half_heusler", "cscl", "perovskite", "l12", "full_heusler"]
# fmt: on


Pair = tuple[str, tuple[str, ...]]


class ReferencesFirst:
    """Emits an enumeration's candidates so that every element's formation-energy references come
    right before the first material that contains it, and no id comes twice.

    ``elemental`` are the element's reference structure types (a gas's reference is its dimer
    molecule instead), ``material_id`` names a (prototype, elements) pair and ``make`` builds its
    candidate.
    """

    def __init__(
        self,
        elemental: Sequence[str],
        material_id: Callable[[str, tuple[str, ...]], str],
        make: Callable[[str, tuple[str, ...]], Candidate],
    ) -> None:
        self.elemental = tuple(elemental)
        self.material_id = material_id
        self.make = make
        self.seen_ids: set[str] = set()
        self.seen_elements: set[str] = set()

    def validation(self, pairs: Sequence[Pair]) -> Iterator[Candidate]:
        """The validation materials first, then their references."""
        for prototype, elements in pairs:
            self.seen_ids.add(self.material_id(prototype, elements))
            yield self.make(prototype, elements)
        for prototype, elements in pairs:
            yield from self.emit(prototype, elements)

    def emit(self, prototype: str, elements: tuple[str, ...]) -> Iterator[Candidate]:
        """The references of ``elements`` not emitted yet, then the material itself (unless
        emitted already)."""
        for el in elements:
            if el not in self.seen_elements:
                self.seen_elements.add(el)
                if el in GASES:
                    yield Candidate(dimer_id(el), build_dimer(el), "dimer", "reference")
                else:
                    for proto in self.elemental:
                        yield from self.emit(proto, (el,))
        mid = self.material_id(prototype, elements)
        if mid not in self.seen_ids:
            self.seen_ids.add(mid)
            yield self.make(prototype, elements)

    def gas_solids(self) -> Iterator[Candidate]:
        """The gases' elemental structures (hypothetical solids), last."""
        for el in GASES:
            for proto in self.elemental:
                yield from self.emit(proto, (el,))


def _prototype_candidate(prototype: str, elements: tuple[str, ...]) -> Candidate:
    return Candidate(
        material_id(prototype, elements), build(prototype, elements), prototype, "prototype"
    )


def enumerate_prototypes(seed: int = 0) -> Iterator[Candidate]:
    """Yield prototype candidates in a fixed order: validation set, its elemental references, then a
    seeded round-robin over families.

    After the validation set, before the first material containing an element, all five elemental
    structures of that element are yielded (its formation-energy references); for the gases H, N, O,
    F, Cl, Br, I the reference is the dimer molecule instead and their (hypothetical) solids come at
    the very end. Within a family, charge-balanced compositions come before hypothetical ones, each
    group shuffled with ``random.Random(seed)``.
    """
    rng = random.Random(seed)
    pools = {}
    for family, tuples in _family_pools().items():
        tuples = sorted(set(tuples))
        rng.shuffle(tuples)
        balanced = [t for t in tuples if _balanced(family, t)]
        hypothetical = [t for t in tuples if not _balanced(family, t)]
        pools[family] = balanced + hypothetical
    refs = ReferencesFirst(ELEMENTAL_PROTOTYPES, material_id, _prototype_candidate)
    yield from refs.validation(VALIDATION)
    cursors = {family: 0 for family in pools}
    while any(cursors[f] < len(pools[f]) for f in pools):
        for family in CYCLE:
            if cursors[family] < len(pools[family]):
                elements = pools[family][cursors[family]]
                cursors[family] += 1
                yield from refs.emit(family, elements)
    yield from refs.gas_solids()


def reference_ids(element: str) -> tuple[str, ...]:
    """Ids of the formation-energy reference calculations of an element: its dimer for the gases
    H, N, O, F, Cl, Br, I, else its five elemental prototypes."""
    if element in GASES:
        return (dimer_id(element),)
    return tuple(material_id(proto, (element,)) for proto in ELEMENTAL_PROTOTYPES)


def ready_first(
    candidates: Iterable[Candidate],
    finished: set[str],
    references: Callable[[str], tuple[str, ...]] = reference_ids,
) -> list[Candidate]:
    """Reorder candidates so that compounds whose elements' references are all ``finished`` come
    first.

    ``finished`` holds the ids already computed or recorded as failed; ``references`` gives the
    reference ids of an element (this enumeration's :func:`reference_ids` by default). Everything
    else keeps the enumeration's order, so an element's references still come before the first
    compound that needs them; the compounds moved forward are those that need no new reference
    calculation.
    """
    candidates = list(candidates)
    referenced: dict[str, bool] = {}

    def ready(candidate: Candidate) -> bool:
        elements = [el.symbol for el in candidate.structure.composition]
        if len(elements) < 2 or candidate.id in finished:
            return False
        for el in elements:
            if el not in referenced:
                referenced[el] = all(mid in finished for mid in references(el))
        return all(referenced[el] for el in elements)

    flags = [ready(c) for c in candidates]
    return [c for c, f in zip(candidates, flags, strict=True) if f] + [
        c for c, f in zip(candidates, flags, strict=True) if not f
    ]


def is_spin_polarized(candidate: Candidate) -> bool:
    """True when the candidate contains an element computed spin-polarized."""
    return any(el.symbol in MAGNETIC_ELEMENTS for el in candidate.structure.composition)
