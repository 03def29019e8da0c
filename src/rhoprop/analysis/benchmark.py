"""Cross-validated benchmark of rhoprop's models against the baselines a user would pick.

k-fold cross-validation grouped by composition: every material of a reduced formula falls in one
fold (fold = SHA-256 of ``"<seed>:<formula>"`` modulo k), so a test formula is never seen in
training; the rule depends only on the formula, so the folds are the same for every model, every
run and every machine, and a sample appended later keeps the folds of the others. Inside the
training folds, the formulas whose second hash falls below ``val_fraction`` form the validation
part that the networks stop early on; the gradient-boosting models train on all of the training
folds.

Models (names as in the result table):

* ``mean``: the training mean (class frequencies for classification);
* ``composition``: gradient boosting on composition features;
* ``density-invariants``: gradient boosting on the physical invariants of the standardized
  density (:mod:`rhoprop.models.invariants`), the density-only baseline;
* ``density-invariants+composition``: gradient boosting on both;
* ``cgcnn``: the crystal-graph network;
* ``msa3dcnn-<inputs>``: the MSA-3DCNN with ``inputs`` ``image``, ``density`` or
  ``density+structure`` (:class:`rhoprop.train.config.TrainConfig`).

:func:`run_benchmark` computes and returns a :class:`BenchmarkResult` (a row per model, target,
fold and training size); it keeps each finished (model, fold, size) in ``work_dir`` and picks it up
on a rerun. Writing tables and figures is :func:`write_benchmark`'s job.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import rhoprop
from rhoprop.analysis.markdown import markdown_table
from rhoprop.analysis.metrics import classification_metrics, regression_metrics
from rhoprop.data.composite import SEPARATOR, AnyStore, CompositeStore
from rhoprop.data.labels import consistent_predictions
from rhoprop.errors import SettingsError
from rhoprop.models.heads import TaskSpec
from rhoprop.settings import Settings, atomic_write_text, check_fields, is_int, is_number
from rhoprop.train.baselines import (
    BaselineSettings,
    cgcnn_predictions,
    composition_predictions,
    mean_predictions,
)
from rhoprop.train.config import TRAIN_INPUTS, TrainConfig
from rhoprop.train.data import (
    dataset_label,
    label_matrix,
    labels_digest,
    open_store,
    select_tasks,
    store_extra_features,
    subset_ids,
)

#: The eight targets of the paper's non-magnetic set, in its order.
PAPER_TARGETS = (
    "bulk_modulus", "volume_per_atom", "density", "total_energy", "formation_energy",
    "fermi_energy", "band_gap", "bandwidth",
)  # fmt: skip
GB_MODELS = ("composition", "density-invariants", "density-invariants+composition")
#: Hybrid models: an MSA-3DCNN and a gradient boosting reading the same global features, both
#: fitted on the same fold, blended per target (:func:`held_out_hybrid`,
#: :mod:`rhoprop.models.hybrid`). Scored from the members' predictions, so a hybrid costs nothing
#: beyond its members.
HYBRID_MODELS: dict[str, tuple[str, ...]] = {
    "hybrid-density": ("msa3dcnn-density", "density-invariants"),
    "hybrid-density+structure": ("msa3dcnn-density+structure", "density-invariants+composition"),
}
MODELS = (
    "mean", *GB_MODELS, "cgcnn", *(f"msa3dcnn-{inputs}" for inputs in TRAIN_INPUTS),
    *HYBRID_MODELS,
)  # fmt: skip
DEFAULT_MODELS = (
    "mean", *GB_MODELS, "cgcnn", "msa3dcnn-density", "msa3dcnn-density+structure",
    "hybrid-density+structure",
)  # fmt: skip
COLUMNS = (
    "dataset",
    "model",
    "target",
    "fold",
    "n_train",
    "mae",
    "r2",
    "accuracy",
    "f1",
    "roc_auc",
)


def _unit_hash(text: str) -> float:
    """A number in [0, 1) from the SHA-256 of ``text`` (the same everywhere, unlike ``hash``)."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:15], 16) / 16**15


def fold_of(formula: str, folds: int, seed: int = 0) -> int:
    """The cross-validation fold of a reduced formula: SHA-256 of ``"<seed>:<formula>"`` mod
    ``folds``."""
    return int(hashlib.sha256(f"{seed}:{formula}".encode()).hexdigest(), 16) % folds


def is_validation(formula: str, fraction: float, seed: int = 0) -> bool:
    """Whether a training formula goes to the early-stopping part (a second, independent hash)."""
    return _unit_hash(f"val:{seed}:{formula}") < fraction


def formulas_of(store: AnyStore) -> dict[str, str]:
    """Reduced formula of every sample of ``store`` (from the stored structures)."""
    return {i: str(f) for i, f in zip(store.ids, store.column("formula"), strict=True)}


