"""The fixed, versioned DFT protocol every generated density and label is computed with.

The protocol is a :class:`~rhoprop.settings.Settings` subclass; its :meth:`DFTProtocol.hash` is
stored in every per-material result, and a rerun only reuses results with the same hash, so a
protocol change invalidates old results instead of silently mixing them.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from importlib import metadata
from typing import Any, ClassVar

from rhoprop.errors import SettingsError
from rhoprop.settings import Settings

MAGNETIC_ELEMENTS: tuple[str, ...] = ("Cr", "Mn", "Fe", "Co", "Ni")
MIXER_KEYS = frozenset({"backend", "beta", "nmaxold", "weight", "method"})
FALLBACK_MIXER: dict[str, Any] = {
    "backend": "msr1",
    "beta": 0.02,
    "nmaxold": 5,
    "weight": 100.0,
    "method": "difference",
}


def _package_version(name: str) -> str:
    """Return the installed version of ``name``, or ``"missing"`` when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


def protocol_hash_of(data: dict) -> str:
    """Short SHA-256 of a protocol dict (as :meth:`DFTProtocol.to_dict` gives it, keys sorted)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


@dataclasses.dataclass(frozen=True)
class GPAWProtocol(Settings):
    """Electronic settings every GPAW tier shares: functional, basis, k-points, smearing, spin,
    bands, SCF mixer, molecule relaxation and the written density. Tiers subclass it and add their
    procedure.

    Attributes:
        name: protocol name (a tier); results of different names/hashes are never mixed.
        xc: exchange-correlation functional.
        pw_cutoff_ev: plane-wave kinetic-energy cutoff (eV), the same at every volume.
        kpoint_density: k-points per Å⁻¹ of reciprocal-lattice vector length (ASE ``kptdensity``
            convention: ``n_i = max(1, ceil(kpoint_density * |b_i|))`` with ``|b_i| = 2π/d_i``),
            Γ-centred meshes.
        smearing: occupation smearing scheme (``"fermi-dirac"``).
        smearing_width_ev: smearing width (eV).
        setups: GPAW PAW setup family; ``setups_version`` is the installed gpaw-data version.
        relax_fmax: force threshold (eV/Å) of GPAW BFGS relaxations (molecules in both tiers;
            internal coordinates at V0 and under shear in ``gpaw-v1``).
        relax_steps: maximum BFGS steps of such a relaxation.
        magnetic_elements: elements that trigger a spin-polarized, ferromagnetic-start calculation.
        initial_magmom: starting moment (μB) on each atom of a magnetic element.
        density_gridrefinement: GPAW grid refinement of the written pseudo density (1 = coarse
        grid). bandwidth_gap_ev: an energy gap larger than this separates the valence manifold from
            semicore states when measuring the bandwidth.
        scf_maxiter: maximum SCF iterations of one attempt.
        scf_fallback_mixer: GPAW ``mixer`` keyword arguments of a second attempt at an SCF that did
            not converge in ``scf_maxiter`` iterations with GPAW's default mixer (a slower, damped
            mixer; None: no second attempt). The second attempt starts afresh; if it fails too, the
            material is a recorded failure. A converged SCF is the same ground state whichever mixer
            reached it.
        min_empty_bands: bands above ``ceil(N_valence / 2)`` that every calculation has at least.
            GPAW's default band count (one per atomic orbital of the setups) leaves none for Ca, Sr,
            Ba (10 valence electrons, 5 orbitals) or K, Rb, Cs; where the default already leaves
            this many, it is kept (see :meth:`band_count`).
        gpaw_version: GPAW version the protocol was fixed with.
        setups_version: gpaw-data version (PAW setups).
    """

    name: str = "gpaw"
    xc: str = "PBE"
    pw_cutoff_ev: float = 500.0
    kpoint_density: float = 3.5
    kpoint_gamma: bool = True
    smearing: str = "fermi-dirac"
    smearing_width_ev: float = 0.01
    setups: str = "paw"
    relax_fmax: float = 0.02
    relax_steps: int = 30
    magnetic_elements: tuple[str, ...] = MAGNETIC_ELEMENTS
    initial_magmom: float = 3.0
    density_gridrefinement: int = 2
    bandwidth_gap_ev: float = 2.0
    scf_maxiter: int = 200
    scf_fallback_mixer: dict[str, Any] | None = dataclasses.field(
        default_factory=lambda: dict(FALLBACK_MIXER)
    )
    min_empty_bands: int = 1
    gpaw_version: str = dataclasses.field(default_factory=lambda: _package_version("gpaw"))
    setups_version: str = dataclasses.field(default_factory=lambda: _package_version("gpaw-data"))

    tasks_per_worker: ClassVar[int] = 1
    """Materials one batch worker process computes before it is replaced (not a protocol field)."""

    def __post_init__(self) -> None:
        cls = type(self).__name__
        mixer = self.scf_fallback_mixer
        if mixer is not None and (not isinstance(mixer, dict) or not set(mixer) <= MIXER_KEYS):
            raise SettingsError(
                f"{cls}.scf_fallback_mixer must be None or a dict with keys from "
                f"{sorted(MIXER_KEYS)}, "
                f"got {mixer!r}"
            )
        if self.xc not in ("PBE", "LDA", "PBEsol", "RPBE", "revPBE"):
            raise SettingsError(f"{cls}.xc: unsupported functional {self.xc!r}")
        if self.pw_cutoff_ev <= 0 or self.kpoint_density <= 0 or self.smearing_width_ev <= 0:
            raise SettingsError(
                f"{cls}: pw_cutoff_ev, kpoint_density and smearing_width_ev must be positive, "
                f"got {self.pw_cutoff_ev}, {self.kpoint_density}, {self.smearing_width_ev}"
            )
        if self.smearing != "fermi-dirac":
            raise SettingsError(
                f"{cls}.smearing: only 'fermi-dirac' is supported, got {self.smearing!r}"
            )
        if self.min_empty_bands < 1:
            raise SettingsError(
                f"{cls}.min_empty_bands must be at least 1, got {self.min_empty_bands}"
            )
        if self.density_gridrefinement not in (1, 2, 4):
            raise SettingsError(
                f"{cls}.density_gridrefinement must be 1, 2 or 4, got {self.density_gridrefinement}"
            )

    def hash(self) -> str:
        """Return a short, stable hash of every field (results are only reused when it matches)."""
        return protocol_hash_of(self.to_dict())

    def _hash_without(self, fields: tuple[str, ...], revision: int) -> str:
        """The hash of this protocol with ``fields`` removed and ``protocol_revision`` set to
        ``revision``: what an earlier revision that lacked those fields hashed to."""
        data = self.to_dict()
        for name in fields:
            data.pop(name)
        data["protocol_revision"] = revision
        return protocol_hash_of(data)

    def is_magnetic(self, symbols: list[str] | tuple[str, ...]) -> bool:
        """True when a structure with these element symbols is computed spin-polarized."""
        return any(s in self.magnetic_elements for s in symbols)

    def band_count(self, symbols: list[str] | tuple[str, ...], cells: int = 1) -> int | None:
        """Number of bands to ask GPAW for, or None where its default already has enough empty
        bands.

        The default is one band per atomic orbital of the setups; it is kept when it reaches
        ``ceil(N_valence / 2) + min_empty_bands``, otherwise that count is used instead. With
        ``cells`` > 1 the atoms are that many copies of one cell (a phonon supercell) and the rule
        applies per cell: ``cells`` times the cell's count, so that a supercell has the empty
        bands of its cells (one empty band in an 8-atom supercell of bcc Ba leaves the partly
        occupied bands of a metal without room, and its SCF does not converge).
        """
        if cells < 1 or len(symbols) % cells:
            raise SettingsError(f"{len(symbols)} atoms are not {cells} copies of one cell")
        n_valence, n_orbitals = 0.0, 0
        for symbol in symbols:
            valence, orbitals = _setup_size(symbol, self.xc, self.setups)
            n_valence += valence
            n_orbitals += orbitals
        needed = math.ceil(n_valence / cells / 2 - 1e-9) + self.min_empty_bands
        return None if n_orbitals // cells >= needed else cells * needed

    def accepts(self, record: dict[str, Any]) -> bool:
        """True when a result or failure record (``protocol_hash``) was computed with this one."""
        return record.get("protocol_hash") == self.hash()


@dataclasses.dataclass(frozen=True)
class DFTProtocol(GPAWProtocol):
    """GPAW plane-wave PAW protocol (PBE) for densities, equations of state and elastic constants
    (tier ``gpaw-v1``); the electronic settings are :class:`GPAWProtocol`'s.

    Attributes:
        eos_volume_scalings: volumes of the EOS scan relative to the centre volume.
        protocol_revision: bumped whenever the procedure (not only a number) changes, so old results
            are invalidated (2: energy-based centring, c11/c12 from the EOS bulk modulus + shear;
            3: no elastic constants for metals unless ``elastic_for_metals``; 4:
            ``min_empty_bands``; 5: ``scf_fallback_mixer``).
        eos_precentre_steps: before the scan, at most this many single SCFs step the volume by
            ``eos_precentre_factor`` from the start until the energy rises on both sides; the scan
            is centred on the vertex of the E(ln V) parabola through that triple (0 = centre on the
            start).
        eos_precentre_factor: volume ratio of one pre-centring step.
        eos_max_recentre: how many times a scan that does not bracket the minimum is re-centred.
        eos: equation of state fitted by ``ase.eos.EquationOfState``.
        elastic_strain: magnitude of the ± normal strain and ± engineering shear strain (c11, c12,
        c44). elastic_for_metals: also compute elastic constants of metals (off: with this k-mesh
            and smearing their strained-cell stresses are sampling noise).
    """

    name: str = "gpaw-v1"
    eos_volume_scalings: tuple[float, ...] = (0.94, 0.97, 1.0, 1.03, 1.06)
    protocol_revision: int = 5
    eos_precentre_steps: int = 6
    eos_precentre_factor: float = 1.2
    eos_max_recentre: int = 1
    eos: str = "birchmurnaghan"
    elastic_strain: float = 0.02
    elastic_for_metals: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        scalings = tuple(float(s) for s in self.eos_volume_scalings)
        if (
            len(scalings) < 5
            or sorted(scalings) != list(scalings)
            or not min(scalings) < 1 < max(scalings)
        ):
            raise SettingsError(
                "DFTProtocol.eos_volume_scalings: need at least 5 increasing scalings around 1.0, "
                f"got {self.eos_volume_scalings}"
            )
        if not 0 < self.elastic_strain < 0.05:
            raise SettingsError(
                f"DFTProtocol.elastic_strain must be in (0, 0.05), got {self.elastic_strain}"
            )

    def revision_hash(self, revision: int) -> str | None:
        """Hash this protocol had at an earlier ``revision`` (3 or 4) with every other field
        unchanged.

        Revision 4 is revision 5 without ``scf_fallback_mixer``; revision 3 is revision 4 without
        ``min_empty_bands``. None unless this protocol is at revision 5 and ``revision`` is 3 or 4.
        """
        if self.protocol_revision != 5 or revision not in (3, 4):
            return None
        dropped = ("scf_fallback_mixer", "min_empty_bands")
        return self._hash_without(dropped if revision == 3 else dropped[:1], revision)

    def accepts(self, record: dict[str, Any]) -> bool:
        """True when a result or failure record was computed exactly as this protocol would compute
        it.

        That is a record with this protocol's hash; or a revision-4 record (no fallback mixer: the
        same calculation wherever the default mixer converged), except a failure to converge, which
        the fallback may now rescue; or such a revision-3 record (before ``min_empty_bands``) of a
        material whose band count stays at GPAW's default. The record needs ``protocol_hash``, and
        for the revision-3 case ``composition`` (element → count in the cell); a failure record has
        ``reason``.
        """
        found = record.get("protocol_hash")
        if found is None:
            return False
        if found == self.hash():
            return True
        if self.scf_fallback_mixer is not None and str(record.get("reason", "")).startswith(
            "SCFNotConvergedError"
        ):
            return False
        if found == self.revision_hash(4):
            return True
        if found != self.revision_hash(3) or "composition" not in record:
            return False
        symbols = [el for el, n in record["composition"].items() for _ in range(round(float(n)))]
        return self.band_count(symbols) is None


@dataclasses.dataclass(frozen=True)
class SCFProtocol(GPAWProtocol):
    """Fast tier ``gpaw-scf-v1``: CHGNet relaxation of cell and positions under the input's
    symmetry, then one GPAW SCF with :class:`GPAWProtocol`'s electronic settings (``gpaw-v1``'s).

    Attributes:
        protocol_revision: bumped whenever the procedure changes (2: ``reduce_cell``).
        chgnet_model: pretrained CHGNet model (shipped in the chgnet wheel; trained on Materials
            Project PBE/PBE+U relaxations).
        chgnet_version: installed chgnet package version.
        chgnet_optimizer: ASE optimizer of the CHGNet relaxation (``FIRE`` or ``BFGS``).
        chgnet_fmax: convergence threshold of the relaxation (eV/Å on atoms, the same on the
            Fréchet cell filter's virial / volume).
        chgnet_steps: at most this many optimizer steps (not converged: the material fails).
        input_symprec: spglib tolerance (Å) of the input's symmetry, which the relaxation keeps
            (ASE ``FixSymmetry``).
        refine_symprec: spglib tolerance (Å) of the symmetrization of the relaxed cell before the
            SCF (round-off removed: GPAW finds every symmetry, so the irreducible k-points are few).
        symmetric_kpoints: where the k-point density gives a mesh that the crystal's rotations do
            not map onto itself (e.g. 5×5×6 in the primitive basis of a body-centred tetragonal
            cell), raise every size to the largest one, so that GPAW keeps the full symmetry (the
            density stays at least ``kpoint_density``).
        reduce_cell: compute the SCF on the Niggli-reduced basis of the relaxed lattice where it is
            shorter than the standard primitive basis (same crystal, same Cartesian frame). In the
            primitive basis of a body-centred tetragonal lattice (ThCr2Si2, MoSi2, anatase,
            chalcopyrite) the k-point density then needs e.g. 6×6×6 (30 irreducible points)
            instead of 8×8×8 (59); other cells are left exactly as they were.
    """

    name: str = "gpaw-scf-v1"
    protocol_revision: int = 2
    chgnet_model: str = "0.3.0"
    chgnet_version: str = dataclasses.field(default_factory=lambda: _package_version("chgnet"))
    chgnet_optimizer: str = "FIRE"
    chgnet_fmax: float = 0.02
    chgnet_steps: int = 500
    input_symprec: float = 0.01
    refine_symprec: float = 1e-3
    symmetric_kpoints: bool = True
    reduce_cell: bool = True

    tasks_per_worker: ClassVar[int] = 25

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.chgnet_optimizer not in ("FIRE", "BFGS"):
            raise SettingsError(
                "SCFProtocol.chgnet_optimizer must be 'FIRE' or 'BFGS', "
                f"got {self.chgnet_optimizer!r}"
            )
        if self.chgnet_fmax <= 0 or self.chgnet_steps < 1:
            raise SettingsError(
                f"SCFProtocol: chgnet_fmax must be positive and chgnet_steps at least 1, got "
                f"{self.chgnet_fmax}, {self.chgnet_steps}"
            )
        if not 0 < self.refine_symprec <= self.input_symprec < 0.5:
            raise SettingsError(
                "SCFProtocol: need 0 < refine_symprec <= input_symprec < 0.5 Å, got "
                f"{self.refine_symprec}, {self.input_symprec}"
            )

    def revision_hash(self, revision: int) -> str | None:
        """Hash this protocol had at revision 1 (no ``reduce_cell``: the SCF on the standard
        primitive cell) with every other field unchanged; None unless this protocol is at revision
        2 and ``revision`` is 1."""
        if self.protocol_revision != 2 or revision != 1:
            return None
        return self._hash_without(("reduce_cell",), 1)

    def accepts(self, record: dict[str, Any]) -> bool:
        """True when a result or failure record was computed with this protocol, or with its
        revision 1: the same calculation for every cell that is already reduced (and for every
        cell with ``reduce_cell`` off), and for the others the same crystal on its standard
        primitive basis with a k-mesh of the same ``kpoint_density`` but more points (labels
        compared in ``docs/data.md``, "Cells with acute angles")."""
        found = record.get("protocol_hash")
        return found is not None and found in (self.hash(), self.revision_hash(1))


PROTOCOLS: dict[str, type[GPAWProtocol]] = {"gpaw-v1": DFTProtocol, "gpaw-scf-v1": SCFProtocol}
"""Protocol classes by tier name (``rhoprop generate --protocol``)."""


def protocol_by_name(name: str) -> GPAWProtocol:
    """The default protocol of a tier (``gpaw-v1`` or ``gpaw-scf-v1``)."""
    if name not in PROTOCOLS:
        raise SettingsError(f"unknown protocol {name!r}; choose one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[name]()


def load_protocol(data: dict[str, Any]) -> GPAWProtocol:
    """A protocol from its dict (``protocol.json``, a result's ``protocol``); ``name`` picks it."""
    name = data.get("name", "gpaw-v1") if isinstance(data, dict) else None
    if name not in PROTOCOLS:
        raise SettingsError(
            f"unknown protocol name {name!r} in a protocol dict; known: {sorted(PROTOCOLS)}"
        )
    return PROTOCOLS[name].from_dict(data)


@functools.cache
def _setup_size(symbol: str, xc: str, setups: str) -> tuple[float, int]:
    """(valence electrons, atomic orbitals) of GPAW's PAW setup for an element."""
    from gpaw.setup import create_setup
    from gpaw.xc import XC

    try:
        setup = create_setup(symbol, XC(xc), type=setups)
    except Exception as exc:  # GPAW raises RuntimeError/FileNotFoundError/KeyError
        raise SettingsError(f"no GPAW {setups!r} setup for {symbol} ({xc}): {exc}") from exc
    return float(setup.Nv), int(setup.nao)
