"""GPAW calculations of one material: equation of state, SCF at V0, band analysis, elastic
constants.

Every function runs GPAW serially in the calling process (set ``OMP_NUM_THREADS=1``); GPAW text
output goes to a log file. Energies are in eV, volumes in Å³, pressures and moduli in GPa.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from ase import Atoms
from ase.units import GPa

from rhoprop.dft.protocol import DFTProtocol, GPAWProtocol
from rhoprop.errors import (  # the DFT errors live in rhoprop.errors; re-exported here
    DFTError,
    EOSNotBracketedError,
    MissingSetupError,
    SCFNotConvergedError,
    SettingsError,
)


def kpoint_mesh(atoms: Atoms, protocol: GPAWProtocol) -> tuple[int, int, int]:
    """Γ-centred mesh size from the protocol's k-point density (ASE ``kptdensity`` convention)."""
    from ase.calculators.calculator import kpts2sizeandoffsets

    size, _ = kpts2sizeandoffsets(
        density=protocol.kpoint_density, gamma=protocol.kpoint_gamma, atoms=atoms
    )
    return tuple(int(n) for n in size)  # type: ignore[return-value]


def make_calculator(
    protocol: GPAWProtocol,
    kpts: tuple[int, int, int],
    txt: str | Path | TextIO,
    spinpol: bool,
    symbols: list[str],
    mixer: dict[str, Any] | None = None,
    cells: int = 1,
) -> Any:
    """Return a GPAW plane-wave calculator for atoms of these ``symbols``, set up exactly as the
    protocol says (GPAW's default density mixer, or ``mixer``: keyword arguments of GPAW's ``mixer``
    parameter; the band count of ``cells`` copies of one cell: :meth:`GPAWProtocol.band_count`)."""
    from gpaw import GPAW, PW, FermiDirac

    try:
        nbands = protocol.band_count(symbols, cells)
    except SettingsError as exc:
        raise MissingSetupError(f"missing PAW setup: {exc}") from exc
    extra: dict[str, Any] = {} if nbands is None else {"nbands": nbands}
    if mixer is not None:
        extra["mixer"] = dict(mixer)
    return GPAW(
        mode=PW(protocol.pw_cutoff_ev),
        xc=protocol.xc,
        kpts={"size": kpts, "gamma": protocol.kpoint_gamma},
        occupations=FermiDirac(protocol.smearing_width_ev),
        setups=protocol.setups,
        spinpol=spinpol,
        maxiter=protocol.scf_maxiter,
        txt=txt,
        **extra,
    )


def prepare_atoms(atoms: Atoms, protocol: GPAWProtocol) -> tuple[Atoms, bool]:
    """Copy ``atoms`` with ferromagnetic starting moments where the protocol asks for spin; return
    (atoms, spinpol)."""
    atoms = atoms.copy()
    atoms.calc = None
    spinpol = protocol.is_magnetic(atoms.get_chemical_symbols())
    moms = [
        protocol.initial_magmom if s in protocol.magnetic_elements else 0.0
        for s in atoms.get_chemical_symbols()
    ]
    atoms.set_initial_magnetic_moments(moms if spinpol else None)
    return atoms, spinpol


def run_energy(atoms: Atoms) -> float:
    """Energy of ``atoms`` with its calculator, translating GPAW failures into DFTError
    subclasses."""
    from gpaw import KohnShamConvergenceError

    try:
        return float(atoms.get_potential_energy())
    except KohnShamConvergenceError as exc:
        raise SCFNotConvergedError(f"SCF not converged: {exc}") from exc
    except (FileNotFoundError, RuntimeError) as exc:
        if "setup" in str(exc).lower() or "PAW" in str(exc):
            raise MissingSetupError(f"missing PAW setup: {exc}") from exc
        raise


FALLBACK_NOTE = "rhoprop: SCF not converged with GPAW's default mixer; second attempt with mixer"
STICKY_NOTE = "rhoprop: an earlier SCF of this material needed the fallback mixer; starting with it"


@dataclasses.dataclass
class MaterialSCFs:
    """SCF bookkeeping of one material: how many of its SCFs ran with the fallback mixer."""

    fallbacks: int = 0


_MATERIAL: contextvars.ContextVar[MaterialSCFs | None] = contextvars.ContextVar(
    "rhoprop_material", default=None
)