def composition_folds(
    store: AnyStore, folds: int = 5, seed: int = 0, only: str = ""
) -> dict[str, int]:
    """Fold of every sample of ``store`` (of those ``only`` selects, :func:`~rhoprop.train.data.
    subset_ids`, when given): all samples of one reduced formula share a fold."""
    if folds < 2:
        raise SettingsError(f"cross-validation needs at least 2 folds, got {folds}")
    assignment = {i: fold_of(f, folds, seed) for i, f in formulas_of(store).items()}
    if not only:
        return assignment
    return {i: assignment[i] for i in subset_ids(store, only)}


#: The networks' training recipe of every published benchmark (docs/model.md), the default of
#: ``rhoprop benchmark``, ``rhoprop study transfer`` and the study preset ``benchmark``.
NETWORK_RECIPE: dict[str, Any] = {
    "model": "compact",
    "epochs": 60,
    "batch_size": 16,
    "lr": 2e-3,
    "patience": 15,
    "mc_samples": 1,
    "threads": 1,
}


@dataclasses.dataclass(frozen=True)
class BenchmarkSettings(Settings):
    """What :func:`run_benchmark` runs (saved beside its results).

    Attributes:
        folds: number of cross-validation folds (grouped by formula).
        seed: seed of the fold rule and of every model.
        models: model names (:data:`MODELS`).
        targets: targets to score; empty: every target with at least ``min_labels`` labels.
        min_labels: least number of labels a target needs to be scored when ``targets`` is empty.
        val_fraction: fraction of the training formulas the networks stop early on.
        train_fractions: training-set sizes of the learning curves, as fractions of the training
            folds' formulas (nested: each smaller set is part of the larger); 1.0 is the full fold.
        curve_models: models that get the learning curve (the others run at 1.0 only).
        baselines: settings of the gradient-boosting and CGCNN baselines.
        train: training settings of the MSA-3DCNN variants (``inputs`` and ``seed`` set per run).
        only: benchmark the samples this selects (:func:`~rhoprop.train.data.subset_ids`, e.g.
            ``has_spin`` for the spin-polarized materials); empty: every sample.
    """

    folds: int = 5
    seed: int = 0
    models: tuple[str, ...] = DEFAULT_MODELS
    targets: tuple[str, ...] = ()
    min_labels: int = 30
    val_fraction: float = 0.15
    train_fractions: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    curve_models: tuple[str, ...] = (
        "mean",
        "composition",
        "density-invariants",
        "msa3dcnn-density+structure",
    )
    baselines: BaselineSettings = dataclasses.field(default_factory=BaselineSettings)
    train: TrainConfig = dataclasses.field(
        default_factory=lambda: TrainConfig(**NETWORK_RECIPE, progress=False)
    )
    only: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "targets", tuple(self.targets))
        object.__setattr__(self, "train_fractions", tuple(float(f) for f in self.train_fractions))
        object.__setattr__(self, "curve_models", tuple(self.curve_models))
        unknown = [m for m in (*self.models, *self.curve_models) if m not in MODELS]
        if unknown:
            raise SettingsError(
                f"BenchmarkSettings: unknown model(s) {unknown}; valid models are {list(MODELS)}"
            )
        fractions = self.train_fractions
        check_fields(
            "BenchmarkSettings",
            [
                (is_int(self.folds) and self.folds >= 2, "folds must be an int >= 2", self.folds),
                (
                    is_number(self.val_fraction) and 0.0 < self.val_fraction < 0.5,
                    "val_fraction must be in (0, 0.5)",
                    self.val_fraction,
                ),
                (
                    bool(fractions) and all(0.0 < f <= 1.0 for f in fractions),
                    "train_fractions must be fractions in (0, 1]",
                    fractions,
                ),
            ],
        )


@dataclasses.dataclass
class BenchmarkResult:
    """Rows of a benchmark (:data:`COLUMNS`), with the folds and settings they came from."""

    dataset: str
    settings: BenchmarkSettings
    folds: dict[str, int]
    rows: pd.DataFrame
    seconds: dict[str, float]
    tier_rows: pd.DataFrame | None = None
    """For several stores benchmarked together: the same models and folds scored on each store's
    (tier's) part of every test fold, with a ``tier`` column; None for a single store."""

    def summary(self, full_only: bool = True) -> pd.DataFrame:
        """Mean and standard deviation over folds per model and target (full training folds)."""
        return summarize(self.rows, full_only)

    def tier_summary(self, full_only: bool = True) -> pd.DataFrame | None:
        """:meth:`summary` per tier (a ``tier`` column first); None for a single store."""
        if self.tier_rows is None:
            return None
        return summarize(self.tier_rows, full_only, by=("tier",))


def _feature_inputs(model: str) -> str | None:
    """The ``inputs`` (:data:`~rhoprop.models.features.INPUTS`, or ``image``) whose global features
    ``model`` reads; None for models that read none of them (mean, composition, CGCNN)."""
    if model == "density-invariants":
        return "density"
    if model == "density-invariants+composition":
        return "density+structure"
    if model.startswith("msa3dcnn-"):
        return model.removeprefix("msa3dcnn-")
    return None


