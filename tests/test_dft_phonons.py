"""rhoprop.dft.phonons: finite-displacement phonons with real GPAW forces on tiny supercells.

The inputs are the committed gpaw-v1 results of Al fcc and Al sc (their structures) with a coarse
electronic protocol (250 eV, k-point density 1.5 Å) written into a copy, so that an 8-atom supercell
SCF takes a few seconds; everything else (phonopy, GPAW, the batch runner, the labels) is the real
code path.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from rhoprop.cli import app
from rhoprop.dft.phonons import (
    PHONON_LABEL_SCHEMA,
    PhononProtocol,
    displacement_path,
    generate_phonons,
    phonon_result_path,
    special_point_frequencies,
    supercell_multiples,
)
from rhoprop.dft.protocol import DFTProtocol
from rhoprop.errors import RhopropError, SettingsError

gpaw = pytest.importorskip("gpaw", reason="the dft extra (GPAW) is not installed")
pytest.importorskip("phonopy", reason="the dft extra (phonopy) is not installed")

runner = CliRunner()
GPAW_V1 = Path(__file__).parents[1] / "data-gen" / "gpaw-v1"
COARSE = {"pw_cutoff_ev": 250.0, "kpoint_density": 1.5}
TINY = PhononProtocol()  # the default rule: 2x2x2 supercells, 8 atoms for Al


def _folder(base: Path, ids: list[str]) -> Path:
    """A generation folder holding copies of gpaw-v1 results with the coarse protocol."""
    protocol = DFTProtocol.from_dict({**json.loads((GPAW_V1 / "protocol.json").read_text()), **COARSE})
    out = base / "gen"
    (out / "results").mkdir(parents=True)
    protocol.to_json(out / "protocol.json")
    for mid in ids:
        record = json.loads((GPAW_V1 / "results" / f"{mid}.json").read_text())
        record.update(protocol=protocol.to_dict(), protocol_hash=protocol.hash())
        (out / "results" / f"{mid}.json").write_text(json.dumps(record))
    return out


@pytest.fixture(scope="module")
def al_run(tmp_path_factory) -> Path:
    """``rhoprop generate --phonons`` on Al fcc and Al sc (8-atom supercells)."""
    out = _folder(tmp_path_factory.mktemp("phonons"), ["Al-fcc", "Al-sc"])
    result = runner.invoke(app, ["generate", "--phonons", "--out", str(out), "--max-atoms", "8", "--plots"])
    assert result.exit_code == 0, result.output
    assert "computed 2" in result.output, result.output
    return out


@pytest.mark.dft
def test_phonon_labels_reach_labels_csv_and_targets_json(al_run: Path) -> None:
    fcc = json.loads(phonon_result_path(al_run, "Al-fcc").read_text())
    assert fcc["natoms_supercell"] == 8 and fcc["supercell_capped"] is False  # 2x2x2: edges 5.7 Å
    assert fcc["protocol"]["name"] == "gpaw-phonon-v1" and fcc["protocol_hash"] == PhononProtocol(max_atoms=8).hash()
    assert fcc["dynamically_stable"] is True and fcc["min_frequency_thz"] > -0.2
    assert fcc["electronic_protocol"]["smearing_width_ev"] == 0.2  # the phonon protocol's smearing
    assert fcc["electronic_protocol"]["pw_cutoff_ev"] == 250.0  # everything else: the result's protocol
    bands = fcc["band_structure"]
    assert len(bands["frequencies_thz"]) == len(bands["qpoints"]) == len(bands["distances"])
    assert np.asarray(fcc["dos"]["dos"]).sum() > 0
    ta, ta2, la = special_point_frequencies(fcc)["X"]
    assert ta == pytest.approx(ta2, abs=1e-3)  # the two transverse modes at X are degenerate
    assert 4.0 < ta < 8.0 and 7.5 < la < 12.0  # Al X point: TA 5.8, LA 9.7 THz (neutron data)
    assert (al_run / fcc["files"]["plot"]).stat().st_size > 10_000
    labels = pd.read_csv(al_run / "labels.csv", index_col="id")
    assert list(labels.columns[-2:]) == list(PHONON_LABEL_SCHEMA)
    assert labels.loc["Al-fcc", "dynamically_stable"] == 1 and labels.loc["Al-sc", "dynamically_stable"] == 0
    assert labels.loc["Al-fcc", "min_frequency"] == pytest.approx(0.0)
    assert labels.loc["Al-sc", "min_frequency"] < -1.0
    targets = {t["name"]: t for t in json.loads((al_run / "targets.json").read_text())["targets"]}
    assert targets["dynamically_stable"] == {"name": "dynamically_stable", "kind": "binary", "unit": "",
                                             "classes": ["0", "1"]}
    assert targets["min_frequency"]["unit"] == "THz"


@pytest.mark.dft
def test_acoustic_sum_rule_holds_at_gamma(al_run: Path) -> None:
    fcc = json.loads(phonon_result_path(al_run, "Al-fcc").read_text())
    assert fcc["gamma_acoustic_max_abs_thz"] < 1e-3
    assert np.allclose(fcc["gamma_frequencies_thz"], 0.0, atol=1e-3)  # one atom: only acoustic modes
    assert fcc["max_force_drift"] < 0.01  # GPAW forces of a displaced cell sum to ~0 (eV/Å) before the ASR


@pytest.mark.dft
def test_simple_cubic_aluminium_is_classified_unstable(al_run: Path) -> None:
    sc = json.loads(phonon_result_path(al_run, "Al-sc").read_text())
    assert sc["dynamically_stable"] is False
    assert sc["min_frequency_thz"] < -1.0  # far below the -0.2 THz noise margin


@pytest.mark.dft
def test_rerun_skips_done_materials(al_run: Path) -> None:
    before = phonon_result_path(al_run, "Al-fcc").stat().st_mtime_ns
    report = generate_phonons(al_run, workers=1, protocol=PhononProtocol(max_atoms=8), progress=False)
    assert sorted(report.skipped) == ["Al-fcc", "Al-sc"] and report.computed == []
    assert phonon_result_path(al_run, "Al-fcc").stat().st_mtime_ns == before


@pytest.mark.dft
def test_killed_run_keeps_finished_displacements(tmp_path: Path) -> None:
    out = _folder(tmp_path, ["Al-fcc"])
    protocol = PhononProtocol(plus_minus="both")  # +u and -u: 2 displacements
    script = ("from rhoprop.dft.phonons import PhononProtocol, generate_phonons\n"
              "if __name__ == '__main__':\n"
              f"    generate_phonons({str(out)!r}, protocol=PhononProtocol.from_dict({protocol.to_dict()!r}), "
              "progress=False)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first, second = displacement_path(out, "Al-fcc", 1), displacement_path(out, "Al-fcc", 2)
    try:
        deadline = time.monotonic() + 120
        while not first.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert first.exists(), "the first displacement never finished"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the batch and its GPAW worker, mid-way through displacement 2
        proc.wait()
    assert not second.exists() and not phonon_result_path(out, "Al-fcc").exists()
    kept = first.read_text()
    report = generate_phonons(out, protocol=protocol, progress=False)
    assert report.computed == ["Al-fcc"]
    result = json.loads(phonon_result_path(out, "Al-fcc").read_text())
    assert result["timing"]["reused"] == [1] and result["timing"]["computed"] == [2]
    assert first.read_text() == kept and second.exists()
    plus, minus = (np.asarray(d["forces"]) for d in result["displacements"])
    # inversion through the displaced atom maps the 2x2x2 supercell onto itself site by site
    assert np.abs(plus + minus).max() < 0.1 * np.abs(plus).max()


@pytest.mark.dft
def test_failures_are_recorded_and_not_retried(tmp_path: Path) -> None:
    out = _folder(tmp_path, ["Al-fcc", "Al-sc"])
    report = generate_phonons(out, ["Al-sc"], protocol=TINY, max_minutes=1 / 60, progress=False)
    assert report.failed["Al-sc"].startswith("Timeout: exceeded 1 s of CPU time")
    failures = json.loads((out / "phonons" / "failures.json").read_text())
    assert failures["Al-sc"]["protocol_hash"] == TINY.hash() and "traceback" in failures["Al-sc"]
    assert not phonon_result_path(out, "Al-sc").exists()
    again = generate_phonons(out, ["Al-sc"], protocol=TINY, progress=False)
    assert again.skipped == ["Al-sc"] and again.computed == []
    with pytest.raises(RhopropError, match="Al-fcc"):  # an id with no DFT result: the closest ids
        generate_phonons(out, ["Al-fc"], protocol=TINY, progress=False)


def test_protocol_refuses_unknown_keys_and_bad_values() -> None:
    with pytest.raises(SettingsError, match="unknown key"):
        PhononProtocol.from_dict({"displacement": 0.01})
    with pytest.raises(SettingsError, match="plus_minus"):
        PhononProtocol(plus_minus="minus")
    with pytest.raises(SettingsError, match="imaginary_threshold_thz"):
        PhononProtocol(imaginary_threshold_thz=0.5)
    assert PhononProtocol.from_dict(PhononProtocol().to_dict()).hash() == PhononProtocol().hash()


def test_supercell_rule_and_cap() -> None:
    fcc = np.array([[0, 2.02, 2.02], [2.02, 0, 2.02], [2.02, 2.02, 0]])  # edges 2.86 Å
    assert supercell_multiples(fcc, 1, 7.0, 64) == ([3, 3, 3], False)
    assert supercell_multiples(fcc, 1, 5.0, 64) == ([2, 2, 2], False)
    assert supercell_multiples(fcc, 1, 7.0, 8) == ([2, 2, 2], True)
    hexagonal = np.array([[3.2, 0, 0], [-1.6, 2.77, 0], [0, 0, 5.2]])  # wurtzite-like, 4 atoms
    assert supercell_multiples(hexagonal, 4, 7.0, 100) == ([3, 3, 2], False)
    assert supercell_multiples(hexagonal, 4, 7.0, 64) == ([2, 2, 2], True)  # a and b reduced together
    with pytest.raises(RhopropError, match="max_atoms"):
        supercell_multiples(hexagonal, 4, 7.0, 3)
    cubic = np.eye(3) * 6.0  # a 6 Å cell: 1x1x1 by the edge alone, doubled by the minimum multiple
    assert supercell_multiples(cubic, 5, 5.0, 64) == ([1, 1, 1], False)
    assert supercell_multiples(cubic, 5, 5.0, 64, min_multiple=2) == ([2, 2, 2], False)


def test_a_supercell_gets_the_empty_bands_of_its_cells() -> None:
    """Revision 2: N cells of bcc Ba (10 valence electrons, 5 orbitals per atom) get N x 6 bands,
    not 5N + 1 (with one empty band the partly filled bands of the metal have no room and the SCF
    of an 8-atom supercell never converges); where GPAW's default leaves room, nothing changes."""
    from rhoprop.dft.calc import make_calculator

    dft = DFTProtocol(smearing_width_ev=0.2)
    assert dft.band_count(["Ba"]) == 6 and dft.band_count(["Ba"] * 8) == 41
    assert dft.band_count(["Ba"] * 8, 8) == 48
    assert dft.band_count(["Al"] * 8, 8) is None and dft.band_count(["Al"] * 8) is None
    assert dft.band_count(["Cs", "Cl"] * 8, 8) == dft.band_count(["Cs", "Cl"]) and dft.band_count(["Cs", "Cl"]) is None
    with pytest.raises(SettingsError, match="not 3 copies"):
        dft.band_count(["Ba"] * 8, 3)
    calc = make_calculator(dft, (2, 2, 2), os.devnull, False, ["Ba"] * 8, cells=8)
    assert calc.parameters.nbands == 48