@contextlib.contextmanager
def material_scope() -> Iterator[MaterialSCFs]:
    """The calculations of one material: once one of its SCFs has needed the fallback mixer, its
    later SCFs start with that mixer (outside a scope every SCF starts with GPAW's default).
    Yields the material's :class:`MaterialSCFs`."""
    scfs = MaterialSCFs()
    token = _MATERIAL.set(scfs)
    try:
        yield scfs
    finally:
        _MATERIAL.reset(token)


def converge(
    atoms: Atoms,
    protocol: GPAWProtocol,
    kpts: tuple[int, int, int],
    txt: TextIO,
    spinpol: bool,
    cells: int = 1,
) -> float:
    """Attach the protocol's calculator to ``atoms`` (``cells`` copies of one cell: a phonon
    supercell gets the bands of its cells) and return its converged energy (eV).

    An SCF that does not converge with GPAW's default mixer is started again with the protocol's
    ``scf_fallback_mixer`` (noted in ``txt`` as :data:`FALLBACK_NOTE`); inside a
    :func:`material_scope` where an SCF already needed it, the SCF starts with the fallback mixer
    (:data:`STICKY_NOTE`). SCFNotConvergedError when the fallback fails too or there is none.
    ``atoms.calc`` is the calculator that converged.
    """
    symbols = atoms.get_chemical_symbols()
    fallback = protocol.scf_fallback_mixer
    scfs = _MATERIAL.get()
    earlier = scfs.fallbacks if scfs is not None else 0
    sticky = fallback is not None and earlier > 0
    if not sticky:
        atoms.calc = make_calculator(protocol, kpts, txt, spinpol, symbols, cells=cells)
        try:
            return run_energy(atoms)
        except SCFNotConvergedError:
            if fallback is None:
                raise
    txt.write(f"\n{STICKY_NOTE if sticky else FALLBACK_NOTE} {fallback}\n")
    txt.flush()
    atoms.calc = make_calculator(protocol, kpts, txt, spinpol, symbols, mixer=fallback, cells=cells)
    try:
        energy = run_energy(atoms)
    except SCFNotConvergedError as exc:
        tried = (
            f"with the fallback mixer {fallback}, which this material's SCFs start with since "
            f"{earlier} earlier one(s) needed it"
            if sticky
            else f"with GPAW's default mixer nor with the fallback mixer {fallback}"
        )
        raise SCFNotConvergedError(
            f"SCF not converged in {protocol.scf_maxiter} iterations {tried}"
        ) from exc
    if scfs is not None:
        scfs.fallbacks += 1
    return energy


def pressure_gpa(stress: np.ndarray) -> float:
    """Pressure (GPa) from an ASE Voigt stress in eV/Å³ (positive pressure = compressed)."""
    return float(-np.mean(stress[:3]) / GPa)


@dataclasses.dataclass
class EOSResult:
    """Birch-Murnaghan fit over the last (bracketing) scan; ``scans`` keeps every point computed."""

    v0: float
    e0: float
    bulk_modulus: float
    scans: list[dict[str, list[float]]]
    recentred: int
    kpts: tuple[int, int, int]
    precentre: list[list[float]]


def fit_eos(volumes: np.ndarray, energies: np.ndarray, eos: str) -> tuple[float, float, float]:
    """Fit an equation of state; return (V0 Å³, E0 eV, B GPa)."""
    from ase.eos import EquationOfState

    v0, e0, b = EquationOfState(list(volumes), list(energies), eos=eos).fit()
    return float(v0), float(e0), float(b / GPa)


def parabola_minimum(volumes: list[float], energies: list[float]) -> float | None:
    """Volume at the vertex of a parabola fitted to E against ln V, or None when it opens
    downwards."""
    x = np.log(np.asarray(volumes, dtype=float))
    c2, c1, _ = np.polyfit(x, np.asarray(energies, dtype=float), 2)
    if c2 <= 0:
        return None
    return float(np.exp(-c1 / (2 * c2)))


def _recentre(volumes: np.ndarray, energies: np.ndarray) -> float:
    """New scan centre after a scan that missed the minimum: the E(ln V) parabola's vertex, kept
    within ×/÷1.25 of the scan's ends; a shift of 10 % past the lowest end when the parabola opens
    downwards."""
    lowest = float(volumes[int(np.argmin(energies))])
    vertex = parabola_minimum(list(volumes), list(energies))
    if vertex is None:
        return lowest * (1.1 if lowest >= float(np.median(volumes)) else 1 / 1.1)
    return float(np.clip(vertex, volumes.min() / 1.25, volumes.max() * 1.25))


