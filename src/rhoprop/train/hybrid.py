"""Turn a trained network into a hybrid model (:class:`~rhoprop.models.hybrid.Hybrid`): fit the
gradient boosting on the same training materials and global features, recalibrate the 90 %
intervals on the validation part, and write a model directory that ``predict`` and ``evaluate``
read like any other.

``rhoprop hybrid MODEL`` is the command; the cross-validated evidence for the rule is the
benchmark's ``hybrid-<inputs>`` model (``docs/benchmarks.md``).
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rhoprop.errors import SettingsError
from rhoprop.models.hybrid import MIN_SELECTION_LABELS, Hybrid, choose_weights
from rhoprop.models.io import ModelBundle, load_model, save_model
from rhoprop.models.trees import TreeEnsemble
from rhoprop.train.baselines import BaselineSettings, fit_gradient_boosting
from rhoprop.train.config import TrainConfig
from rhoprop.train.data import label_matrix, store_extra_features
from rhoprop.train.evaluate import model_store
from rhoprop.train.fit import calibrate, loader
from rhoprop.train.inference import predict_batches
from rhoprop.train.runs import model_dirs


@dataclasses.dataclass
class HybridResult:
    """What :func:`build_hybrid` made: the model directory, the materials each part used, the
    seconds the gradient boosting took to fit, and the network's share of each target (1: the
    network alone, 0.5: the mean of the two)."""

    model_dir: Path
    dataset: str
    split: str
    n_fit: int
    n_calibration: int
    fit_seconds: float
    weights: dict[str, float] = dataclasses.field(default_factory=dict)


def build_hybrid(
    model: str | os.PathLike[str],
    out: str | os.PathLike[str],
    dataset: str | None = None,
    split: str | None = None,
    settings: BaselineSettings | None = None,
    mc_samples: int | None = None,
) -> HybridResult:
    """Fit gradient boosting beside the network of ``model`` (a model or run directory, or
    ``builtin``) and write the hybrid to ``out``.

    The trees are fitted on the ``train`` part of ``split`` of ``dataset`` (default: the model's
    own) with the network's global features; the 90 % intervals are recalibrated on the ``val``
    part, which neither half was fitted on (the network only stopped early on it). ``out`` must
    not hold a model already. Nothing is written when anything is refused.
    """
    dirs = model_dirs(model)
    if len(dirs) != 1:
        raise SettingsError(
            f"{model} holds {len(dirs)} models (a group run); build a hybrid of each model "
            "directory"
        )
    out = Path(out)
    if (out / "model.json").exists():
        raise SettingsError(f"{out} already holds a model; choose another --out or remove it")
    bundle = load_model(dirs[0])
    if isinstance(bundle.model, Hybrid):
        raise SettingsError(f"{dirs[0]} is a hybrid already")
    inputs = str(bundle.extra.get("inputs", "image"))
    if inputs == "image":
        raise SettingsError(
            f"{dirs[0]} reads the image only (inputs 'image'); a hybrid fits its trees on the "
            "network's global features: train with --inputs density or density+structure"
        )
    ds, sp, store = model_store(dirs[0], bundle, dataset, split)
    parts = store.splits(sp)
    tasks = list(bundle.tasks)
    missing = [t.name for t in tasks if t.name not in store.targets]
    if missing:
        raise SettingsError(f"{store.path} has no labels for the model's targets {missing}")
    tiers = bundle.extra.get("tiers")
    settings = settings or BaselineSettings()
    labels = label_matrix(store, parts["train"], tasks)
    unlabelled = [t.name for j, t in enumerate(tasks) if not np.isfinite(labels[:, j]).any()]
    if unlabelled:
        raise SettingsError(
            f"the {sp}/train part of {ds} has no label for {unlabelled}: the trees cannot be "
            "fitted for them; choose the model's own dataset and split"
        )
    t0 = time.perf_counter()
    x = store_extra_features(store, parts["train"], inputs, tiers=tiers)
    fitted = fit_gradient_boosting(tasks, x, labels, settings)
    trees = TreeEnsemble.from_fitted(fitted, x.shape[1])
    fit_seconds = time.perf_counter() - t0
    gb_record = {k: v for k, v in settings.to_dict().items() if k.startswith("gb_") or k == "seed"}
    hybrid = Hybrid.from_parts(bundle.model, trees, gb_record)  # type: ignore[arg-type]

    train_config: dict[str, Any] = bundle.extra.get("train_config", {})
    config = TrainConfig(
        batch_size=16,
        num_workers=0,
        targets=tuple(t.name for t in tasks),
        inputs=inputs,
        mc_samples=mc_samples or int(bundle.uncertainty.get("samples", 30)),
        seed=int(train_config.get("seed", 0)),
        progress=False,
    )
    # per target: the mean of the two, or the network alone where it scores better on val
    val = parts["val"]
    truth = label_matrix(store, val, tasks)
    net = predict_batches(
        bundle.model, loader(store, val, tasks, config, shuffle=False, tiers=tiers), mc_samples=1
    )
    order = np.argsort(net.indices)
    x_val = store_extra_features(store, val, inputs, tiers=tiers)
    tree_preds = {k: v.numpy() for k, v in trees.decode(trees(torch.from_numpy(x_val))).items()}
    weights, scores = choose_weights(
        tasks, truth, {k: v[order] for k, v in net.mean.items()}, tree_preds
    )
    hybrid.set_weights(weights)
    uncertainty, _, _ = calibrate(
        hybrid, store, parts["val"], tasks, config, f"{sp}/val", tiers=tiers
    )
    uncertainty["method"] = "mc_dropout of the network half (the trees are deterministic)"
    extra = {
        **bundle.extra,
        "hybrid": {
            "network": str(model),
            "rule": (
                "per target the mean of the network's and the gradient boosting's values and "
                "probabilities, or the network alone where it scored better on the val part "
                f"(targets with {MIN_SELECTION_LABELS}+ val labels; MAE, log-loss for classes)"
            ),
            "network_weight": weights,
            "val_scores": scores,
            "fitted_on": f"{ds} {sp}/train",
            "n_fit": len(parts["train"]),
            "fit_seconds": round(fit_seconds, 1),
        },
    }
    model_dir = save_model(
        out,
        ModelBundle(
            model=hybrid,
            standardize=bundle.standardize,
            training=bundle.training,
            uncertainty=uncertainty,
            extra=extra,
        ),
    )
    return HybridResult(
        model_dir, str(ds), sp, len(parts["train"]), len(parts["val"]), fit_seconds, weights
    )
