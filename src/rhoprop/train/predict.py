"""Predict every target of a model for density files, with uncertainties and out-of-distribution
warnings.

Each value comes with an uncertainty: for regression the calibrated MC-dropout standard deviation
and the 90% interval (see :mod:`rhoprop.train.inference`); for classification the predicted class,
its probability, and the MC-dropout spread of that probability. Warnings say where a file differs
from what the model was trained on: another code's densities, another valence-electron count
for some element, a coarser grid, elements never seen in training.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import track

from rhoprop.data import find_density_files
from rhoprop.data.composite import AnyStore
from rhoprop.data.labels import consistent_predictions, gated_samples
from rhoprop.errors import DensityFormatError, SettingsError
from rhoprop.grid import standardize
from rhoprop.io import Density, read_density
from rhoprop.models.features import extra_features
from rhoprop.models.io import ModelBundle, load_model
from rhoprop.train.data import expected_electrons, gpaw_valence
from rhoprop.train.inference import interval90, predict_batches
from rhoprop.train.runs import model_dirs

#: A file's native grid spacing this many times the training's largest spacing is "too coarse".
COARSE_FACTOR = 1.25
#: A training sample with more than this total magnetization (μB per cell) is magnetic.
MAGNETIC_MOMENT = 0.05


@dataclasses.dataclass
class PredictionResult:
    """Predictions for several files.

    Attributes:
        rows: one dict per (file, target): ``file``, ``formula``, ``target``, ``kind``, ``unit``,
            ``value`` (number, or class name), ``uncertainty`` (std, or probability spread),
            ``lo90``/``hi90`` (regression), ``probability`` (classification), ``model``.
        warnings: per file, the warnings about how it differs from the training data.
        errors: per file that could not be read, why.
        models: the model directories used.
    """

    rows: list[dict[str, Any]]
    warnings: dict[str, list[str]]
    errors: dict[str, str]
    models: list[Path]


def expand_paths(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files as given, and the density files inside given folders; a missing path raises."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = find_density_files(p)
            if not found:
                raise DensityFormatError(
                    f"folder {p} contains no density files (CHGCAR, .cube, .xsf)"
                )
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise DensityFormatError(
                f"{p} does not exist; give density files or folders holding them"
            )
    return files


def _composition(density: Density) -> dict[str, float]:
    return {str(el): float(n) for el, n in density.structure.composition.items()}


def input_warnings(density: Density, training: dict[str, Any]) -> list[str]:
    """How ``density`` differs from the training data recorded in a model's ``training`` profile."""
    notes: list[str] = []
    name = Path(density.source).name if density.source else "the input"
    train_code = str(training.get("code", "unknown"))
    if density.code != train_code and train_code != "unknown":
        if density.code == "unknown":
            notes.append(
                f"{name}: the code that produced this density is unknown; the model was trained on "
                f"{train_code.upper()} densities, and codes differ in pseudopotentials and core "
                "regions"
            )
        else:
            notes.append(
                f"{name}: a {density.code.upper()} density, but the model was trained on "
                f"{train_code.upper()} densities; pseudo-densities differ between codes (PAW "
                "setups, core and augmentation regions), so predictions may be biased"
            )
    composition = _composition(density)
    seen = set(training.get("elements", []))
    unseen = sorted(set(composition) - seen) if seen else []
    if unseen:
        notes.append(
            f"{name}: element(s) {', '.join(unseen)} never appear in the training data "
            f"({len(seen)} elements: {', '.join(sorted(seen))}); predictions are extrapolations"
        )
    valence = training.get("valence", {})
    per = valence.get("per_element", {})
    source = "fitted to the training densities"
    expected = expected_electrons(valence, composition) if not unseen else None
    if expected is None and valence.get("matches_gpaw_setups"):
        setups = gpaw_valence(sorted(composition))
        if setups is not None:
            per, source = setups, "of GPAW's PAW setups, which the training densities match"
            expected = sum(n * per[el] for el, n in composition.items())
    if expected is not None:
        found = density.electron_count()
        tolerance = max(0.5, 3 * float(valence.get("rms", 0.0)), 0.02 * expected)
        if abs(found - expected) > tolerance:
            delta = found - expected
            model_text = ", ".join(f"{el} {per[el]:g}" for el in sorted(composition))
            candidates = ", ".join(
                f"{el} {per[el] + delta / n:.3g} instead of {per[el]:.3g}"
                for el, n in sorted(composition.items())
            )
            notes.append(
                f"{name}: holds {found:.2f} electrons, but the training's valence model "
                f"({model_text} electrons per atom, {source}) gives {expected:.2f} for "
                f"{density.structure.composition.formula}; some element has a different number of "
                f"valence electrons (consistent with: {candidates}; e.g. VASP's Li_sv has 3 where "
                "GPAW's Li has 1); the density is not comparable and predictions are unreliable"
            )
    spacing = training.get("grid_spacing", {}).get("max")
    if spacing and density.grid_spacing > COARSE_FACTOR * spacing:
        notes.append(
            f"{name}: grid too coarse: {density.grid_spacing:.3f} Å between points, the training "
            f"data had at most {spacing:.3f} Å; features finer than the grid are missing"
        )
    return notes


