"""Model files: a directory with ``model.safetensors`` (weights and statistics) and ``model.json``.

``model.json`` records the class and its config, the model and file-format versions, the targets
(kinds, units, classes, normalization statistics), the StandardizeSettings the inputs must be
prepared with, and what the model was trained on (dataset, code, elements, valence electrons),
so a density prepared differently is refused instead of silently mispredicted. Weights are read
with safetensors (no pickle), strictly: every tensor must be present with the expected shape.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_save

import rhoprop
from rhoprop.errors import IncompatibleModelError
from rhoprop.grid.settings import STANDARDIZE_VERSION, StandardizeSettings
from rhoprop.models.base import MultiTaskModel
from rhoprop.models.ensemble import ENSEMBLE_VERSION, Ensemble, EnsembleConfig
from rhoprop.models.heads import TaskSpec
from rhoprop.models.hybrid import HYBRID_VERSION, Hybrid, HybridConfig
from rhoprop.models.invariants import INVARIANTS_VERSION
from rhoprop.models.msa3dcnn import LEGACY_CONFIG, MODEL_VERSION, MSA3DCNN, MSA3DCNNConfig
from rhoprop.settings import Settings, atomic_write_bytes, atomic_write_text

#: Version of the model-directory format (bumped when model.json changes incompatibly).
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"

#: Model classes a file may hold: name -> (class, called with its config and the targets;
#: config class; version).
_CLASSES: dict[
    str,
    tuple[Callable[[Any, Sequence[TaskSpec]], MSA3DCNN | Ensemble | Hybrid], type[Settings], int],
] = {
    "MSA3DCNN": (MSA3DCNN, MSA3DCNNConfig, MODEL_VERSION),
    "Ensemble": (Ensemble, EnsembleConfig, ENSEMBLE_VERSION),
    "Hybrid": (Hybrid, HybridConfig, HYBRID_VERSION),
}


@dataclasses.dataclass
class ModelBundle:
    """A loaded model with everything needed to use it correctly.

    Attributes:
        model: the network, in eval mode, with its normalization buffers.
        standardize: the settings every input density must be standardized with.
        training: what the model was trained on (dataset name, code, elements, valence electrons
            per element, grid spacing), used to warn about out-of-distribution inputs.
        uncertainty: how uncertainties are computed (``method``, ``samples``, per-target
            calibration ``scale``).
        extra: anything else recorded in model.json (train config, metrics).
    """

    model: MultiTaskModel | Ensemble | Hybrid
    standardize: StandardizeSettings
    training: dict[str, Any] = dataclasses.field(default_factory=dict)
    uncertainty: dict[str, Any] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def tasks(self) -> tuple[TaskSpec, ...]:
        """The targets the model predicts."""
        return self.model.tasks

    def check_standardize(self, settings: StandardizeSettings) -> None:
        """Raise IncompatibleModelError unless data standardized with ``settings`` fits this
        model."""
        check_standardize_compatible(self.standardize, settings)


def check_standardize_compatible(
    model_settings: StandardizeSettings, data_settings: StandardizeSettings
) -> None:
    """Raise IncompatibleModelError naming every field where the data's settings differ from the
    model's."""
    mine, theirs = model_settings.to_dict(), data_settings.to_dict()
    diff = {k: (mine[k], theirs.get(k)) for k in mine if mine[k] != theirs.get(k)}
    if diff:
        detail = ", ".join(f"{k}: model {a!r} vs data {b!r}" for k, (a, b) in sorted(diff.items()))
        raise IncompatibleModelError(
            f"the data was standardized differently from the model's training data ({detail}); "
            "rebuild the dataset with the model's StandardizeSettings (model.json 'standardize')"
        )


