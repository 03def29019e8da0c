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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rhoprop.analysis.labels import LabelTable, load_label_table
from rhoprop.analysis.similarity import (
    SimilaritySettings,
    TargetAnalysis,
    analyze_targets,
    read_groups,
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
    """

    settings: StudySettings
    trainer: RhopropTrainer
    kinds: dict[str, str]
    groups_source: str
    analysis: TargetAnalysis | None


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
) -> MultitaskPlan:
    """The study of ``targets`` (default: every target) of ``dataset`` on split ``split``.

    Groups come from ``groups_file`` (restricted to the targets) or, for two or more targets, from
    a similarity analysis (``alpha``, ``threshold``, ``min_pairs``) of the labels of the split's
    training materials only, so the test materials never shape the groups. ``seeds`` and
    ``configs`` default to the preset's seeds and every config; ``train_overrides`` (None values
    ignored) change the preset's training settings. ``progress`` follows the similarity analysis.
    ``only`` restricts the study to the samples it selects (e.g. ``has_spin``: the spin-polarized
    materials; :func:`~rhoprop.train.data.subset_ids`).
    """
    table = load_label_table(dataset)
    chosen = list(targets) if targets else table.targets
    table = table.select(chosen)
    config = preset_config(preset, split=split, **(train_overrides or {}))
    trainer = RhopropTrainer(str(dataset), config, only=only)
    analysis = None
    if groups_file is not None:
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
        seeds=tuple(seeds) if seeds else PRESET_SEEDS[preset],
        configs=tuple(configs) if configs else CONFIGS,
        random_seed=random_seed,
        preset=preset,
        split=split,
        train=trainer.config,
        only=only,
    )
    return MultitaskPlan(settings, trainer, dict(table.kinds), source, analysis)


def run_multitask_study(
    plan: MultitaskPlan,
    study_dir: str | Path,
    progress: ProgressFn | None = None,
    max_trainings: int | None = None,
) -> MultitaskStudy:
    """Run every training of ``plan`` without a saved result in ``study_dir`` (at most
    ``max_trainings`` now; a rerun continues) and return the results of all finished ones."""
    run = run_study(plan.settings, plan.trainer, study_dir, progress, max_trainings=max_trainings)
    return MultitaskStudy(plan, run, study_results(plan.settings, study_dir, plan.kinds))
