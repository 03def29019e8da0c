"""Deep ensembles: members trained from successive seeds, averaged, saved and loaded as one model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rhoprop.datasets
from rhoprop.models import load_model
from rhoprop.models.ensemble import Ensemble
from rhoprop.train.config import TrainConfig
from rhoprop.train.fit import loader, train
from rhoprop.train.inference import predict_batches

TARGETS = ("volume_per_atom", "is_metal")


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory):
    store = rhoprop.datasets.load("gpaw-v1")
    ids = store.ids
    parts = {"train": ids[:48], "val": ids[48:64], "test": ids[64:80]}
    config = TrainConfig(model="tiny", targets=TARGETS, epochs=2, patience=0, batch_size=8, ensemble=2,
                         mc_samples=4, progress=False, threads=1, accelerator="cpu")
    out = tmp_path_factory.mktemp("ens") / "run"
    return store, parts, config, out, train("gpaw-v1", out, config, parts=parts)


def test_ensemble_prediction_is_the_mean_of_its_members(ensemble_run) -> None:
    store, parts, config, out, result = ensemble_run
    bundle = load_model(result.model_dir)
    assert isinstance(bundle.model, Ensemble) and len(bundle.model.members) == 2
    members = [load_model(out / "members" / str(k) / "model").model for k in range(2)]
    tasks = list(bundle.tasks)
    preds = [predict_batches(m, loader(store, parts["test"], tasks, config, shuffle=False), mc_samples=1)
             for m in (bundle.model, *members)]
    # regression: the average of the members' standardized outputs, i.e. of their predictions
    np.testing.assert_allclose(preds[0].mean["volume_per_atom"],
                               (preds[1].mean["volume_per_atom"] + preds[2].mean["volume_per_atom"]) / 2,
                               rtol=1e-5, atol=1e-5)
    assert not np.allclose(preds[1].mean["volume_per_atom"], preds[2].mean["volume_per_atom"])  # two seeds
    assert bundle.uncertainty["scale"]["volume_per_atom"] > 0


def test_sampled_uncertainty_includes_the_members_disagreement(ensemble_run) -> None:
    store, parts, config, _, result = ensemble_run
    model = load_model(result.model_dir).model
    batch = next(iter(loader(store, parts["test"], list(model.tasks), config, shuffle=False)))
    with torch.no_grad():
        feats = model.features(*model.batch_inputs(batch))
        model.mc_dropout(True)
        draws = [model.heads_forward(feats)["volume_per_atom"] for _ in range(4)]
        model.mc_dropout(False)
    assert feats.shape[0] == 2  # (members, batch, features)
    assert not torch.allclose(draws[0], draws[1])  # the draws take the members in turn
    assert float(torch.stack(draws).std(dim=0).mean()) > 0


def test_rerunning_a_finished_ensemble_trains_nothing(ensemble_run) -> None:
    _, parts, config, out, result = ensemble_run
    stamp = (out / "model" / "model.safetensors").stat().st_mtime_ns
    again = train("gpaw-v1", out, config, parts=parts)
    assert again.finished and (out / "model" / "model.safetensors").stat().st_mtime_ns == stamp
    assert again.targets == list(TARGETS)