def save_model(path: str | Path, bundle: ModelBundle) -> Path:
    """Write ``bundle`` to directory ``path`` (model.safetensors + model.json), atomically per
    file."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model = bundle.model
    name = type(model).__name__
    if name not in _CLASSES:
        raise IncompatibleModelError(
            f"cannot save model class {name}; known classes: {sorted(_CLASSES)}"
        )
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path / WEIGHTS_FILE, safetensors_save(state))
    norm = model.target_norm
    targets = [
        {**t.to_dict(), "mean": float(norm.mean[i]), "std": float(norm.std[i])}
        for i, t in enumerate(model.tasks)
    ]
    meta = {
        "format": "rhoprop-model",
        "format_version": FORMAT_VERSION,
        "rhoprop_version": rhoprop.__version__,
        "class": name,
        "model_version": _CLASSES[name][2],
        # Both classes of _CLASSES (the name check above) keep their Settings as ``config``.
        "config": cast(Settings, model.config).to_dict(),
        "num_parameters": model.num_parameters,
        "targets": targets,
        "standardize": bundle.standardize.to_dict(),
        "training": bundle.training,
        "uncertainty": bundle.uncertainty,
        # the definitions of the density invariants its global features hold
        "invariants_version": INVARIANTS_VERSION,
        **bundle.extra,
    }
    atomic_write_text(path / META_FILE, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return path


def read_model_meta(path: str | Path) -> dict[str, Any]:
    """Read and check ``model.json`` of a model directory (format and versions)."""
    path = Path(path)
    meta_path = path / META_FILE
    if not meta_path.is_file() or not (path / WEIGHTS_FILE).is_file():
        raise IncompatibleModelError(
            f"{path} is not a rhoprop model directory: expected {META_FILE} and {WEIGHTS_FILE} in "
            "it (a training run writes them to RUN_DIR/model)"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise IncompatibleModelError(f"cannot read {meta_path}: {exc}") from exc
    if meta.get("format") != "rhoprop-model" or meta.get("format_version") != FORMAT_VERSION:
        raise IncompatibleModelError(
            f"{meta_path}: expected format 'rhoprop-model' version {FORMAT_VERSION}, found "
            f"{meta.get('format')!r} version {meta.get('format_version')!r}; retrain or use the "
            "rhoprop version that wrote it"
        )
    name = meta.get("class")
    if name not in _CLASSES:
        raise IncompatibleModelError(
            f"{meta_path}: unknown model class {name!r}; known: {sorted(_CLASSES)}"
        )
    if meta.get("model_version") != _CLASSES[name][2]:
        raise IncompatibleModelError(
            f"{meta_path}: {name} version {meta.get('model_version')!r} differs from this "
            f"rhoprop's version {_CLASSES[name][2]}; retrain the model with this rhoprop"
        )
    std_version = meta.get("standardize", {}).get("version")
    if std_version != STANDARDIZE_VERSION:
        raise IncompatibleModelError(
            f"{meta_path}: trained on densities standardized by version {std_version!r} of "
            f"rhoprop.grid, this rhoprop standardizes with version {STANDARDIZE_VERSION}; retrain"
        )
    return meta


def _upgrade_msa3dcnn_config(config: dict[str, Any]) -> dict[str, Any]:
    """An MSA3DCNNConfig dict as written by an older rhoprop, with the values that reproduce the
    network it saved: version 1 (no ``norm``), files from before the wide path (no
    ``extra_linear``) and from before its per-target skip (no ``extra_linear_skip``)."""
    if "norm" not in config:
        config = {**LEGACY_CONFIG, **config}
    if "extra_linear" not in config:
        config = {**config, "extra_linear": False}
    if "extra_linear_skip" not in config:  # before the skip existed every target had the path
        config = {**config, "extra_linear_skip": ()}
    return config


def _upgrade_config(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """The config of a saved ``name`` (a class of :data:`_CLASSES`) with every MSA-3DCNN config in
    it upgraded (:func:`_upgrade_msa3dcnn_config`): its own, an ensemble's member, a hybrid's
    network."""
    if name == "MSA3DCNN":
        return _upgrade_msa3dcnn_config(config)
    if name == "Ensemble":
        return {**config, "member": _upgrade_msa3dcnn_config(config["member"])}
    if name == "Hybrid":
        return {**config, "network": _upgrade_config(config["network_class"], config["network"])}
    return config


def _warn_if_invariants_changed(
    path: Path, model: MSA3DCNN | Ensemble | Hybrid, meta: dict[str, Any]
) -> None:
    """Warn when the model reads density invariants defined differently from this rhoprop's."""
    network = model.network if isinstance(model, Hybrid) else model
    config = network.config.member if isinstance(network, Ensemble) else network.config
    saved = int(meta.get("invariants_version", 1))
    if config.extra_features and saved != INVARIANTS_VERSION:
        warnings.warn(
            f"{path} was trained on density invariants of version {saved}; this rhoprop computes "
            f"version {INVARIANTS_VERSION} (see rhoprop.models.invariants), so its global features "
            "differ slightly from those it learned on: retrain it for exact predictions",
            stacklevel=3,
        )


def load_model(path: str | Path) -> ModelBundle:
    """Load a model directory written by :func:`save_model`, checking versions and weights
    strictly."""
    path = Path(path)
    meta = read_model_meta(path)
    cls, config_cls, _ = _CLASSES[meta["class"]]
    try:
        tasks = [
            TaskSpec.from_dict({k: v for k, v in t.items() if k not in ("mean", "std")})
            for t in meta["targets"]
        ]
        config = _upgrade_config(meta["class"], meta["config"])
        model = cls(config_cls.from_dict(config), tasks)
        standardize = StandardizeSettings.from_dict(meta["standardize"])
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise IncompatibleModelError(
            f"{path / META_FILE}: its targets, config or standardize entry is missing or malformed "
            f"({type(exc).__name__}: {exc}); the file was edited or damaged: restore it from the "
            "run"
        ) from exc
    try:
        state = load_file(str(path / WEIGHTS_FILE), device="cpu")
    except Exception as exc:
        raise IncompatibleModelError(
            f"cannot read the weights {path / WEIGHTS_FILE} ({type(exc).__name__}: {exc}): the "
            "file is truncated or damaged; restore it from the training run"
        ) from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    bad_shape = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or bad_shape:
        raise IncompatibleModelError(
            f"{path / WEIGHTS_FILE} does not match model.json: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}, wrong shape {bad_shape[:5]}"
        )
    non_finite = sorted(
        k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())
    )
    if non_finite:
        raise IncompatibleModelError(
            f"{path / WEIGHTS_FILE} holds NaN or inf in {len(non_finite)} tensor(s) "
            f"{non_finite[:5]}: the training diverged or the file is damaged; use an earlier "
            "checkpoint"
        )
    model.load_state_dict(state, strict=True)
    model.eval()
    _warn_if_invariants_changed(path, model, meta)
    known = {
        "format",
        "format_version",
        "rhoprop_version",
        "class",
        "model_version",
        "config",
        "num_parameters",
        "targets",
        "standardize",
        "training",
        "uncertainty",
        "invariants_version",
    }
    return ModelBundle(
        model=model,
        standardize=standardize,
        training=meta.get("training", {}),
        uncertainty=meta.get("uncertainty", {}),
        extra={k: v for k, v in meta.items() if k not in known},
    )