def magnetic_elements(store: AnyStore, ids: Sequence[str]) -> list[str]:
    """Elements that the samples ``ids`` of ``store`` hold magnetic: in the majority of the samples
    containing an element, the cell carries a magnetic moment (above :data:`MAGNETIC_MOMENT`)."""
    from pymatgen.core import Composition

    formulas = dict(zip(store.ids, store.column("formula"), strict=True))
    moments = dict(zip(store.ids, store.column("magnetization"), strict=True))
    seen: dict[str, list[bool]] = {}
    for sid in ids:
        for element in Composition(str(formulas[sid])).elements:
            seen.setdefault(str(element), []).append(float(moments[sid]) > MAGNETIC_MOMENT)
    return sorted(el for el, flags in seen.items() if 2 * sum(flags) > len(flags))


def _magnetic_in_training(training: dict[str, Any]) -> list[str] | None:
    """The training profile's magnetic elements; for models saved before profiles recorded them,
    those of their built-in training dataset (None when unknown)."""
    if "magnetic_elements" in training:
        return list(training["magnetic_elements"])
    from rhoprop.datasets import available, load

    name = str(training.get("dataset", ""))
    if name not in available():
        return None
    store = load(name)
    try:
        return magnetic_elements(store, store.ids)
    finally:
        store.close()


def spin_warning(density: Density, bundle: ModelBundle, magnetic: list[str] | None) -> str | None:
    """A warning when a model reads a spin channel, the file has none and it can matter: the file
    holds an element the training data held magnetic (any file when that is unknown)."""
    if "spin" not in bundle.standardize.channels or density.spin is not None:
        return None
    name = Path(density.source).name if density.source else "the input"
    if magnetic is None:
        return f"{name}: no spin density in the file; the model's spin channel is zeros"
    held = sorted(set(_composition(density)) & set(magnetic))
    if not held:
        return None
    return (
        f"{name}: no spin density in the file, but {', '.join(held)} carried a magnetic moment in "
        "most training materials holding it; the model reads a zero spin channel (a non-magnetic "
        "state), so give the spin-polarized density (CHGCAR with magnetization) if the material "
        "is magnetic"
    )


def model_tier(bundle: ModelBundle, as_tier: str | None) -> str | None:
    """The tier a model of ``+tier`` inputs predicts as: ``as_tier``, or its first (reference)
    tier; None for a model that does not read the tier."""
    tiers = list(bundle.extra.get("tiers") or [])
    if not tiers:
        return None
    if as_tier is None:
        return tiers[0]
    if as_tier not in tiers:
        raise SettingsError(
            f"--as-tier {as_tier!r}: this model was trained on the tiers {tiers}; choose one"
        )
    return as_tier