def _pressure_at(
    base: Atoms, volume: float, protocol: DFTProtocol, txt: TextIO, spinpol: bool
) -> tuple[float, float]:
    """(energy eV, pressure GPa) of ``base`` scaled isotropically to ``volume``, k-mesh from that
    cell."""
    a = base.copy()
    a.set_cell(base.cell * (volume / base.get_volume()) ** (1 / 3), scale_atoms=True)
    energy = converge(a, protocol, kpoint_mesh(a, protocol), txt, spinpol)
    return energy, pressure_gpa(a.get_stress())


def precentre(
    base: Atoms, protocol: DFTProtocol, txt: TextIO, spinpol: bool
) -> tuple[float, list[list[float]]]:
    """Bracket the energy minimum by single SCFs at volumes stepped ×/÷ ``eos_precentre_factor``
    from the start (at most ``eos_precentre_steps`` SCFs) and return the vertex of the E(ln V)
    parabola through the bracketing triple, with the points computed ([V, E, P]).

    Energies, not pressures, are used: with a fixed plane-wave cutoff the stress carries an
    isotropic Pulay offset (about −20 GPa for MgO at 500 eV) while the energies are consistent with
    the EOS fit.
    """
    f = protocol.eos_precentre_factor
    points: dict[float, tuple[float, float]] = {}

    def energy(v: float) -> float:
        if v not in points:
            points[v] = _pressure_at(base, v, protocol, txt, spinpol)
        return points[v][0]

    v0 = base.get_volume()
    chain = [v0, v0 * f]
    if energy(chain[1]) > energy(v0):
        chain = [v0 * f, v0, v0 / f]
        if energy(chain[2]) > energy(v0):
            chain = chain[::-1]
    bracket = None
    while len(points) <= protocol.eos_precentre_steps:
        if (
            len(chain) >= 3
            and energy(chain[-1]) > energy(chain[-2])
            and energy(chain[-3]) > energy(chain[-2])
        ):
            bracket = chain[-3:]
            break
        if len(points) == protocol.eos_precentre_steps:
            break
        step = chain[-1] / chain[-2]
        chain.append(chain[-1] * step)
        energy(chain[-1])
    record = [[float(v), float(e), float(p)] for v, (e, p) in sorted(points.items())]
    if bracket is None:
        return float(min(points, key=lambda v: points[v][0])), record
    vertex = parabola_minimum(bracket, [energy(v) for v in bracket])
    lo, hi = min(bracket), max(bracket)
    return (float(np.clip(vertex, lo, hi)) if vertex else bracket[1]), record


def run_eos(atoms: Atoms, protocol: DFTProtocol, txt: TextIO) -> EOSResult:
    """Pre-centre on zero pressure, scan volumes (isotropic scaling), re-centre once if needed, fit
    BM."""
    base, spinpol = prepare_atoms(atoms, protocol)
    v_start = base.get_volume()
    centre, pre = (
        precentre(base, protocol, txt, spinpol) if protocol.eos_precentre_steps else (v_start, [])
    )
    scans: list[dict[str, list[float]]] = []
    for attempt in range(protocol.eos_max_recentre + 1):
        probe = base.copy()
        probe.set_cell(base.cell * (centre / v_start) ** (1 / 3), scale_atoms=True)
        kpts = kpoint_mesh(probe, protocol)
        vols, ens, press = [], [], []
        for s in protocol.eos_volume_scalings:
            a = base.copy()
            a.set_cell(base.cell * (centre * s / v_start) ** (1 / 3), scale_atoms=True)
            ens.append(converge(a, protocol, kpts, txt, spinpol))
            press.append(pressure_gpa(a.get_stress()))
            vols.append(float(a.get_volume()))
        scans.append({"volumes": vols, "energies": ens, "pressures_gpa": press})
        v, e = np.array(vols), np.array(ens)
        i_min = int(np.argmin(e))
        if 0 < i_min < len(e) - 1:
            try:
                v0, e0, b = fit_eos(v, e, protocol.eos)
            except Exception:  # ase raises bare exceptions on bad fits
                v0, e0, b = math.nan, math.nan, math.nan
            if v.min() < v0 < v.max() and b > 0:
                return EOSResult(v0, e0, b, scans, attempt, kpts, pre)
        centre = _recentre(v, e)
    last = scans[-1]
    raise EOSNotBracketedError(
        f"EOS scan did not bracket a minimum after {protocol.eos_max_recentre} re-centring(s): "
        f"volumes {np.round(last['volumes'], 3).tolist()} Å³, "
        f"energies {np.round(last['energies'], 4).tolist()} eV"
    )


