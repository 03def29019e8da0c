"""A multi-task study of a dataset store from Python: choose the groups, train, return the results.

:func:`prepare_multitask_study` reads the labels, takes the groups from a groups file or from a
similarity analysis of the training split's labels, and fixes the study's settings and trainer;
:func:`run_multitask_study` runs every training that has no saved result and returns the results.
Nothing is printed and nothing is written besides the study's own resumable cache
(``STUDY_DIR/study.json`` and ``STUDY_DIR/runs/``); :mod:`rhoprop.analysis.report` writes the
report and prints the summary (``rhoprop study multitask``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rhoprop.analysis.labels import LabelTable, load_label_table
from rhoprop.analysis.similarity import (
    SimilaritySettings,
    TargetAnalysis,
    analyze_targets,
    read_groups,
    write_groups,
)
from rhoprop.analysis.study import (
    CONFIGS,
    StudyResults,
    StudyRun,
    StudySettings,
    restrict_groups,
    run_study,
    study_results,
)
from rhoprop.analysis.study_train import PRESET_SEEDS, RhopropTrainer, preset_config

#: ``progress(done, total, description)``: called as the work advances.
ProgressFn = Callable[[int, int, str], None]


@dataclasses.dataclass(frozen=True)
class MultitaskPlan:
    """A study ready to run (see :func:`prepare_multitask_study`).

    Attributes:
        settings: what the study compares (targets, groups, seeds, configs, training settings).
        trainer: trains one configuration and returns its test metrics.
        kinds: target -> kind of every studied target.
        groups_source: where the groups came from, in words.
        analysis: the similarity analysis of the training split the groups came from (None when
            they came from a groups file or there is one target).
        fold_analyses: with folds, each fold's similarity analysis computed now (None for a fold
            whose groups were read back from an earlier run's ``analysis/fold-K/groups.json``).
        fold_keys: with folds, the key of each fold's analysis (:func:`fold_key`).
    """

    settings: StudySettings
    trainer: RhopropTrainer
    kinds: dict[str, str]
    groups_source: str
    analysis: TargetAnalysis | None
    fold_analyses: tuple[TargetAnalysis | None, ...] = ()
    fold_keys: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class MultitaskStudy:
    """What :func:`run_multitask_study` did and found.

    Attributes:
        plan: the study that was run.
        run: trainings run now, reused, failed and still missing.
        results: the finished cells and their summaries (over everything finished so far).
    """

    plan: MultitaskPlan
    run: StudyRun
    results: StudyResults


def prepare_multitask_study(
    dataset: str,
    *,
    targets: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    preset: str = "quick",
    configs: Sequence[str] | None = None,
    groups_file: str | Path | None = None,
    split: str = "default",
    random_seed: int = 0,
    alpha: float = 0.05,
    threshold: float = 0.5,
    min_pairs: int = 10,
    train_overrides: dict[str, Any] | None = None,
    progress: ProgressFn | None = None,
    only: str = "",
    folds: int = 0,
    study_dir: str | Path | None = None,
) -> MultitaskPlan:
    """The study of ``targets`` (default: every target) of ``dataset`` on split ``split``.

    Groups come from ``groups_file`` (restricted to the targets) or, for two or more targets, from
    a similarity analysis (``alpha``, ``threshold``, ``min_pairs``) of the labels of the split's
    training materials only, so the test materials never shape the groups. ``seeds`` and
    ``configs`` default to the preset's seeds and every config; ``train_overrides`` (None values
    ignored) change the preset's training settings. ``progress`` follows the similarity analysis.
    ``only`` restricts the study to the samples it selects (e.g. ``has_spin``: the spin-polarized
    materials, ``ids:FILE`` a fixed list; :func:`~rhoprop.train.data.subset_ids`).

    ``folds`` (k >= 2) replaces the split by k-fold cross-validation grouped by formula, the folds
    of ``rhoprop benchmark``: the replicates (``seeds``, default every fold) are folds, and without
    a groups file each fold's groups come from the similarity of that fold's training materials
    only. Those analyses are kept in ``study_dir/analysis/fold-K/groups.json`` (with a key of the
    materials and settings they came from) and read back on a rerun instead of recomputed.
    """
    table = load_label_table(dataset)
    chosen = list(targets) if targets else table.targets
    table = table.select(chosen)
    config = preset_config(preset, split=split, **(train_overrides or {}))
    trainer = RhopropTrainer(str(dataset), config, only=only, folds=folds)
    analysis = None
    similarity = SimilaritySettings(alpha=alpha, threshold=threshold, min_pairs=min_pairs)
    fold_groups: list[tuple[tuple[str, ...], ...]] = []
    fold_analyses: list[TargetAnalysis | None] = []
    fold_keys: list[str] = []
    if folds and groups_file is None and len(chosen) > 1:
        for k, parts in enumerate(trainer.fold_splits):
            fit_ids = [i for i in parts["train"] + parts["val"] if i in table.labels.index]
            fold_keys.append(fold_key(fit_ids, table.targets, similarity))
            groups_k, analysis_k = _fold_groups(
                table, dataset, k, fit_ids, similarity, fold_keys[-1], study_dir, progress
            )
            fold_groups.append(tuple(map(tuple, groups_k)))
            fold_analyses.append(analysis_k)
        groups = [list(g) for g in _most_common(fold_groups)]
        source = (
            f"similarity analyses of each fold's training materials ({folds} folds; "
            f"{len(set(fold_groups))} distinct grouping(s), the most common shown)"
        )
    elif groups_file is not None:
        groups = restrict_groups(read_groups(groups_file), chosen)
        source = f"groups file {groups_file}"
    elif len(chosen) > 1:
        train_ids = [i for i in trainer.splits["train"] if i in table.labels.index]
        train_labels = LabelTable(
            table.labels.loc[train_ids],
            table.kinds,
            table.units,
            table.classes,
            f"{dataset} ({split}/train)",
        )
        what = "similarity of targets (train split)"
        analysis = analyze_targets(
            train_labels,
            SimilaritySettings(alpha=alpha, threshold=threshold, min_pairs=min_pairs),
            None if progress is None else lambda done, total: progress(done, total, what),
        )
        groups = analysis.grouping.groups
        source = f"similarity analysis of the {len(train_ids)} training materials"
    else:
        groups, source = [chosen], "one target"
    settings = StudySettings(
        dataset=str(dataset),
        targets=tuple(chosen),
        groups=tuple(map(tuple, groups)),
        seeds=tuple(seeds) if seeds else (tuple(range(folds)) if folds else PRESET_SEEDS[preset]),
        configs=tuple(configs) if configs else CONFIGS,
        random_seed=random_seed,
        preset=preset,
        split=split,
        train=trainer.config,
        only=only,
        folds=folds,
        fold_groups=tuple(fold_groups),
    )
    return MultitaskPlan(
        settings, trainer, dict(table.kinds), source, analysis, tuple(fold_analyses),
        tuple(fold_keys),
    )  # fmt: skip


def fold_key(ids: Sequence[str], targets: Sequence[str], similarity: SimilaritySettings) -> str:
    """Hash of what a fold's similarity analysis depends on: its materials, targets, settings."""
    payload = {"ids": sorted(ids), "targets": list(targets), "settings": similarity.to_dict()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _most_common(groupings: Sequence[tuple[tuple[str, ...], ...]]) -> tuple[tuple[str, ...], ...]:
    """The grouping most folds chose (the first of those tied); groups compared as sets."""
    canonical = [tuple(sorted(tuple(sorted(g)) for g in gs)) for gs in groupings]
    counts = Counter(canonical)
    best = max(counts.values())
    return next(gs for gs, c in zip(groupings, canonical, strict=True) if counts[c] == best)


def _fold_groups(
    table: LabelTable,
    dataset: str,
    fold: int,
    fit_ids: list[str],
    similarity: SimilaritySettings,
    key: str,
    study_dir: str | Path | None,
    progress: ProgressFn | None,
) -> tuple[list[list[str]], TargetAnalysis | None]:
    """One fold's groups: read back from ``study_dir/analysis/fold-K/groups.json`` when it holds
    ``key`` (:func:`fold_key`), else from a similarity analysis of the fold's training labels
    (saved there)."""
    cached = None if study_dir is None else Path(study_dir) / "analysis" / f"fold-{fold}"
    if cached is not None and (cached / "groups.json").is_file():
        try:
            document = json.loads((cached / "groups.json").read_text())
        except (OSError, json.JSONDecodeError):
            document = {}
        if document.get("key") == key:
            return read_groups(cached / "groups.json", table.targets), None
    labels = LabelTable(
        table.labels.loc[fit_ids], table.kinds, table.units, table.classes,
        f"{dataset} (fold {fold} training materials)",
    )  # fmt: skip
    what = f"similarity of targets (fold {fold} training materials)"
    analysis = analyze_targets(
        labels, similarity, None if progress is None else lambda d, t: progress(d, t, what)
    )
    if cached is not None:  # the report adds the tables and figures of this analysis beside it
        cached.mkdir(parents=True, exist_ok=True)
        write_groups(cached / "groups.json", fold_groups_document(analysis, key))
    return analysis.grouping.groups, analysis


def fold_groups_document(analysis: TargetAnalysis, key: str) -> dict[str, Any]:
    """``groups.json`` of one fold's analysis, with the key a rerun checks before reusing it."""
    return {**analysis.groups_document(), "key": key}


def run_multitask_study(
    plan: MultitaskPlan,
    study_dir: str | Path,
    progress: ProgressFn | None = None,
    max_trainings: int | None = None,
) -> MultitaskStudy:
    """Run every training of ``plan`` without a saved result in ``study_dir`` (at most
    ``max_trainings`` now; a rerun continues) and return the results of all finished ones."""
    run = run_study(plan.settings, plan.trainer, study_dir, progress, max_trainings=max_trainings)
    results = study_results(plan.settings, study_dir, plan.kinds, plan.trainer.labels_digest)
    return MultitaskStudy(plan, run, results)