def _gb_features(store: AnyStore, ids: Sequence[str], model: str) -> np.ndarray:
    """Features of a gradient-boosting baseline for ``ids``."""
    if model == "composition":
        from rhoprop.models.baselines import composition_features

        return np.stack([composition_features(store.structure(i)) for i in ids])
    # density-invariants: the invariants alone; +composition: also electrons per atom, composition
    # and the derived volume and mass density (the network's density+structure features)
    inputs = _feature_inputs(model)
    assert inputs is not None
    return store_extra_features(store, ids, inputs)


def _predict(
    model: str,
    store: AnyStore,
    dataset: str,
    tasks: list[TaskSpec],
    parts: dict[str, list[str]],
    settings: BenchmarkSettings,
    work: Path,
) -> dict[str, np.ndarray]:
    """Train ``model`` on ``parts["train"]`` (+ ``"val"``) and predict ``parts["test"]``."""
    fit_ids = parts["train"] + parts["val"]
    if model == "mean":
        return mean_predictions(tasks, label_matrix(store, fit_ids, tasks), len(parts["test"]))
    if model in GB_MODELS:
        return composition_predictions(
            tasks, _gb_features(store, fit_ids, model), label_matrix(store, fit_ids, tasks),
            _gb_features(store, parts["test"], model), settings.baselines,
        )  # fmt: skip
    if model == "cgcnn":
        structures = {p: [store.structure(i) for i in parts[k]] for p, k in
                      (("train", "train"), ("val", "val"), ("eval", "test"))}  # fmt: skip
        labels = {
            p: label_matrix(store, parts[k], tasks)
            for p, k in (("train", "train"), ("val", "val"), ("eval", "test"))
        }
        accelerator = settings.train.accelerator
        return cgcnn_predictions(
            tasks, structures, labels, settings.baselines, work / "cgcnn", accelerator
        )
    return _predict_msa3dcnn(model, store, dataset, tasks, parts, settings, work)


def _predict_msa3dcnn(
    model: str,
    store: AnyStore,
    dataset: str,
    tasks: list[TaskSpec],
    parts: dict[str, list[str]],
    settings: BenchmarkSettings,
    work: Path,
) -> dict[str, np.ndarray]:
    from rhoprop.models.io import load_model
    from rhoprop.train.fit import loader, train
    from rhoprop.train.inference import predict_batches

    inputs = _feature_inputs(model)
    assert inputs is not None  # an msa3dcnn-<inputs> model
    config = dataclasses.replace(
        settings.train,
        inputs=inputs,
        seed=settings.seed,
        targets=tuple(t.name for t in tasks),
        progress=False,
    )
    result = train(dataset, work / "run", config, parts=parts)
    assert result is not None  # a single process is rank zero
    bundle = load_model(result.model_dir)
    preds = predict_batches(
        bundle.model, loader(store, parts["test"], tasks, config, shuffle=False), mc_samples=1
    )
    order = np.argsort(preds.indices)
    return {name: values[order] for name, values in preds.mean.items()}


def _subsample(ids: list[str], formulas: dict[str, str], fraction: float, seed: int) -> list[str]:
    """The ids whose formulas come first in a seeded hash order, ``fraction`` of the formulas
    (nested)."""
    if fraction >= 1.0:
        return list(ids)
    groups = sorted({formulas[i] for i in ids}, key=lambda f: _unit_hash(f"curve:{seed}:{f}"))
    keep = set(groups[: max(1, round(fraction * len(groups)))])
    return [i for i in ids if formulas[i] in keep]


def fold_parts(
    folds: dict[str, int],
    formulas: dict[str, str],
    fold: int,
    settings: BenchmarkSettings,
    fraction: float = 1.0,
) -> dict[str, list[str]]:
    """train / val / test ids of one fold (test: the fold; val: hashed training formulas).

    When no training formula hashes below ``val_fraction`` (a small dataset) and there are at least
    two, the one with the lowest hash is the early-stopping part, so the networks always have one;
    the gradient-boosting baselines fit on train and val together and do not see the difference.
    """
    test = [i for i, f in folds.items() if f == fold]
    rest = _subsample([i for i, f in folds.items() if f != fold], formulas, fraction, settings.seed)
    val = [i for i in rest if is_validation(formulas[i], settings.val_fraction, settings.seed)]
    if not val and len({formulas[i] for i in rest}) >= 2:
        first = min(
            {formulas[i] for i in rest}, key=lambda f: _unit_hash(f"val:{settings.seed}:{f}")
        )
        val = [i for i in rest if formulas[i] == first]
    chosen = set(val)
    train = [i for i in rest if i not in chosen]
    return {"train": train, "val": val, "test": test}


def score_rows(
    dataset: str, model: str, fold: int, tasks: Sequence[TaskSpec], truth: np.ndarray,
    preds: dict[str, np.ndarray], n_train: dict[str, int],
) -> list[dict[str, Any]]:  # fmt: skip
    """One row per target: MAE and R² (regression) or accuracy, F1 and ROC-AUC (classification)."""
    rows = []
    for j, task in enumerate(tasks):
        row: dict[str, Any] = {c: math.nan for c in COLUMNS}
        row.update(
            dataset=dataset, model=model, target=task.name, fold=fold, n_train=n_train[task.name]
        )
        pred = np.asarray(preds[task.name])
        if task.is_regression:
            m = regression_metrics(truth[:, j], pred)
            row.update(mae=m["mae"], r2=m["r2"])
        else:
            m = classification_metrics(truth[:, j], pred)
            row.update(accuracy=m["accuracy"], f1=m["f1"], roc_auc=m["roc_auc"])
        rows.append(row)
    return rows