@dataclasses.dataclass
class BandAnalysis:
    """Fermi level, gap and bandwidth from the SCF eigenvalues on the Γ-centred mesh (eV)."""

    fermi_energy: float
    is_metal: bool
    band_gap: float
    vbm: float | None
    cbm: float | None
    bandwidth: float
    valence_bottom: float


def analyse_bands(
    eigenvalues: np.ndarray, fermi_energy: float, gap_threshold: float
) -> BandAnalysis:
    """Classify metal/insulator and measure gap and bandwidth from eigenvalues
    ``(nspin, nk, nbands)``.

    A material is a metal when some band of some spin has eigenvalues on both sides of E_F over the
    k-mesh. Gap = CBM − VBM (0 for metals). Bandwidth = top of the occupied states (E_F for metals,
    VBM otherwise) minus the bottom of the highest contiguous block of occupied eigenvalues, blocks
    being separated by gaps wider than ``gap_threshold`` (this drops semicore states).
    """
    eps = np.asarray(eigenvalues, dtype=float)
    lo, hi = eps.min(axis=1), eps.max(axis=1)
    is_metal = bool(np.any((lo < fermi_energy) & (hi > fermi_energy)))
    occ = np.sort(eps[eps <= fermi_energy])[::-1]
    empty = eps[eps > fermi_energy]
    vbm = float(occ[0]) if occ.size else None
    cbm = float(empty.min()) if empty.size else None
    if is_metal:
        gap = 0.0
    elif vbm is None or cbm is None:
        raise DFTError("cannot measure the band gap: no occupied or no empty bands in the SCF")
    else:
        gap = cbm - vbm
    top = fermi_energy if is_metal else float(vbm)  # type: ignore[arg-type]
    bottom = float(occ[0])
    for e in occ[1:]:
        if bottom - e > gap_threshold:
            break
        bottom = float(e)
    return BandAnalysis(fermi_energy, is_metal, float(gap), vbm, cbm, float(top - bottom), bottom)


def relax_positions(atoms: Atoms, protocol: GPAWProtocol, txt: TextIO) -> tuple[int, float]:
    """Relax internal coordinates at fixed cell with BFGS; return (steps, final max force eV/Å)."""
    from ase.optimize import BFGS

    forces = atoms.get_forces()
    fmax = float(np.sqrt((forces**2).sum(axis=1)).max())
    if fmax <= protocol.relax_fmax or len(atoms) == 1:
        return 0, fmax
    opt = BFGS(atoms, logfile=txt)
    opt.run(fmax=protocol.relax_fmax, steps=protocol.relax_steps)
    forces = atoms.get_forces()
    return int(opt.nsteps), float(np.sqrt((forces**2).sum(axis=1)).max())


@dataclasses.dataclass
class SCFResult:
    """Everything measured at V0 (the equilibrium structure, positions relaxed where forces
    demanded)."""

    atoms: Atoms
    energy: float
    bands: BandAnalysis
    magnetic_moment: float
    magnetic_moments: list[float]
    n_electrons: float
    density: np.ndarray
    magnetization: np.ndarray | None
    relax_steps: int
    max_force: float
    stress_gpa: list[float]


def analyse_scf(
    atoms: Atoms,
    protocol: GPAWProtocol,
    spinpol: bool,
    relax_steps: int = 0,
    max_force: float = math.nan,
) -> SCFResult:
    """Measure a converged SCF (``atoms.calc``): energy, stress, bands, moments and density."""
    calc = atoms.calc
    energy = run_energy(atoms)
    stress = atoms.get_stress()
    nspin = calc.get_number_of_spins()
    nk = len(calc.get_ibz_k_points())
    eps = np.array([[calc.get_eigenvalues(kpt=k, spin=s) for k in range(nk)] for s in range(nspin)])
    ef = float(calc.get_fermi_level())
    bands = analyse_bands(eps, ef, protocol.bandwidth_gap_ev)
    g = protocol.density_gridrefinement
    if spinpol:
        up = calc.get_pseudo_density(spin=0, gridrefinement=g)
        down = calc.get_pseudo_density(spin=1, gridrefinement=g)
        total, mag = up + down, up - down
        moment = float(calc.get_magnetic_moment())
        moments = [float(m) for m in calc.get_magnetic_moments()]
    else:
        total, mag = calc.get_pseudo_density(gridrefinement=g), None
        moment, moments = 0.0, [0.0] * len(atoms)
    return SCFResult(
        atoms=atoms,
        energy=energy,
        bands=bands,
        magnetic_moment=moment,
        magnetic_moments=moments,
        n_electrons=float(calc.get_number_of_electrons()),
        density=np.asarray(total),
        magnetization=None if mag is None else np.asarray(mag),
        relax_steps=relax_steps,
        max_force=max_force,
        stress_gpa=[float(x) for x in stress / GPa],
    )


