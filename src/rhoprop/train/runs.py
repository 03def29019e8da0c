"""Where models live: run directories, group runs, model directories, and the built-in pretrained
model."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rhoprop.errors import IncompatibleModelError
from rhoprop.models.io import META_FILE

#: The pretrained model shipped with rhoprop (``rhoprop predict builtin ...``).
BUILTIN_MODEL = Path(__file__).resolve().parents[1] / "pretrained" / "gpaw-v1" / "model"
GROUPS_FILE = "groups.json"
RUN_FILE = "run.json"
#: TrainConfig fields that say where and how a run ran, not what it trained.
HOW_IT_RAN = frozenset(
    {
        "accelerator",
        "devices",
        "strategy",
        "num_nodes",
        "num_workers",
        "precision",
        "progress",
        "threads",
    }
)


def model_dirs(path: str | os.PathLike[str]) -> list[Path]:
    """Model directories behind ``path``: a model dir, a run dir (its ``model/``), a group run, or
    ``builtin``."""
    if str(path) == "builtin":
        if not (BUILTIN_MODEL / META_FILE).is_file():
            raise IncompatibleModelError(
                f"the built-in pretrained model is not installed (expected {BUILTIN_MODEL}); "
                "train one with `rhoprop train gpaw-v1 --out RUN_DIR` and pass RUN_DIR"
            )
        return [BUILTIN_MODEL]
    path = Path(path)
    if not path.exists():
        from rhoprop.datasets import available

        hint = (
            f"; {path} is a built-in dataset, its pretrained model is 'builtin'"
            if str(path) in available()
            else "; pass a run or model directory, or 'builtin'"
        )
        raise IncompatibleModelError(f"no model at {path}: no such file or directory{hint}")
    if (path / META_FILE).is_file():
        return [path]
    if (path / "model" / META_FILE).is_file():
        return [path / "model"]
    if (path / GROUPS_FILE).is_file():
        runs = json.loads((path / GROUPS_FILE).read_text()).get("runs", [])
        dirs = [path / r / "model" for r in runs if (path / r / "model" / META_FILE).is_file()]
        if dirs:
            return dirs
    raise IncompatibleModelError(
        f"{path} holds no rhoprop model: expected model.json in it, a run directory with model/, "
        "or a group run with groups.json (from `rhoprop train`); or pass 'builtin'"
    )


def run_dir_of(model_dir: Path) -> Path | None:
    """The run directory a model directory was exported into (None for a bare model directory)."""
    parent = model_dir.parent
    return parent if (parent / RUN_FILE).is_file() else None


def read_run(run_dir: Path) -> dict[str, Any]:
    """The ``run.json`` summary of a run directory ({} when missing)."""
    path = run_dir / RUN_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def finished_run(
    run_dir: Path, config: dict[str, Any], dataset_path: Path
) -> dict[str, Any] | None:
    """The ``run.json`` of ``run_dir`` when it finished training ``config`` (a TrainConfig as a
    dict) on the store at ``dataset_path`` and exported its model: rerunning would train nothing
    new.

    Fields of :data:`HOW_IT_RAN` may differ; any other difference (more ``epochs``, another
    ``patience``) returns None, and so does a run whose ``run.json`` predates this record.
    """
    try:
        info = read_run(run_dir)
    except (OSError, json.JSONDecodeError):
        return None
    done = info.get("train_config")
    if not isinstance(done, dict) or not (run_dir / "model" / META_FILE).is_file():
        return None
    if Path(str(info.get("dataset_path", ""))).resolve() != Path(dataset_path).resolve():
        return None
    same = all(done.get(k) == v for k, v in config.items() if k not in HOW_IT_RAN)
    return info if same else None