def benchmark_tasks(
    store: AnyStore,
    settings: BenchmarkSettings,
    ids: Sequence[str] | None = None,
    among: str = "",
) -> list[TaskSpec]:
    """The targets a benchmark scores: ``settings.targets``, or those with enough labels among
    ``ids`` (default: every sample; ``among`` names them in the error when none has)."""
    if settings.targets:
        return select_tasks(store, settings.targets, store.ids)
    labels = store.labels if ids is None else store.labels.loc[list(ids)]
    counts = labels.notna().sum()
    names = [t for t in store.targets if counts.get(t, 0) >= settings.min_labels]
    if not names:
        raise SettingsError(
            f"no target of {store.path} has {settings.min_labels} labels{among}; lower min_labels "
            "or name --targets"
        )
    return select_tasks(store, names, store.ids)


def _cache_key(
    settings: BenchmarkSettings, model: str, parts: dict[str, list[str]], tasks: Sequence[TaskSpec]
) -> str:
    relevant = {
        "model": model,
        "seed": settings.seed,
        "targets": [t.name for t in tasks],
        "parts": {p: sorted(v) for p, v in parts.items()},
        # the threads of a fit do not change its result
        "baselines": (
            {k: v for k, v in settings.baselines.to_dict().items() if k != "threads"}
            if not model.startswith("msa3dcnn")
            else None
        ),
        "train": settings.train.key_dict() if model.startswith("msa3dcnn") else None,
        "rhoprop": rhoprop.__version__,
    }
    if model.startswith("msa3dcnn"):  # the architecture a size stands for may change
        from rhoprop.models.msa3dcnn import model_config

        relevant["architecture"] = model_config(settings.train.model).to_dict()
    if _feature_inputs(model) is not None:  # the density invariants' definitions may change
        from rhoprop.models.invariants import INVARIANTS_VERSION

        relevant["invariants"] = INVARIANTS_VERSION
    if (_feature_inputs(model) or "").startswith("density+structure"):
        # results computed before these columns existed must not be reused
        from rhoprop.models.features import DERIVED_NAMES

        relevant["derived_features"] = list(DERIVED_NAMES)
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def cache_file(
    model: str,
    tasks: Sequence[TaskSpec],
    parts: dict[str, list[str]],
    settings: BenchmarkSettings,
    work: Path,
    tag: str,
) -> Path:
    """Where :func:`cached_predictions` keeps the predictions of ``model`` trained on ``parts``
    (a hybrid keeps none of its own: see :func:`is_cached`)."""
    key = _cache_key(settings, model, parts, tasks)
    return work / "cache" / model.replace("+", "_") / f"{tag}-{key}.json"


def fit_labels_digest(
    store: AnyStore, tasks: Sequence[TaskSpec], parts: dict[str, list[str]]
) -> str:
    """The :func:`~rhoprop.train.data.labels_digest` of the labels a model of ``parts`` is fitted
    to (its train and val parts, every target of ``tasks``): a cached prediction is reused only
    while they are unchanged, so a corrected or newly merged label retrains what it touches."""
    fit = list(parts.get("train", [])) + list(parts.get("val", []))
    return labels_digest(store.labels, fit, [t.name for t in tasks])


def _read_cache(cache: Path, digest: str) -> dict[str, Any] | None:
    """The record in ``cache`` when it exists and was fitted to the labels ``digest`` names
    (records written before the digest existed, 2026-12-07, are read as they are)."""
    if not cache.is_file():
        return None
    stored: dict[str, Any] = json.loads(cache.read_text())
    if stored.get("fit_labels", digest) != digest:
        return None
    return stored


def is_cached(
    model: str,
    store: AnyStore,
    tasks: Sequence[TaskSpec],
    parts: dict[str, list[str]],
    settings: BenchmarkSettings,
    work: Path,
    tag: str,
) -> bool:
    """Whether :func:`cached_predictions` would read ``model``'s predictions without training (for
    a hybrid: every member's): a record of these settings and parts, fitted to the labels the
    store holds now."""
    members = HYBRID_MODELS.get(model, (model,))
    digest = fit_labels_digest(store, tasks, parts)
    return all(
        _read_cache(cache_file(m, tasks, parts, settings, work, tag), digest) is not None
        for m in members
    )