def test_revision_1_results_stay_valid_unless_their_band_count_changed() -> None:
    """The committed phonon results were computed at revision 1, a few recomputed at revision 2:
    revision 1 is still exactly what revision 2 computes except for cells without an empty orbital
    (K, Rb, Cs, Ca, Sr, Ba crystals), whose revision-1 results are not accepted; a result of another DFT result
    is never accepted."""
    import dataclasses

    protocol = PhononProtocol()
    old_hash = dataclasses.replace(protocol, protocol_revision=1).hash()
    assert protocol.protocol_revision == 2 and old_hash != protocol.hash()
    tier = GPAW_V1.parent / "gpaw-scf-v1"
    seen = {1: 0, 2: 0}
    for folder in (GPAW_V1, tier):
        for path in sorted((folder / "phonons" / "results").glob("*.json")):
            record = json.loads(path.read_text())
            source = json.loads((folder / "results" / path.name).read_text())
            symbols = [s["species"][0]["element"] for s in source["structure"]["sites"]]
            # a cell without an empty orbital (K, Rb, Cs, Ca, Sr, Ba crystals): GPAW's default does
            # not do, and revision 2's count differs in a supercell of several cells
            changed = DFTProtocol().band_count(symbols) is not None and record["natoms_supercell"] > len(symbols)
            seen[record["protocol"]["protocol_revision"]] += 1
            assert protocol.accepts(record, source) == (record["protocol_hash"] == protocol.hash() or not changed)
            as_old = {**record, "protocol_hash": old_hash}  # the same material at revision 1
            assert protocol.accepts(as_old, source) == (not changed), record["id"]
            assert not protocol.accepts(record, {**source, "protocol_hash": "0" * 12})
    assert seen[1] >= 80 and seen[2] >= 4  # Sr sc/bcc/fcc in gpaw-v1, Ba bcc/fcc and Ca sc in the fast tier