def _predict_one(
    bundle: ModelBundle, density: Density, mc_samples: int | None, as_tier: str | None = None
) -> list[dict[str, Any]]:
    std = standardize(density, bundle.standardize)
    batch = {
        "x": torch.from_numpy(np.ascontiguousarray(std.x))[None],
        "side": torch.from_numpy(np.asarray(std.side, dtype=np.float32))[None],
        "index": torch.tensor([0]),
    }
    inputs = bundle.extra.get("inputs", "image")
    tier = model_tier(bundle, as_tier)
    tier_args = {"sample_tiers": [tier], "tiers": bundle.extra["tiers"]} if tier else {}
    if inputs != "image":
        batch["extra"] = torch.from_numpy(
            extra_features(
                std.x[None],
                bundle.standardize,
                inputs,
                [density.structure],
                [density.electron_count()],
                **tier_args,
            )
        )
    samples = mc_samples or int(bundle.uncertainty.get("samples", 30))
    preds = predict_batches(bundle.model, [batch], mc_samples=samples)
    scales = bundle.uncertainty.get("scale", {})
    final = consistent_predictions(bundle.tasks, preds.mean)
    gates = gated_samples(bundle.tasks, preds.mean)
    rows = []
    for task in bundle.tasks:
        mean, spread = preds.mean[task.name][0], preds.std[task.name][0]
        row: dict[str, Any] = {"target": task.name, "kind": task.kind, "unit": task.unit}
        if task.is_regression:
            sigma = float(scales.get(task.name, 1.0)) * float(spread)
            gated = gates.get(task.name)
            lo, hi = interval90(
                mean,
                sigma,
                minimum=task.minimum,
                gated=None if gated is None else gated[0],
                maximum=task.maximum,
            )
            row.update(
                value=float(final[task.name][0]),
                uncertainty=sigma,
                lo90=float(lo),
                hi90=float(hi),
                probability=None,
            )
        else:
            proba = np.array([1.0 - mean, mean]) if task.kind == "binary" else np.asarray(mean)
            spreads = np.array([spread, spread]) if task.kind == "binary" else np.asarray(spread)
            k = int(proba.argmax())
            row.update(
                value=task.class_names[k],
                uncertainty=float(spreads[k]),
                lo90=None,
                hi90=None,
                probability=float(proba[k]),
            )
        rows.append(row)
    return rows


def predict_paths(
    model: str | os.PathLike[str],
    paths: Sequence[str | os.PathLike[str]],
    species: Sequence[str] | str | None = None,
    mc_samples: int | None = None,
    progress: bool = False,
    as_tier: str | None = None,
) -> PredictionResult:
    """Predict every target of ``model`` (a model/run directory or ``builtin``) for density files or
    folders.

    A file that cannot be read is reported in ``errors`` and the others are still predicted;
    ``progress`` shows a progress bar over the files. Missing paths and ``mc_samples`` below 1
    are refused before any model is loaded. A model that reads the data tier (inputs
    ``density+structure+tier``) predicts as ``as_tier`` labels (default: its first, the reference
    tier); other models ignore it.
    """
    if mc_samples is not None and mc_samples < 1:
        raise SettingsError(
            f"--mc-samples must be at least 1 (MC-dropout passes), got {mc_samples}"
        )
    files = expand_paths(paths)
    dirs = model_dirs(model)
    bundles = [load_model(d) for d in dirs]
    for bundle in bundles:
        model_tier(bundle, as_tier)  # an unknown tier is refused before any file is read
    magnetic = _magnetic_in_training(bundles[0].training)
    rows: list[dict[str, Any]] = []
    warnings: dict[str, list[str]] = {}
    errors: dict[str, str] = {}
    for path in track(
        files,
        description="predicting",
        disable=not progress or len(files) < 2,
        transient=True,
        console=Console(stderr=True),
    ):
        try:
            density = read_density(path, species)
        except DensityFormatError as exc:
            errors[str(path)] = str(exc)
            continue
        notes: list[str] = []
        for mdir, bundle in zip(dirs, bundles, strict=True):
            notes += [n for n in input_warnings(density, bundle.training) if n not in notes]
            for row in _predict_one(bundle, density, mc_samples, as_tier):
                rows.append(
                    {
                        "file": str(path),
                        "formula": density.structure.composition.reduced_formula,
                        **row,
                        "model": str(mdir),
                    }
                )
        spin = spin_warning(density, bundles[0], magnetic)
        if spin is not None:
            notes.append(spin)
        warnings[str(path)] = notes
    return PredictionResult(rows=rows, warnings=warnings, errors=errors, models=dirs)