def cached_predictions(
    model: str,
    store: AnyStore,
    dataset: str,
    tasks: list[TaskSpec],
    parts: dict[str, list[str]],
    settings: BenchmarkSettings,
    work: Path,
    tag: str,
    about: dict[str, Any] | None = None,
) -> tuple[dict[str, np.ndarray], float]:
    """Raw test predictions of ``model`` trained on ``parts`` and the seconds they took: read from
    ``work/cache/<model>/<tag>-<key>.json`` when an earlier call computed them (``key`` hashes the
    settings that matter, the targets and every id of every part) from the same training labels
    (:func:`fit_labels_digest`), else computed and saved there atomically (``about`` goes into the
    saved record, with the labels' digest). Not for hybrids: see :func:`fold_predictions`."""
    if model in HYBRID_MODELS:
        raise SettingsError(f"{model} is scored from its members: use fold_predictions")
    cache = cache_file(model, tasks, parts, settings, work, tag)
    digest = fit_labels_digest(store, tasks, parts)
    stored = _read_cache(cache, digest)
    if stored is not None:
        preds = {k: np.asarray(v, dtype=float) for k, v in stored["predictions"].items()}
        return preds, float(stored["seconds"])
    t0 = time.perf_counter()
    preds = _predict(
        model,
        store,
        dataset,
        tasks,
        parts,
        settings,
        work / "runs" / cache.parent.name / cache.stem,
    )
    elapsed = time.perf_counter() - t0
    payload = {
        "model": model,
        **(about or {}),
        "fit_labels": digest,
        "test_ids": parts["test"],
        "seconds": elapsed,
        "predictions": {k: np.asarray(v).tolist() for k, v in preds.items()},
    }
    atomic_write_text(cache, json.dumps(payload) + "\n")
    return preds, elapsed


def held_out_hybrid(
    tasks: Sequence[TaskSpec],
    network: Sequence[dict[str, np.ndarray]],
    trees: Sequence[dict[str, np.ndarray]],
    truths: Sequence[np.ndarray],
) -> list[dict[str, np.ndarray]]:
    """A hybrid's raw predictions on each fold's test part from its members' (``network[k]``,
    ``trees[k]``): per target the mean, or the network alone where it scores better on the other
    folds' test parts (:func:`~rhoprop.models.hybrid.choose_weights`), so no fold's weights
    see its own labels. ``rhoprop hybrid`` applies the same rule on a validation part."""
    from rhoprop.models.hybrid import blend_predictions, choose_weights

    out = []
    for k in range(len(network)):
        others = [o for o in range(len(network)) if o != k]
        weights, _ = choose_weights(
            tasks,
            np.concatenate([truths[o] for o in others]),
            {t.name: np.concatenate([network[o][t.name] for o in others]) for t in tasks},
            {t.name: np.concatenate([trees[o][t.name] for o in others]) for t in tasks},
        )
        out.append(blend_predictions(weights, network[k], trees[k]))
    return out


def fold_predictions(
    model: str,
    store: AnyStore,
    dataset: str,
    tasks: list[TaskSpec],
    every: Sequence[dict[str, list[str]]],
    settings: BenchmarkSettings,
    work: Path,
    tags: Sequence[str],
    abouts: Sequence[dict[str, Any]],
) -> Iterator[tuple[dict[str, np.ndarray], float]]:
    """(raw test predictions, seconds) of ``model`` on each fold in turn (``every[k]`` its parts):
    :func:`cached_predictions` one fold at a time, so a long run reports each fold as it finishes.
    A hybrid's come all at once, from its members' cached predictions (trained here when missing)
    by :func:`held_out_hybrid`, with the members' seconds summed."""
    if model not in HYBRID_MODELS:
        for parts, tag, about in zip(every, tags, abouts, strict=True):
            yield cached_predictions(
                model, store, dataset, tasks, parts, settings, work, tag, about
            )
        return
    members = [
        list(fold_predictions(m, store, dataset, tasks, every, settings, work, tags, abouts))
        for m in HYBRID_MODELS[model]
    ]
    truths = [label_matrix(store, parts["test"], tasks) for parts in every]
    network, trees = ([p for p, _ in runs] for runs in members)
    preds = held_out_hybrid(tasks, network, trees, truths)
    yield from ((p, sum(runs[k][1] for runs in members)) for k, p in enumerate(preds))