def run_scf(
    atoms: Atoms, v0: float, kpts: tuple[int, int, int], protocol: DFTProtocol, txt: TextIO
) -> SCFResult:
    """SCF at volume ``v0`` (isotropic scaling of ``atoms``), relax positions if forced, analyse
    it."""
    a, spinpol = prepare_atoms(atoms, protocol)
    a.set_cell(a.cell * (v0 / a.get_volume()) ** (1 / 3), scale_atoms=True)
    converge(a, protocol, kpts, txt, spinpol)
    steps, fmax = relax_positions(a, protocol, txt)
    return analyse_scf(a, protocol, spinpol, steps, fmax)


@dataclasses.dataclass
class ElasticResult:
    """Cubic elastic constants (GPa): shear moduli from ± strain stresses, bulk part from the
    EOS."""

    c11: float
    c12: float
    c44: float
    mechanically_stable: bool
    strain: float
    bulk_modulus: float
    c11_stress: float
    c12_stress: float
    stresses_gpa: dict[str, list[float]]


def born_stable_cubic(c11: float, c12: float, c44: float) -> bool:
    """Born stability criteria of a cubic crystal: c11 − c12 > 0, c11 + 2c12 > 0, c44 > 0."""
    return bool(c11 - c12 > 0 and c11 + 2 * c12 > 0 and c44 > 0)


def run_elastic_cubic(
    atoms: Atoms,
    kpts: tuple[int, int, int],
    protocol: DFTProtocol,
    txt: TextIO,
    bulk_modulus: float,
) -> ElasticResult:
    """c11, c12, c44 of a cubic crystal whose cubic axes are the Cartesian axes.

    One combined strain, applied with both signs: normal ε_xx = ±δ together with engineering shear
    γ_yz = ±δ (ε_yz = ε_zy = ±δ/2), internal coordinates relaxed. Linear elasticity gives
    c11 = Δσ_xx/(2δ), c12 = Δ(σ_yy + σ_zz)/2/(2δ), c44 = Δσ_yz/(2δ) (the central difference cancels
    every second-order term). The isotropic part of a fixed-cutoff plane-wave stress carries a
    volume-dependent Pulay error, which would shift c11 and c12 alike; so only the shear
    combinations are taken from the stress, c11 − c12 and c44, and the bulk part from the EOS:
    c11 = B + 2(c11 − c12)/3, c12 = B − (c11 − c12)/3.
    """
    d = protocol.elastic_strain
    strain = np.array([[1.0, 0, 0], [0, 0, 0.5], [0, 0.5, 0]])
    stresses: dict[str, list[float]] = {}
    for sign in (1, -1):
        a, spinpol = prepare_atoms(atoms, protocol)
        deformation = np.eye(3) + sign * d * strain
        a.set_cell(a.cell @ deformation.T, scale_atoms=True)
        converge(a, protocol, kpts, txt, spinpol)
        relax_positions(a, protocol, txt)
        stresses["+" if sign > 0 else "-"] = [float(x) for x in a.get_stress() / GPa]
    sp, sm = np.array(stresses["+"]), np.array(stresses["-"])
    c11_s = float((sp[0] - sm[0]) / (2 * d))
    c12_s = float(((sp[1] + sp[2]) - (sm[1] + sm[2])) / 2 / (2 * d))
    c44 = float((sp[3] - sm[3]) / (2 * d))
    shear = c11_s - c12_s
    c11, c12 = bulk_modulus + 2 * shear / 3, bulk_modulus - shear / 3
    return ElasticResult(
        c11, c12, c44, born_stable_cubic(c11, c12, c44), d, bulk_modulus, c11_s, c12_s, stresses
    )
