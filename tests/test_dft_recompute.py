"""Recomputing a committed material's density from its result JSON (real GPAW, Al fcc: ~5 s)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("gpaw")

from rhoprop.dft.recompute import DensityMismatchError, missing_densities, recompute_density, recompute_missing
from rhoprop.io import read_density

RESULTS = Path(__file__).resolve().parents[1] / "data-gen" / "gpaw-v1" / "results"

pytestmark = pytest.mark.dft


def _copy(tmp_path: Path, *ids: str) -> Path:
    (tmp_path / "results").mkdir()
    for mid in ids:
        shutil.copy(RESULTS / f"{mid}.json", tmp_path / "results" / f"{mid}.json")
    return tmp_path


def test_recomputed_density_reproduces_the_stored_energy_and_integrates_to_the_valence_count(tmp_path):
    out = _copy(tmp_path, "Al-fcc", "O2-dimer")
    assert missing_densities(out) == ["Al-fcc"]  # the molecule has no density
    report = recompute_missing(out)
    assert list(report["done"]) == ["Al-fcc"] and not report["failed"]
    assert abs(report["done"]["Al-fcc"]["delta_ev_per_atom"]) < 1e-6
    density = read_density(out / "chgcar" / "Al-fcc.CHGCAR")
    assert density.electron_count() == pytest.approx(3.0, abs=0.02)
    assert missing_densities(out) == []  # resumable: done once the CHGCAR exists


def test_a_result_whose_energy_is_not_reproduced_is_refused_and_nothing_is_written(tmp_path):
    out = _copy(tmp_path, "Al-fcc")
    path = out / "results" / "Al-fcc.json"
    record = json.loads(path.read_text())
    record["scf"]["energy"] += 0.05
    path.write_text(json.dumps(record))
    with pytest.raises(DensityMismatchError, match="meV/atom"):
        recompute_density(out, "Al-fcc")
    assert not (out / "chgcar" / "Al-fcc.CHGCAR").exists()