def run_benchmark(
    dataset: str,
    work_dir: str | Path,
    settings: BenchmarkSettings | None = None,
    on_step: Callable[[str], None] | None = None,
) -> BenchmarkResult:
    """Cross-validate every model of ``settings`` on ``dataset`` and return the scores.

    Each (model, fold, training size) is computed once: its predictions are kept in
    ``work_dir/cache`` (keyed by the settings, targets and ids) and reused on a rerun, so an
    interrupted benchmark continues where it stopped. ``on_step`` receives a line per finished step.
    """
    settings = settings or BenchmarkSettings()
    work = Path(work_dir)
    store = open_store(dataset)
    folds = composition_folds(store, settings.folds, settings.seed, settings.only)
    tasks = benchmark_tasks(store, settings, list(folds) if settings.only else None)
    formulas = formulas_of(store)
    label = dataset_label(dataset) + (f" ({settings.only})" if settings.only else "")
    rows: list[dict[str, Any]] = []
    tier_rows: list[dict[str, Any]] = []
    tier_of = (
        {i: store.tier(i) for i in store.ids}
        if isinstance(store, CompositeStore) and len(store.tiers) > 1
        else None
    )
    seconds: dict[str, float] = {}
    for model in settings.models:
        fractions = settings.train_fractions if model in settings.curve_models else (1.0,)
        for fraction in sorted(set(fractions) | {1.0}):
            every = [
                fold_parts(folds, formulas, k, settings, fraction) for k in range(settings.folds)
            ]
            for fold, parts in enumerate(every):
                if not parts["test"]:
                    raise SettingsError(
                        f"fold {fold} of {settings.folds} is empty; use fewer folds"
                    )
            tags = [f"fold{k}-f{fraction:g}" for k in range(settings.folds)]
            abouts = [{"fold": k, "fraction": fraction} for k in range(settings.folds)]
            computed = fold_predictions(
                model, store, str(dataset), tasks, every, settings, work, tags, abouts
            )
            for fold, (parts, (preds, elapsed)) in enumerate(zip(every, computed, strict=True)):
                seconds[model] = seconds.get(model, 0.0) + elapsed
                fit_ids = parts["train"] + parts["val"]
                train_labels = label_matrix(store, fit_ids, tasks)
                n_train = {
                    t.name: int(np.isfinite(train_labels[:, j]).sum()) for j, t in enumerate(tasks)
                }
                truth = label_matrix(store, parts["test"], tasks)
                # scored as rhoprop reports them (the cache keeps the raw outputs)
                preds = consistent_predictions(tasks, preds)
                new = score_rows(label, model, fold, tasks, truth, preds, n_train)
                for row in new:
                    row["fraction"] = fraction
                rows += new
                if tier_of is not None:
                    tier_rows += _tier_rows(
                        label, model, fold, tasks, truth, preds, n_train, parts["test"], tier_of,
                        fraction,
                    )  # fmt: skip
                if on_step is not None:
                    on_step(f"{model} fold {fold} fraction {fraction:g}: {elapsed:.1f} s")
    frame = pd.DataFrame(rows, columns=[*COLUMNS, "fraction"])
    by_tier = (
        pd.DataFrame(tier_rows, columns=["tier", *COLUMNS, "fraction"])
        if tier_of is not None
        else None
    )
    return BenchmarkResult(label, settings, folds, frame, seconds, by_tier)


def _tier_rows(
    dataset: str, model: str, fold: int, tasks: Sequence[TaskSpec], truth: np.ndarray,
    preds: dict[str, np.ndarray], n_train: dict[str, int], test_ids: Sequence[str],
    tier_of: dict[str, str], fraction: float,
) -> list[dict[str, Any]]:  # fmt: skip
    """:func:`score_rows` on each tier's part of one test fold (targets a tier lacks left out)."""
    tiers = np.asarray([tier_of[i] for i in test_ids])
    out: list[dict[str, Any]] = []
    for tier in dict.fromkeys(tiers.tolist()):
        mask = tiers == tier
        part = {k: np.asarray(v)[mask] for k, v in preds.items()}
        for row in score_rows(dataset, model, fold, tasks, truth[mask], part, n_train):
            if all(not np.isfinite(row[m]) for m in ("mae", "r2", "accuracy", "f1", "roc_auc")):
                continue  # no labels of this target in this tier's part of the fold
            out.append({"tier": tier, **row, "fraction": fraction})
    return out


def summarize(rows: pd.DataFrame, full_only: bool = True, by: Sequence[str] = ()) -> pd.DataFrame:
    """Per model and target (and per ``by`` column, e.g. ``tier``, first): mean and standard
    deviation over folds of MAE and R² (regression), ROC-AUC, accuracy and F1 (classes; macro F1
    for several classes)."""
    data = rows[rows["fraction"] == 1.0] if full_only and "fraction" in rows else rows
    grouped = data.groupby([*by, "target", "model"], sort=False)
    out = grouped[["mae", "r2", "roc_auc", "accuracy", "f1"]].agg(["mean", "std"])
    out.columns = [f"{a}_{b}" for a, b in out.columns]
    out["folds"] = grouped.size()
    return out.reset_index()


def paired_comparison(rows: pd.DataFrame, reference: str, metric: str = "mae") -> pd.DataFrame:
    """Reference model against every other, per target, paired over folds (full training folds).

    Columns: target, model, mean difference (other − reference; for MAE positive means the
    reference is better), reference wins (folds), folds, p (two-sided paired t-test; NaN with
    fewer than 3 folds or no spread).
    """
    from scipy import stats

    data = rows[rows["fraction"] == 1.0] if "fraction" in rows else rows
    out = []
    for target, group in data.groupby("target", sort=False):
        table = group.pivot_table(index="fold", columns="model", values=metric)
        if reference not in table or table[reference].isna().all():
            continue
        for model in table.columns:
            if model == reference:
                continue
            pair = table[[reference, model]].dropna()
            diff = pair[model] - pair[reference]
            better = diff > 0 if metric in ("mae",) else diff < 0
            p = math.nan
            if len(pair) >= 3 and float(diff.std()) > 0:
                p = float(stats.ttest_rel(pair[model], pair[reference]).pvalue)
            out.append(
                {
                    "target": target,
                    "model": model,
                    "mean_difference": float(diff.mean()),
                    "reference_wins": int(better.sum()),
                    "folds": len(pair),
                    "p": p,
                }
            )
    return pd.DataFrame(out)