def test_candidates_come_cheapest_first(tmp_path: Path) -> None:
    """Supercell size first, then the CPU seconds of the material's own DFT result, then id."""
    from rhoprop.dft.phonons import phonon_candidates

    out = _folder(tmp_path, ["Si-diamond", "Fe-bcc", "Cu-fcc", "Na-bcc", "Al-fcc", "Al-sc"])
    order = [c.id for c in phonon_candidates(out)]
    cpu = {mid: json.loads((out / "results" / f"{mid}.json").read_text())["timing"]["cpu_s"] for mid in order}
    # 2x2x2 of 1-atom cells (8 atoms; Na bcc's primitive edges are 3.6 Å), 2-atom diamond (16), then
    # 3x3x3 of 1-atom Fe bcc (edges 2.5 Å, under 5 Å at 2x2x2: 27 atoms)
    assert order[:4] == sorted(order[:4], key=cpu.__getitem__) == ["Al-sc", "Al-fcc", "Na-bcc", "Cu-fcc"]
    assert order[4:] == ["Si-diamond", "Fe-bcc"]


#: Elements in their structure at ambient conditions (the prototypes of both enumerations).
AMBIENT = {
    "fcc": "Al Cu Ag Au Ni Pd Pt Rh Ir Ca Sr Pb",
    "bcc": "Li Na K Rb Cs Ba V Nb Ta Cr Mo W Fe",
    "hcp": "Be Mg Ti Zr Hf Sc Y Co Zn Cd Ru Os Re Tl",
    "diamond": "C Si Ge",
}


def test_committed_labels_call_every_element_in_its_ambient_structure_stable() -> None:
    """A check on the shipped phonon labels of both tiers: an element in the structure it has at
    ambient conditions is dynamically stable. At least 15 such labels exist (2026-12-08: 17)."""
    ambient = {f"{el}-{proto}" for proto, els in AMBIENT.items() for el in els.split()}
    found = {}
    for tier in ("gpaw-v1", "gpaw-scf-v1"):
        folder = GPAW_V1.parent / tier
        protocol = PhononProtocol.from_json(folder / "phonons" / "protocol.json")
        for path in sorted((folder / "phonons" / "results").glob("*.json")):
            record = json.loads(path.read_text())
            source = folder / "results" / path.name
            if record["id"] in ambient and source.exists():
                if protocol.accepts(record, json.loads(source.read_text())):
                    found[f"{tier}/{record['id']}"] = (record["dynamically_stable"], record["min_frequency_thz"])
    assert len(found) >= 15, found
    assert all(stable for stable, _ in found.values()), {k: v for k, v in found.items() if not v[0]}
