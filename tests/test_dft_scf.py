"""The fast tier gpaw-scf-v1 with real CHGNet and real GPAW on the smallest cells (Al 1 atom, Si 2
atoms): compute, resume, kill -9, failures and screening, labels, the tier comparison; its
enumeration; and that the gpaw-v1 protocol hash did not change."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ase.spacegroup import Spacegroup
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
from typer.testing import CliRunner

from rhoprop.cli import app
from rhoprop.dft import (
    DFTProtocol,
    SCFProtocol,
    ScreenSettings,
    enumerate_scf_candidates,
    generate,
    is_done,
    label_schema,
    load_failures,
    load_protocol,
    load_skipped,
    scf_reference_ids,
)
from rhoprop.dft.consistency import compare_tiers, fast_tier_candidates
from rhoprop.dft.enumerate import SCF_ELEMENTS, STRUCTURE_TYPES, build_type, plausible, type_natoms
from rhoprop.dft.labels import EOS_LABELS
from rhoprop.dft.material import Candidate, chgcar_path, result_path
from rhoprop.dft.protocol import protocol_hash_of
from rhoprop.errors import RhopropError, SettingsError
from rhoprop.io import read_density

runner = CliRunner()
ROOT = Path(__file__).parents[1]
GOLD = ROOT / "data-gen" / "gpaw-v1"
gpaw = pytest.importorskip("gpaw", reason="the dft extra (GPAW) is not installed")
chgnet = pytest.importorskip("chgnet", reason="the dft extra (CHGNet) is not installed")


def _cif(folder: Path, name: str, structure: Structure) -> Path:
    path = folder / f"{name}.cif"
    structure.to(filename=str(path))
    return path


def _aluminium() -> Structure:
    """Conventional fcc Al (4 atoms) at a = 4.05 Å: the tier reduces it to its primitive cell."""
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.05), ["Al"], [[0, 0, 0]])


def _silicon() -> Structure:
    return Structure(
        Lattice([[0, 2.7155, 2.7155], [2.7155, 0, 2.7155], [2.7155, 2.7155, 0]]),
        ["Si", "Si"],
        [[0, 0, 0], [0.25, 0.25, 0.25]],
    )


@pytest.fixture(scope="module")
def al_run(tmp_path_factory) -> Path:
    """``rhoprop generate Al.cif --protocol gpaw-scf-v1`` once; returns the output folder."""
    base = tmp_path_factory.mktemp("al")
    out = base / "out"
    result = runner.invoke(
        app,
        [
            "generate",
            str(_cif(base, "Al", _aluminium())),
            "--protocol",
            "gpaw-scf-v1",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "computed 1" in result.output, result.output
    return out


@pytest.mark.dft
def test_fast_tier_relaxes_with_chgnet_and_runs_one_scf(al_run: Path) -> None:
    record = json.loads(result_path(al_run, "Al").read_text())
    assert (
        record["protocol_hash"] == SCFProtocol().hash()
        and record["protocol"]["name"] == "gpaw-scf-v1"
    )
    assert record["natoms"] == 1 and "eos" not in record and "elastic" not in record
    chg = record["chgnet"]
    assert chg["spacegroup_input"] == chg["spacegroup_relaxed"] == 225 and chg["steps"] >= 1
    assert abs(max(chg["stress_gpa"][:3], key=abs)) < 1.0  # relaxed: CHGNet stress within 1 GPa
    assert (
        record["kpts"] == [10, 10, 10] and record["ibz_kpoints"] == 47
    )  # gpaw-v1's mesh and symmetry
    assert record["timing"]["cpu_s"] > 0 and record["scf"]["max_force"] < 1e-6
    assert 15.8 < Structure.from_dict(record["structure"]).volume < 17.2  # PBE 16.5 Å^3
    density = read_density(chgcar_path(al_run, "Al"))
    assert density.electron_count() == pytest.approx(3.0, abs=0.02)


@pytest.mark.dft
def test_fast_tier_labels_have_no_eos_columns_and_reassemble(al_run: Path) -> None:
    result = runner.invoke(app, ["generate", "--labels", "--out", str(al_run)])
    assert result.exit_code == 0, result.output
    labels = pd.read_csv(al_run / "labels.csv", index_col="id")
    assert list(labels.columns) == list(label_schema(SCFProtocol()))
    assert not set(EOS_LABELS) & set(labels.columns)
    al = labels.loc["Al"]
    assert (
        al.is_metal == 1
        and al.band_gap == 0
        and al.crystal_system == "cubic"
        and al.magnetic_moment == 0
    )
    assert al.formation_energy == pytest.approx(0.0, abs=1e-9)  # Al is its own reference
    assert 2.6 < al.density < 2.85 and 15.8 < al.volume_per_atom < 17.2  # PBE 16.5 Å^3
    targets = json.loads((al_run / "targets.json").read_text())["targets"]
    assert [t["name"] for t in targets] == list(labels.columns)
    assert (
        "CHGNet"
        in json.loads((al_run / "labels.schema.json").read_text())["labels"]["volume_per_atom"][
            "definition"
        ]
    )


@pytest.mark.dft
def test_rerun_skips_the_done_material_and_another_tier_is_refused(
    al_run: Path, tmp_path: Path
) -> None:
    cif = _cif(tmp_path, "Al", _aluminium())
    again = runner.invoke(
        app, ["generate", str(cif), "--protocol", "gpaw-scf-v1", "--out", str(al_run)]
    )
    assert again.exit_code == 0 and "computed 0, skipped 1" in again.output, again.output
    mixed = runner.invoke(app, ["generate", str(cif), "--out", str(al_run)])
    assert mixed.exit_code != 0 and "--protocol gpaw-scf-v1" in mixed.output, mixed.output


@pytest.mark.dft
def test_tier_comparison_against_gpaw_v1(al_run: Path) -> None:
    """Al fcc of both tiers: same electronic settings, CHGNet volume against the EOS V0."""
    if not result_path(GOLD, "Al-fcc").exists():
        pytest.skip("data-gen/gpaw-v1 has no Al-fcc result")
    import shutil

    tier = al_run.parent / "tier"
    (tier / "results").mkdir(parents=True, exist_ok=True)
    record = json.loads(result_path(al_run, "Al").read_text())
    record["id"] = "Al-fcc"
    result_path(tier, "Al-fcc").write_text(json.dumps(record))
    shutil.copy(al_run / "protocol.json", tier / "protocol.json")
    table = compare_tiers(GOLD, tier)
    assert table.loc["volume_per_atom", "n"] == 1
    assert table.loc["volume_per_atom", "max_abs_diff"] < 0.5  # CHGNet 16.59 vs EOS 16.44 Å^3
    assert table.loc["total_energy", "max_abs_diff"] < 0.01  # eV/atom: same settings, nearby volume
    assert table.loc["is_metal", "agreement"] == 1.0
    ids = [c.id for c in fast_tier_candidates(GOLD, ["Al-fcc", "MgO-rocksalt"])]
    assert ids[-2:] == ["Al-fcc", "MgO-rocksalt"] and "O2-dimer" in ids and "Mg-beta_sn" in ids
    assert "Al-fcc" not in ids[:-2]


def test_tier_comparison_of_the_committed_folders_includes_phonon_labels() -> None:
    """The shipped result folders: crystals both tiers computed, phonons of both where there are."""
    tier = ROOT / "data-gen" / "gpaw-scf-v1"
    if not (tier / "phonons" / "results" / "Al-fcc.json").exists():
        pytest.skip("data-gen/gpaw-scf-v1 has no phonon results")
    table = compare_tiers(GOLD, tier)
    assert table.loc["total_energy", "n"] >= 100
    assert table.loc["total_energy", "median_abs_diff"] < 0.01  # eV/atom: the same settings
    n = table.loc["dynamically_stable", "n"]
    assert n >= 3 and table.loc["min_frequency", "n"] == n
    assert 0.5 <= table.loc["dynamically_stable", "agreement"] <= 1.0
    assert table.loc["min_frequency", "median_abs_diff"] < 0.2  # THz


@pytest.mark.dft
def test_kill_9_mid_material_leaves_nothing_done_and_a_rerun_completes_it(tmp_path: Path) -> None:
    cif = _cif(tmp_path, "Si", _silicon())
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rhoprop.cli",
            "generate",
            str(cif),
            "--protocol",
            "gpaw-scf-v1",
            "--out",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    log = out / "logs" / "Si.txt"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and not (log.exists() and "iter:" in log.read_text()):
            time.sleep(0.2)
        assert log.exists(), "GPAW never started"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the batch and its worker, as a crash would
        proc.wait(timeout=30)
    assert not result_path(out, "Si").exists() and not is_done(out, "Si", SCFProtocol())
    assert "Si" not in load_failures(out)
    report = generate([Candidate("Si", _silicon())], out, protocol=SCFProtocol(), progress=False)
    assert report.computed == ["Si"] and is_done(out, "Si", SCFProtocol())
    record = json.loads(result_path(out, "Si").read_text())
    assert 0.4 < record["scf"]["band_gap"] < 0.8 and record["ibz_kpoints"] == 20  # PBE gap ≈ 0.6 eV


@pytest.mark.dft
def test_failures_and_screened_candidates_are_recorded_apart(tmp_path: Path) -> None:
    """Po has no GPAW setup (a failure with its reason); with a threshold nothing can pass and no
    kept fraction, NaCl is screened out by CHGNet (skipped.json, not a failure, never GPAW)."""
    po = Candidate("Po-sc", Structure(Lattice.cubic(3.36), ["Po"], [[0, 0, 0]]))
    nacl = next(c for c in enumerate_scf_candidates() if c.id == "NaCl-rocksalt")
    screen = ScreenSettings(max_chgnet_formation_energy_ev=-50.0, keep_fraction=0.0)
    report = generate([po, nacl], tmp_path, protocol=SCFProtocol(), progress=False, screen=screen)
    assert (
        report.computed == []
        and list(report.failed) == ["Po-sc"]
        and list(report.screened) == ["NaCl-rocksalt"]
    )
    failure = load_failures(tmp_path)["Po-sc"]
    assert "Po" in failure["reason"] and failure["protocol_hash"] == SCFProtocol().hash()
    skipped = load_skipped(tmp_path)
    assert (
        set(skipped) == {"NaCl-rocksalt"} and skipped["NaCl-rocksalt"]["screen"] == screen.to_dict()
    )
    chg = skipped["NaCl-rocksalt"]["chgnet"]
    assert (
        -2.6 < chg["formation_energy"] < -1.6
    )  # CHGNet NaCl ≈ PBE -2.1 eV/atom, against Na solids and Cl2
    assert (
        chg["references"]["Cl"]["id"] == "Cl2-dimer"
        and not (tmp_path / "logs" / "NaCl-rocksalt.txt").exists()
    )
    again = generate([po, nacl], tmp_path, protocol=SCFProtocol(), progress=False, screen=screen)
    assert sorted(again.skipped) == ["NaCl-rocksalt", "Po-sc"] and not again.screened


def test_screening_keeps_a_fixed_pseudo_random_fraction() -> None:
    screen = ScreenSettings(keep_fraction=0.1)
    ids = [f"X{i}-rocksalt" for i in range(20000)]
    kept = [screen.keeps(i) for i in ids]
    assert (
        0.09 < sum(kept) / len(ids) < 0.11
        and kept == [screen.keeps(i) for i in reversed(ids)][::-1]
    )
    other_seed = [ScreenSettings(keep_fraction=0.1, seed=1).keeps(i) for i in ids]
    assert other_seed != kept and not any(
        ScreenSettings(keep_fraction=0.0).keeps(i) for i in ids[:1000]
    )
    with pytest.raises(SettingsError, match="keep_fraction"):
        ScreenSettings(keep_fraction=1.5)


def test_gpaw_v1_protocol_hash_is_unchanged() -> None:
    expected = protocol_hash_of(json.loads((GOLD / "protocol.json").read_text()))
    assert DFTProtocol().hash() == expected
    hashes = {json.loads(p.read_text())["protocol_hash"] for p in (GOLD / "results").glob("*.json")}
    assert expected in hashes
    assert load_protocol(DFTProtocol().to_dict()) == DFTProtocol()
    scf = SCFProtocol()
    assert (
        load_protocol(json.loads(json.dumps(scf.to_dict()))) == scf
        and scf.hash() != DFTProtocol().hash()
    )
    electronic = (
        "xc",
        "pw_cutoff_ev",
        "kpoint_density",
        "kpoint_gamma",
        "smearing_width_ev",
        "magnetic_elements",
        "initial_magmom",
        "scf_fallback_mixer",
        "min_empty_bands",
        "density_gridrefinement",
    )
    assert all(getattr(scf, k) == getattr(DFTProtocol(), k) for k in electronic)
    with pytest.raises(SettingsError, match="unknown key"):
        SCFProtocol.from_dict({"eos": "birchmurnaghan"})
    with pytest.raises(SettingsError, match="refine_symprec"):
        SCFProtocol(refine_symprec=0.1)


def test_enumeration_is_broad_deterministic_and_references_come_first() -> None:
    head = list(itertools.islice(enumerate_scf_candidates(), 1500))
    assert [c.id for c in head[:300]] == [
        c.id for c in itertools.islice(enumerate_scf_candidates(), 300)
    ]
    assert len({c.id for c in head}) == len(head) and max(len(c.structure) for c in head) <= 8
    elements = {el.symbol for c in head for el in c.structure.composition}
    assert len(elements) >= 60 and elements <= set(SCF_ELEMENTS)
    body = head[9:]  # after the validation set
    compounds = [c for c in body if len(c.structure.composition) > 1]
    assert len({el.symbol for c in compounds[:90] for el in c.structure.composition}) == len(
        SCF_ELEMENTS
    )
    assert set(STRUCTURE_TYPES) - {"beta_sn", "a7"} <= {c.prototype for c in compounds}
    for c in compounds:  # plausible first: charge-balanced or intermetallic (roles from the id)
        assert plausible(c.prototype, tuple(re.findall(r"[A-Z][a-z]?", c.id.split("-")[0]))), c.id
    position = {c.id: i for i, c in enumerate(head)}
    for c in compounds:
        for el in c.structure.composition:
            refs = scf_reference_ids(el.symbol)
            assert all(position.get(r, len(head)) < position[c.id] for r in refs), (c.id, el.symbol)
    small = list(itertools.islice(enumerate_scf_candidates(max_atoms=4), 800))
    assert max(len(c.structure) for c in small) <= 4 and "rutile" not in {
        c.prototype for c in small
    }
    with pytest.raises(RhopropError, match="max_atoms"):
        next(enumerate_scf_candidates(max_atoms=1))


def test_new_structure_types_have_their_space_group_and_at_most_8_atoms() -> None:
    for name, stype in STRUCTURE_TYPES.items():
        n_roles = 1 + max(role for role, _ in stype.sites)
        structure = build_type(name, ("Cu", "Zn", "Se")[:n_roles])
        number = SpacegroupAnalyzer(structure, symprec=1e-3).get_space_group_number()
        assert number == Spacegroup(stype.spacegroup.replace("_", "")).no, name
        assert len(structure) == type_natoms(name) <= 8, name
        distances = structure.distance_matrix[~np.eye(len(structure), dtype=bool)]
        assert distances.min() > 1.5, name  # start cells from radii: no overlapping atoms
    non_cubic = {n for n, t in STRUCTURE_TYPES.items() if t.lattice[0] != "cubic"}
    assert {
        "nias",
        "rutile",
        "anatase",
        "chalcopyrite",
        "beta_sn",
        "mos2",
        "cdi2",
        "delafossite",
        "l10",
    } <= non_cubic


def test_k_mesh_is_raised_where_the_crystal_would_not_map_it_onto_itself() -> None:
    """Body-centred tetragonal primitive cells: density 3.5 gives 5×5×6 for CuInSe2, which the
    4-fold axis does not keep (GPAW then drops symmetry and computes many more k-points)."""
    from ase import Atoms

    from rhoprop.dft.calc import kpoint_mesh
    from rhoprop.dft.scf import primitive_cell, symmetric_kpoint_mesh

    def atoms(structure: Structure) -> Atoms:
        return AseAtomsAdaptor.get_atoms(primitive_cell(structure, 0.01))

    protocol = SCFProtocol()
    cuinse2 = atoms(build_type("chalcopyrite", ("Cu", "In", "Se")))
    assert kpoint_mesh(cuinse2, protocol) == (5, 5, 6)
    assert symmetric_kpoint_mesh(cuinse2, protocol) == (6, 6, 6)
    assert symmetric_kpoint_mesh(cuinse2, SCFProtocol(symmetric_kpoints=False)) == (5, 5, 6)
    rutile = atoms(build_type("rutile", ("Ti", "O")))  # simple tetragonal: 5×5×8 is symmetric
    assert symmetric_kpoint_mesh(rutile, protocol) == kpoint_mesh(rutile, protocol) == (5, 5, 8)


def test_reduced_cell_is_the_same_crystal_with_fewer_k_points_and_revision_1_stays_valid() -> None:
    """reduce_cell (revision 2): a body-centred tetragonal primitive cell (ThCr2Si2 type) moves to
    its Niggli basis, the same lattice, atoms and space group in the same Cartesian frame, whose
    k-mesh of the same density is 6x6x6 instead of 8x8x8; a cell that is already reduced is not
    touched; revision-1 records (the committed folder's) are still accepted, others not."""
    import spglib
    from ase import Atoms

    from rhoprop.dft.scf import niggli_cell, primitive_cell, symmetric_kpoint_mesh

    protocol = SCFProtocol()

    def primitive(name: str, elements: tuple[str, ...]) -> Atoms:
        return AseAtomsAdaptor.get_atoms(primitive_cell(build_type(name, elements), 0.01))

    bct = primitive("thcr2si2", ("Ba", "Fe", "As"))
    reduced = niggli_cell(bct)
    assert reduced is not None
    basis = np.linalg.solve(bct.cell[:].T, reduced.cell[:].T)  # new vectors in the old basis
    assert np.allclose(basis, np.round(basis), atol=1e-9) and round(abs(np.linalg.det(basis))) == 1
    assert np.linalg.det(reduced.cell[:]) > 0
    frac = np.linalg.solve(bct.cell[:].T, (reduced.positions - bct.positions).T).T
    assert np.allclose(frac, np.round(frac), atol=1e-8)  # each atom moved by a lattice vector
    assert list(reduced.numbers) == list(bct.numbers)
    assert max(reduced.cell.cellpar()[3:]) < 111 < max(bct.cell.cellpar()[3:])

    def space_group(a: Atoms) -> str:
        return spglib.get_spacegroup((a.cell[:], a.get_scaled_positions(), a.numbers), 1e-3)

    assert space_group(reduced) == space_group(bct) == "I4/mmm (139)"
    assert symmetric_kpoint_mesh(bct, protocol) == (8, 8, 8)
    assert symmetric_kpoint_mesh(reduced, protocol) == (6, 6, 6)
    assert niggli_cell(primitive("rutile", ("Ti", "O"))) is None
    assert niggli_cell(reduced) is None

    rev1 = protocol.revision_hash(1)
    folder = ROOT / "data-gen" / "gpaw-scf-v1" / "results"
    assert rev1 in {json.loads(p.read_text())["protocol_hash"] for p in folder.glob("*.json")}
    assert rev1 != protocol.hash() and protocol.accepts({"protocol_hash": rev1})
    assert not SCFProtocol(pw_cutoff_ev=400).accepts({"protocol_hash": rev1})
    assert SCFProtocol(reduce_cell=False).accepts({"protocol_hash": rev1})
    assert SCFProtocol(protocol_revision=1).revision_hash(1) is None


def test_fast_tier_runs_its_enumeration_order_so_new_elements_come_early() -> None:
    """The committed fast-tier folder: what is left runs in the enumeration's order (references of
    an unseen element before the compounds of elements already referenced), not ready-first, which
    had put 4,790 compounds of the 34 referenced elements before the next new element."""
    from rhoprop.datasets import load
    from rhoprop.dft.generate import finished_ids, prototype_candidates
    from rhoprop.dft.protocol import SCFProtocol

    out = ROOT / "data-gen" / "gpaw-scf-v1"
    store = load("gpaw-scf-v1")
    stored = set(store.ids)
    store.close()
    protocol = SCFProtocol()
    planned = prototype_candidates(out, 1500, protocol, stored)
    enumerated = list(itertools.islice(enumerate_scf_candidates(), 1500))
    finished = finished_ids(out, enumerated, protocol, stored)
    assert finished, "the committed folder has finished materials"
    assert [c.id for c in planned] == [c.id for c in enumerated]
    done_elements = {
        el.symbol for c in enumerated if c.id in finished for el in c.structure.composition
    }
    todo = [c for c in planned if c.id not in finished]
    new = [c for c in todo[:100] if {el.symbol for el in c.structure.composition} - done_elements]
    assert new or done_elements >= set(SCF_ELEMENTS), "no unseen element among the next 100"
