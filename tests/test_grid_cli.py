"""The ``rhoprop standardize`` command, run in-process on real VASP files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from rhoprop.cli import app
from rhoprop.grid import StandardizeSettings, standardize
from rhoprop.io import read_density

FIXTURES = Path("/work/shared/fixtures/vasp")
runner = CliRunner()


def test_standardize_command_writes_tensor_settings_and_picture(tmp_path: Path) -> None:
    source = FIXTURES / "CHGCAR.LiCoO2_spin.gz"
    out = tmp_path / "licoo2.npy"
    result = runner.invoke(
        app,
        ["standardize", str(source), "--out", str(out), "--mode", "cell", "--n", "16",
         "--channels", "total,spin", "--plot", str(tmp_path / "licoo2.png")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "(2, 16, 16, 16)" in result.output and "has_spin=True" in result.output
    x = np.load(out, allow_pickle=False)
    record = json.loads(out.with_suffix(".json").read_text())
    settings = StandardizeSettings.from_dict(record["settings"])
    assert settings.mode == "cell" and settings.channels == ("total", "spin")
    np.testing.assert_array_equal(x, standardize(read_density(source), settings).x)
    np.testing.assert_allclose(record["side"][:3], read_density(source).structure.lattice.abc, rtol=1e-6)
    assert record["has_spin"] is True
    assert (tmp_path / "licoo2.png").stat().st_size > 1000


def test_standardize_command_reports_missing_species_and_bad_settings(tmp_path: Path) -> None:
    vasp4 = FIXTURES / "CHGCAR.vasp4_8atom_nospecies.gz"
    result = runner.invoke(app, ["standardize", str(vasp4), "--out", str(tmp_path / "x.npy")])
    assert result.exit_code == 2
    assert "species" in result.output.lower()
    result = runner.invoke(app, ["standardize", str(vasp4), "--out", str(tmp_path / "x.npy"), "--mode", "sphere"])
    assert result.exit_code == 2 and "mode" in result.output
    result = runner.invoke(app, ["standardize", str(vasp4), "--species", "Si", "--out", str(tmp_path / "x.txt")])
    assert result.exit_code == 2 and ".npy" in result.output
    assert not any(tmp_path.iterdir())
