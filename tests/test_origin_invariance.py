"""Issue 15, item 3: where a file puts the cell's origin must not change the pretrained model's
predictions. A real VASP density is moved by random fractional vectors (every atom and the field,
exactly: what a file with that origin would hold) and predicted again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import rhoprop.datasets
from rhoprop.grid.origin import shift_origin
from rhoprop.io import read_density
from rhoprop.models import load_model
from rhoprop.train.predict import _predict_one
from rhoprop.train.runs import BUILTIN_MODEL

pytestmark = pytest.mark.usefixtures("one_thread")


def test_pretrained_predictions_stay_within_two_percent_of_each_targets_spread(
    fixtures_dir: Path,
) -> None:
    density = read_density(fixtures_dir / "CHGCAR.LiCoO2_spin.gz")
    bundle = load_model(BUILTIN_MODEL)
    labels = rhoprop.datasets.load("gpaw-v1").labels
    reference = {r["target"]: r for r in _predict_one(bundle, density, mc_samples=1)}
    rng = np.random.default_rng(7)
    for shift in rng.random((3, 3)):
        moved = shift_origin(density, shift)
        for row in _predict_one(bundle, moved, mc_samples=1):
            ref = reference[row["target"]]
            if row["kind"] == "regression":
                spread = float(np.nanstd(labels[row["target"]].to_numpy(dtype=float)))
                assert abs(row["value"] - ref["value"]) <= 0.02 * spread, (row["target"], shift)
            else:
                assert row["value"] == ref["value"], (row["target"], shift)
                assert abs(row["probability"] - ref["probability"]) <= 0.02, (row["target"], shift)
