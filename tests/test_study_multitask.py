"""The multi-task study's plan, resumable result cache and report, with a real (small) trainer.

The trainer here is a genuine multi-task model, sized for a test: a shared-trunk MLP with one
head per target and masked losses, trained on descriptors of the elements (Z, group, period,
mass, radius) to predict their measured properties, on one fixed split.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core.periodic_table import Element
from sklearn.metrics import mean_absolute_error, r2_score, roc_auc_score

from rhoprop.analysis.report import write_study_report
from rhoprop.analysis.study import (
    COMPARISONS,
    ResultCache,
    StudySettings,
    paired_tests,
    paper_gain,
    plan_study,
    restrict_groups,
    run_study,
    study_results,
    summarize,
    trainings,
)
from rhoprop.errors import FolderLockedError, SettingsError

from helpers.elements import element_labels

TARGETS = ["density", "molar_volume", "bulk_modulus", "electronegativity", "is_metal"]
GROUPS = [["density", "bulk_modulus"], ["molar_volume"], ["electronegativity", "is_metal"]]


def element_features(ids: list[str]) -> np.ndarray:
    """Standardized descriptors of elements: Z, group, period, mass, atomic radius."""
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for symbol in ids:
            el = Element(symbol)
            radius = float(el.atomic_radius) if el.atomic_radius is not None else np.nan
            rows.append([el.Z, el.group, el.row, float(el.atomic_mass), radius])
    x = np.array(rows, dtype=float)
    x = np.where(np.isnan(x), np.nanmean(x, axis=0), x)
    return (x - x.mean(axis=0)) / x.std(axis=0)


class ElementMLPTrainer:
    """Multi-task MLP on element descriptors: train on a fixed 70% of elements, test on the rest."""

    def __init__(self, epochs: int = 40) -> None:
        table = element_labels()
        self.labels = table.labels
        self.kinds = table.kinds
        self.x = torch.tensor(element_features(list(self.labels.index)), dtype=torch.float32)
        order = np.random.default_rng(0).permutation(len(self.labels))
        cut = int(0.7 * len(order))
        self.train_idx, self.test_idx = order[:cut], order[cut:]
        self.config = {"model": "element-mlp", "hidden": 32, "epochs": epochs}
        self.calls: list[tuple[tuple[str, ...], int]] = []

    def __call__(self, targets: list[str], seed: int, out_dir: Path) -> dict[str, dict[str, float]]:
        self.calls.append((tuple(targets), seed))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._train(targets, seed, out_dir)
        finally:
            torch.set_num_threads(threads)

    def _train(self, targets: list[str], seed: int, out_dir: Path) -> dict[str, dict[str, float]]:
        torch.manual_seed(seed)
        y = torch.tensor(np.ascontiguousarray(self.labels[targets].to_numpy()), dtype=torch.float32)
        train = torch.as_tensor(self.train_idx)
        mean = torch.nanmean(y[train], dim=0)
        std = torch.tensor(np.nanstd(y[train].numpy(), axis=0), dtype=torch.float32)
        binary = torch.tensor([self.kinds[t] == "binary" for t in targets])
        mean, std = torch.where(binary, 0.0, mean), torch.where(binary, 1.0, std)
        z = (y - mean) / std
        trunk = torch.nn.Sequential(
            torch.nn.Linear(self.x.shape[1], 32),
            torch.nn.SiLU(),
            torch.nn.Linear(32, 32),
            torch.nn.SiLU(),
        )
        head = torch.nn.Linear(32, len(targets))
        opt = torch.optim.Adam([*trunk.parameters(), *head.parameters()], lr=2e-2)
        mask = ~torch.isnan(z[train])
        target = torch.nan_to_num(z[train])
        for _ in range(self.config["epochs"]):
            out = head(trunk(self.x[train]))
            mse = (out - target) ** 2
            bce = torch.nn.functional.binary_cross_entropy_with_logits(
                out, target, reduction="none"
            )
            loss = (torch.where(binary, bce, mse) * mask).sum(0) / mask.sum(0).clamp(min=1)
            opt.zero_grad()
            loss.sum().backward()
            opt.step()
        with torch.no_grad():
            pred = head(trunk(self.x[self.test_idx])) * std + mean
        metrics = {}
        for k, name in enumerate(targets):
            truth = self.labels[name].to_numpy()[self.test_idx]
            ok = np.isfinite(truth)
            p = pred[:, k].numpy()[ok]
            if self.kinds[name] == "binary":
                metrics[name] = {
                    "roc_auc": roc_auc_score(truth[ok], p),
                    "accuracy": float(((p > 0) == truth[ok]).mean()),
                }
            else:
                metrics[name] = {
                    "r2": r2_score(truth[ok], p),
                    "mae": mean_absolute_error(truth[ok], p),
                }
        (out_dir / "trained.txt").write_text(",".join(targets))
        return metrics


def study_settings(trainer: ElementMLPTrainer, seeds=(0, 1)) -> StudySettings:
    return StudySettings(
        dataset="elements",
        targets=tuple(TARGETS),
        groups=tuple(map(tuple, GROUPS)),
        seeds=seeds,
        train=trainer.config,
    )


def test_plan_covers_every_config_with_random_groups_of_the_same_size() -> None:
    settings = StudySettings(
        dataset="d", targets=tuple(TARGETS), groups=tuple(map(tuple, GROUPS)), seeds=(0, 1)
    )
    cells = plan_study(settings)
    by = {(c.target, c.config, c.seed): c for c in cells}
    assert by[("density", "group", 0)].trained == ("bulk_modulus", "density")
    assert ("molar_volume", "group", 0) not in by and ("molar_volume", "random", 0) not in by
    assert by[("is_metal", "all", 1)].n_cotrained == len(TARGETS)
    for c in cells:
        if c.config == "random":
            group = by[(c.target, "group", c.seed)].trained
            assert (
                c.target in c.trained
                and len(c.trained) == len(group)
                and set(c.trained) != set(group)
            )
    assert plan_study(settings) == cells
    # per seed: single x5, groups x2, all x1 and at most 4 random; shared trainings counted once
    assert len(trainings(cells)) <= 2 * (5 + 2 + 1 + 4)
    assert len({c.trained for c in cells if c.config == "group" and c.seed == 0}) == 2


def test_study_trains_each_training_once_and_a_rerun_trains_nothing(tmp_path) -> None:
    trainer = ElementMLPTrainer()
    settings = study_settings(trainer)
    first = run_study(settings, trainer, tmp_path)
    expected = trainings(plan_study(settings))
    assert first.trained == len(expected) and first.missing == 0
    assert sorted(trainer.calls) == sorted(expected)
    second = run_study(settings, trainer, tmp_path)
    assert second.trained == 0 and second.reused == len(expected)
    assert len(trainer.calls) == len(expected)
    saved = json.loads((tmp_path / "study.json").read_text())
    assert saved["seeds"] == [0, 1] and saved["train"] == trainer.config

    results = study_results(settings, tmp_path, element_labels().kinds)
    summary, totals = results.summary, results.overall
    assert len(results.results) == len(plan_study(settings))
    write_study_report(results, tmp_path)
    assert set(summary["config"]) == {"single", "group", "all", "random"}
    assert (summary["seeds"] == 2).all()
    reg = summary[summary.score_name == "R2"]
    assert (reg["score"] <= 1.0).all() and reg["score_std"].notna().all()
    single = summary[summary.config == "single"]
    assert np.allclose(single["delta"], 0.0)
    assert np.allclose(single[single.score_name == "R2"]["rel_mae_pct"], 0.0)
    auc = summary[(summary.target == "is_metal")]
    assert (auc.score_name == "AUC").all() and ((auc.score >= 0) & (auc.score <= 1)).all()
    assert set(totals["config"]) >= {"single", "group", "all", "random", "group - random"}
    for name in ("results.csv", "summary.csv", "summary.md", "overall.csv"):
        assert (tmp_path / name).stat().st_size > 100
    assert (tmp_path / "score_vs_cotrained.png").read_bytes()[:4] == b"\x89PNG"
    assert "± " in (tmp_path / "summary.md").read_text()
    # two seeds: every comparison is reported, none tested (a t-test needs 3 pairs)
    tests = pd.read_csv(tmp_path / "tests.csv")
    assert set(zip(tests["config"], tests["against"])) == set(COMPARISONS)
    assert (tests["seeds"] == 2).all() and tests["p"].isna().all()
    assert (tmp_path / "gain.csv").is_file()


def test_paired_tests_and_the_papers_gain_on_known_scores() -> None:
    seeds = range(5)
    rows = []
    for seed in seeds:
        # a: grouping helps on every seed; b: no change but noise; c: R² 0.9 (no room to gain)
        for target, single, group in (("a", 0.40, 0.50 + 0.01 * seed), ("b", 0.60 + 0.02 * seed, 0.61 + 0.02 * (4 - seed)),
                                      ("c", 0.90, 0.95)):  # fmt: skip
            for config, score in (("single", single), ("group", group), ("random", single + 0.01 * (seed % 2))):
                rows.append({"target": target, "config": config, "seed": seed, "score": score, "score_name": "R2"})
    results = pd.DataFrame(rows)
    tests = paired_tests(results).set_index(["target", "config", "against"])
    a = tests.loc[("a", "group", "single")]
    assert a["wins"] == 5 and a["seeds"] == 5 and a["mean_difference"] == pytest.approx(0.12)
    from scipy import stats

    group_a = [0.50 + 0.01 * s for s in seeds]
    assert a["p"] == pytest.approx(stats.ttest_rel(group_a, [0.40] * 5).pvalue)
    part = tests.xs(("group", "single"), level=("config", "against"))
    assert np.allclose(part["q"].dropna(), stats.false_discovery_control(part["p"].dropna().to_numpy()))
    assert tests.loc[("b", "group", "single")]["p"] > 0.5
    assert ("a", "all", "single") not in tests.index  # no 'all' config was run
    summary = summarize(results.assign(kind="regression", n_cotrained=1, mae=np.nan))
    gain = paper_gain(summary).set_index("config")
    # only a and b have single-task R² < 0.8
    assert gain.loc["group", "targets"] == 2
    single = (0.40 + np.mean([0.60 + 0.02 * s for s in seeds])) / 2
    grouped = (np.mean(group_a) + np.mean([0.61 + 0.02 * (4 - s) for s in seeds])) / 2
    assert gain.loc["group", "gain_pct"] == pytest.approx(100 * (grouped - single) / single)


def test_interrupted_study_resumes_with_only_the_missing_trainings(tmp_path) -> None:
    trainer = ElementMLPTrainer(epochs=30)
    settings = study_settings(trainer, seeds=(3,))
    total = len(trainings(plan_study(settings)))

    class Interrupted(Exception):
        pass

    def interrupted_after_three(targets, seed, out_dir):
        if len(trainer.calls) == 3:
            raise Interrupted
        return trainer(targets, seed, out_dir)

    with pytest.raises(Interrupted):
        run_study(settings, interrupted_after_three, tmp_path)
    assert len(list((tmp_path / "runs").glob("*/result.json"))) == 3
    resumed = run_study(settings, trainer, tmp_path)
    assert resumed.reused == 3 and resumed.trained == total - 3 and len(trainer.calls) == total


def test_failed_training_is_recorded_skipped_and_retried(tmp_path) -> None:
    trainer = ElementMLPTrainer(epochs=10)
    settings = study_settings(trainer, seeds=(0,))

    def no_all_model(targets, seed, out_dir):
        if len(targets) == len(TARGETS):
            raise SettingsError("simulated failure of the all-targets training")
        return trainer(targets, seed, out_dir)

    run = run_study(settings, no_all_model, tmp_path)
    assert list(run.failures) == [f"{','.join(sorted(TARGETS))} @ seed 0"] and run.missing == 1
    failed = list((tmp_path / "runs").glob("*/failed.json"))
    assert len(failed) == 1 and "simulated failure" in failed[0].read_text()
    retry = run_study(settings, trainer, tmp_path)
    assert retry.trained == 1 and retry.missing == 0 and not retry.failures
    assert not failed[0].exists()


def test_a_study_directory_is_run_by_one_process_at_a_time(tmp_path) -> None:
    from rhoprop.analysis.study import study_lock

    with study_lock(tmp_path):
        with pytest.raises(FolderLockedError, match="another process is running this study"):
            run_study(study_settings(ElementMLPTrainer()), ElementMLPTrainer(), tmp_path)


def test_cache_key_depends_on_config_targets_and_seed(tmp_path) -> None:
    cache = ResultCache(tmp_path, {"epochs": 5})
    assert cache.key(["a", "b"], 0) == cache.key(["b", "a"], 0)
    assert cache.key(["a", "b"], 0) != cache.key(["a", "b"], 1) != cache.key(["a"], 1)
    assert ResultCache(tmp_path, {"epochs": 6}).key(["a"], 0) != cache.key(["a"], 0)
    cache.put(["b", "a"], 0, {"a": {"r2": 0.5, "mae": float("nan")}}, 1.0)
    record = cache.get(["a", "b"], 0)
    assert record["metrics"]["a"] == {"r2": 0.5, "mae": None}
    assert ResultCache(tmp_path, {"epochs": 6}).get(["a", "b"], 0) is None


def test_study_settings_and_groups_are_validated() -> None:
    assert restrict_groups([["a", "b", "x"], ["y"]], ["a", "b", "c"]) == [["a", "b"], ["c"]]
    with pytest.raises(SettingsError, match="exactly once"):
        StudySettings(dataset="d", targets=("a", "b"), groups=(("a",),))
    with pytest.raises(SettingsError, match="seeds"):
        StudySettings(dataset="d", targets=("a",), groups=(("a",),), seeds=())
    with pytest.raises(SettingsError, match="configs"):
        StudySettings(dataset="d", targets=("a",), groups=(("a",),), configs=("pairs",))


def test_study_figure_labels_sharing_an_x_are_spread_apart_in_order() -> None:
    from rhoprop.analysis.figures import _spread_labels

    ends = [("a", 11.0, 0.30), ("b", 11.0, 0.31), ("c", 11.0, 0.305), ("d", 4.0, 0.30)]
    placed = {t: (x, y, yt) for t, x, y, yt in _spread_labels(ends, gap=0.05)}
    column = sorted((placed[t][2], t) for t in "abc")
    assert [t for _, t in column] == ["a", "c", "b"]
    assert all(hi - lo >= 0.05 - 1e-12 for (lo, _), (hi, _) in zip(column, column[1:]))
    assert abs(sum(placed[t][2] for t in "abc") - (0.30 + 0.31 + 0.305)) < 1e-12
    assert placed["d"] == (4.0, 0.30, 0.30)


class DigestingTrainer(ElementMLPTrainer):
    """The element MLP with the label digest a real trainer has (``RhopropTrainer.labels_digest``)."""

    def labels_digest(self, targets, seed) -> str:
        from rhoprop.train.data import labels_digest

        return labels_digest(self.labels, list(self.labels.index), sorted(targets))


def test_a_changed_label_retrains_the_trainings_of_its_target_only(tmp_path) -> None:
    trainer = DigestingTrainer(epochs=5)
    settings = study_settings(trainer, seeds=(0,))
    first = run_study(settings, trainer, tmp_path)
    assert first.trained > 0 and not first.failures
    everything = set(trainer.calls)
    target = TARGETS[0]
    labelled = trainer.labels[target].first_valid_index()
    trainer.labels.loc[labelled, target] += 1.0  # a corrected label
    trainer.calls.clear()
    second = run_study(settings, trainer, tmp_path)
    retrained = set(trainer.calls)
    assert retrained == {call for call in everything if target in call[0]}
    assert second.reused == first.trained - len(retrained)
    # a result saved without a digest (before 2026-12-07) is read as it is
    cache = ResultCache(tmp_path, settings.train, trainer.labels_digest)
    some = next(iter(everything - retrained))
    path = cache.run_dir(*some) / "result.json"
    record = json.loads(path.read_text())
    record.pop("labels")
    path.write_text(json.dumps(record))
    assert cache.get(*some) is not None
    results = study_results(settings, tmp_path, trainer.kinds, trainer.labels_digest)
    assert len(results.results) == len(plan_study(settings))