def best_models(rows: pd.DataFrame) -> pd.DataFrame:
    """Per target, the lowest mean MAE (or highest ROC-AUC) and every model within one
    fold-standard-deviation of it (the criterion of the model issue)."""
    summary = summarize(rows)
    out = []
    for target, group in summary.groupby("target", sort=False):
        regression = group["mae_mean"].notna().any()
        col, spread = ("mae_mean", "mae_std") if regression else ("roc_auc_mean", "roc_auc_std")
        group = group.dropna(subset=[col])
        if group.empty:
            continue
        best = group.loc[group[col].idxmin() if regression else group[col].idxmax()]
        tol = float(best[spread]) if np.isfinite(best[spread]) else 0.0
        close = group[(group[col] - best[col]).abs() <= tol]
        out.append(
            {
                "target": target,
                "best": best["model"],
                "value": float(best[col]),
                "std": tol,
                "within_one_std": ",".join(close["model"]),
            }
        )
    return pd.DataFrame(out)


# --- output ------------------------------------------------------------------------------------


def _fmt(mean: float, std: float) -> str:
    if not np.isfinite(mean):
        return ""
    digits = 3 if abs(mean) < 10 else 1
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if np.isfinite(std) else f"{mean:.{digits}f}"


def _score_table(rows: pd.DataFrame, models: Sequence[str]) -> str:
    """Markdown table of ``rows``: per target and model the mean ± std over folds of the MAE
    (regression) or ROC-AUC (classes), the best in bold and those within one std in italics."""
    summary = summarize(rows)
    best = best_models(rows).set_index("target")
    table = []
    for target, group in summary.groupby("target", sort=False):
        regression = group["mae_mean"].notna().any()
        col = "mae" if regression else "roc_auc"
        cells = []
        info = best.loc[target] if target in best.index else None
        close = set(str(info["within_one_std"]).split(",")) if info is not None else set()
        for model in models:
            row = group[group["model"] == model]
            text = (
                _fmt(float(row[f"{col}_mean"].iloc[0]), float(row[f"{col}_std"].iloc[0]))
                if len(row)
                else ""
            )
            if info is not None and model == info["best"]:
                text = f"**{text}**"
            elif model in close and text:
                text = f"*{text}*"
            cells.append(text)
        unit = "" if regression else " (AUC)"
        table.append([f"{target}{unit}", *cells])
    return markdown_table(["target", *models], table, "l" + "r" * len(models))


def render_markdown(result: BenchmarkResult, reference: str | None = None) -> str:
    """The benchmark as markdown: MAE (regression) or ROC-AUC (classification), mean ± standard
    deviation over folds per target and model; per target the best in bold, and the paired
    comparison of ``reference`` with every other model."""
    summary = result.summary()
    models = [m for m in result.settings.models if m in set(summary["model"])]
    lines = [
        f"Dataset `{result.dataset}`, {result.settings.folds}-fold cross-validation grouped by "
        f"formula (seed {result.settings.seed}), {len(result.folds)} materials. Regression: MAE, "
        "classification: ROC-AUC; mean ± standard deviation over folds; **bold**: the best, "
        "*italic*: within one fold-standard-deviation of it.",
        "",
        _score_table(result.rows, models),
    ]
    if reference and reference in models:
        paired = paired_comparison(result.rows, reference, "mae")
        if not paired.empty:
            lines += [
                "",
                f"Paired over folds, `{reference}` against each model (MAE difference other − "
                f"{reference}: positive means {reference} is better; wins out of the folds; p of a "
                "two-sided paired t-test):",
                "",
            ]
            lines.append(
                markdown_table(
                    ["target", "model", "difference", "wins", "p"],
                    [
                        [
                            r.target,
                            r.model,
                            f"{r.mean_difference:+.3g}",
                            f"{r.reference_wins}/{r.folds}",
                            f"{r.p:.3g}",
                        ]
                        for r in paired.itertuples()
                    ],
                    "llrrr",
                )
            )
    if result.tier_rows is not None:
        for tier, part in result.tier_rows.groupby("tier", sort=False):
            n = sum(1 for i in result.folds if i.partition(SEPARATOR)[0] == tier)
            lines += [
                "",
                f"The same models and folds scored on the `{tier}` materials of each test fold "
                f"only ({n} materials; trained on every store):",
                "",
                _score_table(part.drop(columns="tier"), models),
            ]
    return "\n".join(lines) + "\n"


def plot_benchmark(result: BenchmarkResult, path: str | Path) -> None:
    """Bars of MAE / MAE of the mean predictor per regression target and model, with fold spread."""
    from matplotlib.figure import Figure

    from rhoprop.analysis.figures import save_figure

    data = result.rows[(result.rows["fraction"] == 1.0) & result.rows["mae"].notna()].copy()
    mean_mae = data[data["model"] == "mean"].set_index(["target", "fold"])["mae"]
    if not mean_mae.empty:
        data["relative"] = (
            data["mae"].to_numpy()
            / mean_mae.reindex(pd.MultiIndex.from_frame(data[["target", "fold"]])).to_numpy()
        )
    else:
        data["relative"] = data["mae"]
    targets = list(dict.fromkeys(data["target"]))
    models = [m for m in result.settings.models if m in set(data["model"])]
    fig = Figure(figsize=(max(6.0, 0.9 * len(targets) + 2), 4.2))
    ax = fig.add_subplot()
    width = 0.8 / max(len(models), 1)
    for k, model in enumerate(models):
        stats = (
            data[data["model"] == model]
            .groupby("target")["relative"]
            .agg(["mean", "std"])
            .reindex(targets)
        )
        x = np.arange(len(targets)) + (k - (len(models) - 1) / 2) * width
        ax.bar(x, stats["mean"], width, yerr=stats["std"], label=model, capsize=2)
    ax.set_xticks(np.arange(len(targets)), targets, rotation=35, ha="right")
    ax.set_ylabel("MAE / MAE of the mean predictor" if not mean_mae.empty else "MAE")
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"{result.dataset}: {result.settings.folds}-fold CV grouped by formula")
    save_figure(fig, path)


def plot_learning_curves(
    result: BenchmarkResult, path: str | Path, targets: Sequence[str] = PAPER_TARGETS
) -> None:
    """MAE against the number of training materials (mean ± spread over folds), one panel per
    target."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FormatStrFormatter

    from rhoprop.analysis.figures import save_figure

    data = result.rows[
        result.rows["mae"].notna() & result.rows["model"].isin(result.settings.curve_models)
    ]
    targets = [t for t in targets if t in set(data["target"])]
    if not targets:
        return
    cols = min(4, len(targets))
    rows = -(-len(targets) // cols)
    fig = Figure(figsize=(3.6 * cols, 3.0 * rows), layout="constrained")
    for k, target in enumerate(targets):
        ax = fig.add_subplot(rows, cols, k + 1)
        for model, group in data[data["target"] == target].groupby("model", sort=False):
            stats = group.groupby("fraction").agg(
                n=("n_train", "mean"), mae=("mae", "mean"), sd=("mae", "std")
            )
            ax.errorbar(
                stats["n"], stats["mae"], yerr=stats["sd"], marker="o", ms=3, capsize=2, label=model
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):  # plain numbers, not 6x10^-1, on both log axes
            axis.set_major_formatter(FormatStrFormatter("%g"))
            axis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.tick_params(which="both", labelsize=7)
        ax.set_title(target, fontsize=9)
        ax.set_xlabel("training materials", fontsize=8)
        ax.set_ylabel("MAE", fontsize=8)
        if k == 0:
            ax.legend(fontsize=6)
    save_figure(fig, path)


def write_benchmark(
    result: BenchmarkResult, out_dir: str | Path, reference: str | None = None
) -> list[Path]:
    """Write the rows (``benchmark.csv``), summary, paired comparison, folds, settings, markdown
    table and figures of ``result`` into ``out_dir``; return the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "rows": out / "benchmark.csv", "summary": out / "summary.csv", "best": out / "best.csv",
        "folds": out / "folds.json", "settings": out / "settings.json",
        "markdown": out / "benchmark.md", "figure": out / "benchmark.png",
        "curves": out / "learning_curves.png",
    }  # fmt: skip
    atomic_write_text(paths["rows"], result.rows.to_csv(index=False))
    atomic_write_text(paths["summary"], result.summary().to_csv(index=False))
    atomic_write_text(paths["best"], best_models(result.rows).to_csv(index=False))
    written = [paths[k] for k in ("rows", "summary", "best")]
    if result.tier_rows is not None:
        paths["tier_rows"] = out / "by_tier.csv"
        paths["tier_summary"] = out / "by_tier_summary.csv"
        atomic_write_text(paths["tier_rows"], result.tier_rows.to_csv(index=False))
        tier_summary = summarize(result.tier_rows, by=("tier",))
        atomic_write_text(paths["tier_summary"], tier_summary.to_csv(index=False))
        written += [paths["tier_rows"], paths["tier_summary"]]
    if reference:
        paths["paired"] = out / "paired.csv"
        atomic_write_text(
            paths["paired"], paired_comparison(result.rows, reference).to_csv(index=False)
        )
        written.append(paths["paired"])
    atomic_write_text(
        paths["folds"],
        json.dumps(
            {
                "folds": result.settings.folds,
                "seed": result.settings.seed,
                "rule": "sha256('<seed>:<formula>') mod folds",
                "assignment": result.folds,
            },
            indent=1,
            sort_keys=True,
        )
        + "\n",
    )
    result.settings.to_json(paths["settings"])
    atomic_write_text(paths["markdown"], render_markdown(result, reference))
    plot_benchmark(result, paths["figure"])
    plot_learning_curves(result, paths["curves"])
    return [
        *written,
        paths["folds"],
        paths["settings"],
        paths["markdown"],
        paths["figure"],
        paths["curves"],
    ]
