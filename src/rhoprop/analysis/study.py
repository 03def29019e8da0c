"""The multi-task study: does training a target with others help it, and do similar targets help
more?

For every target the study trains and evaluates (a) the target alone (``single``), (b) its
similarity group (``group``), (c) all targets together (``all``) and (d) a random group of the
same size as its similarity group that contains it (``random``, drawn per target and seed: the
control telling whether *similarity* matters or just *more tasks*), for several seeds on one fixed
split. Trainings are shared where configurations coincide (a group is one training for all its
members). Every finished training's test metrics are saved atomically under
``STUDY_DIR/runs/<key>/result.json`` with ``key`` a hash of (training config, targets, seed), so a
rerun (or a run in another session) trains only what is missing.

The trainer is any callable ``train_fn(targets, seed, out_dir) -> {target: {metric: value}}``
(metric names ``r2``, ``mae`` for regression and ``roc_auc`` or ``auc`` for classification), with
a JSON-able description of its configuration that goes into the cache key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from scipy import stats

from rhoprop.errors import RhopropError, SettingsError
from rhoprop.locks import folder_lock
from rhoprop.settings import Settings, atomic_write_text

CONFIGS = ("single", "group", "all", "random")
RESULT_FORMAT_VERSION = 1


class TrainFn(Protocol):
    """Trains one multi-task model on ``targets`` with ``seed`` in ``out_dir``; returns its test
    metrics."""

    def __call__(
        self, targets: list[str], seed: int, out_dir: Path
    ) -> dict[str, dict[str, float]]: ...


@dataclasses.dataclass(frozen=True)
class StudySettings(Settings):
    """What a multi-task study compares; saved as ``study.json`` in the study directory.

    Attributes:
        dataset: the dataset (path or built-in name).
        targets: the targets studied.
        groups: the similarity groups (every target in exactly one group).
        seeds: training seeds; every configuration is trained once per seed.
        configs: which of ``single``, ``group``, ``all``, ``random`` to run.
        random_seed: seed of the random groups.
        preset: name of the training preset (``quick`` or ``full``).
        split: the dataset split used by every training.
        train: the trainer's configuration (part of every result's cache key).
        only: the samples studied (:func:`~rhoprop.train.data.subset_ids`); empty: every sample.
        folds: 0: every training uses ``split`` and the replicates are training seeds; k >= 2:
            k-fold cross-validation grouped by formula (the folds of ``rhoprop benchmark``), the
            replicates in ``seeds`` are the fold indices and every training uses the same seed.
        fold_groups: with ``folds``, the similarity groups of each fold (chosen on that fold's
            training materials; ``groups`` is then the grouping most folds chose, for the report).
    """

    dataset: str
    targets: tuple[str, ...]
    groups: tuple[tuple[str, ...], ...]
    seeds: tuple[int, ...] = (0, 1)
    configs: tuple[str, ...] = CONFIGS
    random_seed: int = 0
    preset: str = "quick"
    split: str = "default"
    train: dict[str, Any] = dataclasses.field(default_factory=dict)
    only: str = ""
    folds: int = 0
    fold_groups: tuple[tuple[tuple[str, ...], ...], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(self.targets))
        object.__setattr__(self, "groups", tuple(tuple(g) for g in self.groups))
        object.__setattr__(
            self, "fold_groups", tuple(tuple(tuple(g) for g in gs) for gs in self.fold_groups)
        )
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        object.__setattr__(self, "configs", tuple(self.configs))
        if not self.targets:
            raise SettingsError("a study needs at least one target")
        if len(set(self.targets)) != len(self.targets):
            raise SettingsError(f"targets must be distinct, got {list(self.targets)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise SettingsError(
                f"seeds must be distinct and at least one, got {list(self.seeds)} "
                "(e.g. --seeds 0,1)"
            )
        bad = [c for c in self.configs if c not in CONFIGS]
        if bad or not self.configs:
            raise SettingsError(
                f"configs must be a non-empty subset of {CONFIGS}, got {list(self.configs)}"
            )
        for grouping in (self.groups, *self.fold_groups):
            members = [t for g in grouping for t in g]
            if sorted(members) != sorted(self.targets):
                raise SettingsError(
                    "groups must contain every target exactly once; targets "
                    f"{sorted(self.targets)}, groups {[list(g) for g in grouping]}"
                )
        if self.folds:
            if not (isinstance(self.folds, int) and self.folds >= 2):
                raise SettingsError(f"folds must be 0 (a split) or an int >= 2, got {self.folds}")
            bad_folds = [s for s in self.seeds if not 0 <= s < self.folds]
            if bad_folds:
                raise SettingsError(
                    f"with {self.folds} folds the replicates are fold indices 0..{self.folds - 1}; "
                    f"got {bad_folds} (e.g. --folds 5 runs folds 0,1,2,3,4)"
                )
            if self.fold_groups and len(self.fold_groups) != self.folds:
                raise SettingsError(
                    f"fold_groups must hold one grouping per fold ({self.folds}), "
                    f"got {len(self.fold_groups)}"
                )

    def groups_of(self, replicate: int) -> tuple[tuple[str, ...], ...]:
        """The similarity groups used for ``replicate`` (a seed, or a fold with ``folds``)."""
        if self.folds and self.fold_groups:
            return self.fold_groups[replicate]
        return self.groups


@dataclasses.dataclass(frozen=True)
class Assignment:
    """One cell of the study: ``target`` evaluated in ``config`` from the model trained on
    ``trained``."""

    target: str
    config: str
    seed: int
    trained: tuple[str, ...]

    @property
    def n_cotrained(self) -> int:
        """Number of targets trained together (including the target itself)."""
        return len(self.trained)


def parse_seeds(text: str) -> list[int]:
    """Seeds from a comma-separated option such as ``"0,1,2"`` (empty: [])."""
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise SettingsError(
            f"--seeds must be comma-separated integers such as 0,1,2, got {text!r}"
        ) from None


def restrict_groups(groups: Iterable[Sequence[str]], targets: Sequence[str]) -> list[list[str]]:
    """Intersect ``groups`` with ``targets``; targets in no group become singletons (in target
    order)."""
    wanted = set(targets)
    out = [[t for t in g if t in wanted] for g in groups]
    out = [g for g in out if g]
    seen = {t for g in out for t in g}
    out += [[t] for t in targets if t not in seen]
    return out


def random_group(
    target: str, size: int, targets: Sequence[str], avoid: Sequence[str], seed: int, draw: int
) -> tuple[str, ...]:
    """A seeded random set of ``size`` targets containing ``target``, different from ``avoid`` when
    possible."""
    others = sorted(t for t in targets if t != target)
    rng = np.random.default_rng([seed, zlib.crc32(target.encode()), draw])
    choice: tuple[str, ...] = ()
    for _ in range(100):
        picked = rng.choice(len(others), size=size - 1, replace=False) if size > 1 else ()
        choice = tuple(sorted([target, *(others[int(k)] for k in picked)]))
        if set(choice) != set(avoid):
            break
    return choice


def plan_study(settings: StudySettings) -> list[Assignment]:
    """Every (target, config, seed) cell of the study with the targets its model is trained on.

    ``group`` and ``random`` are left out for targets whose group is a singleton (they would be
    the single-task training again) and ``all`` when there is one target.
    """
    cells: list[Assignment] = []
    for seed in settings.seeds:
        group_of = {t: tuple(sorted(g)) for g in settings.groups_of(seed) for t in g}
        for target in settings.targets:
            group = group_of[target]
            for config in settings.configs:
                if config == "single":
                    trained: tuple[str, ...] = (target,)
                elif config == "group":
                    if len(group) < 2:
                        continue
                    trained = group
                elif config == "all":
                    if len(settings.targets) < 2:
                        continue
                    trained = tuple(sorted(settings.targets))
                else:
                    if len(group) < 2:
                        continue
                    trained = random_group(
                        target, len(group), settings.targets, group, settings.random_seed, seed
                    )
                cells.append(Assignment(target, config, seed, trained))
    return cells


def trainings(cells: Iterable[Assignment]) -> list[tuple[tuple[str, ...], int]]:
    """The distinct (targets, seed) trainings behind ``cells``, seed-major, smallest first."""
    unique = {(c.trained, c.seed) for c in cells}
    return sorted(unique, key=lambda ts: (ts[1], len(ts[0]), ts[0]))


#: ``labels_digest(targets, seed)`` of a trainer: a hash of the labels a training of ``targets``
#: with ``seed`` is fitted to and scored on (see :class:`ResultCache`).
LabelsDigest = Callable[[Sequence[str], int], str]


class ResultCache:
    """Finished trainings' results under ``root/runs/<key>/result.json``, written atomically.

    With ``labels_digest``, each result keeps the digest of the labels its training was fitted to
    and scored on, and is reused only while the digest is unchanged (a corrected or newly merged
    label retrains the trainings it touches); results saved without one (before 2026-12-07) are
    read as they are. Each training's digest is computed once per cache (the labels as this cache
    first saw them), whether a result is looked up or saved.
    """

    def __init__(
        self,
        root: str | Path,
        train_config: Mapping[str, Any],
        labels_digest: LabelsDigest | None = None,
    ) -> None:
        self.root = Path(root)
        self.train_config = json.loads(json.dumps(dict(train_config), sort_keys=True))
        self.labels_digest = labels_digest
        self._digests: dict[tuple[tuple[str, ...], int], str] = {}

    def labels(self, targets: Sequence[str], seed: int) -> str | None:
        """The labels digest of a training (None without ``labels_digest``)."""
        if self.labels_digest is None:
            return None
        key = (tuple(sorted(targets)), int(seed))
        if key not in self._digests:
            self._digests[key] = self.labels_digest(list(key[0]), key[1])
        return self._digests[key]

    def key(self, targets: Sequence[str], seed: int) -> str:
        """Cache key of a training: hash of (training config, sorted targets, seed)."""
        payload = json.dumps(
            {"train": self.train_config, "targets": sorted(targets), "seed": int(seed)},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def run_dir(self, targets: Sequence[str], seed: int) -> Path:
        """Directory of one training (its checkpoints and its result)."""
        return self.root / "runs" / self.key(targets, seed)

    def get(self, targets: Sequence[str], seed: int) -> dict[str, Any] | None:
        """The saved result of a training, or None when it has not finished."""
        path = self.run_dir(targets, seed) / "result.json"
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if record.get("targets") != sorted(targets) or record.get("seed") != int(seed):
            return None
        if "labels" not in record or self.labels_digest is None:
            return record
        return record if record["labels"] == self.labels(targets, seed) else None

    def put(
        self,
        targets: Sequence[str],
        seed: int,
        metrics: Mapping[str, Mapping[str, float]],
        wall_s: float,
    ) -> dict[str, Any]:
        """Save a finished training's metrics atomically and return the record."""
        record = {
            "targets": sorted(targets),
            "seed": int(seed),
            "train": self.train_config,
            **({"labels": self.labels(targets, seed)} if self.labels_digest is not None else {}),
            "metrics": {t: {k: _float(v) for k, v in m.items()} for t, m in metrics.items()},
            "wall_s": round(float(wall_s), 3),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "version": RESULT_FORMAT_VERSION,
        }
        atomic_write_text(
            self.run_dir(targets, seed) / "result.json", json.dumps(record, indent=2) + "\n"
        )
        return record


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


@dataclasses.dataclass(frozen=True)
class StudyRun:
    """What one call of :func:`run_study` did: trainings run now, reused, failed, still missing.

    ``failures`` maps a training (``"a,b,c @ seed 0"``) to the error it stopped with.
    """

    cells: list[Assignment]
    trained: int
    reused: int
    missing: int
    failures: dict[str, str]


@contextlib.contextmanager
def study_lock(study_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``study_dir`` (released even on kill -9; never kept by forked
    children such as DataLoader workers, see :mod:`rhoprop.locks`); a study run by another process
    raises :class:`~rhoprop.errors.FolderLockedError`."""
    hint = "another process is running this study: wait for it or choose another --out"
    with folder_lock(study_dir, hint):
        yield


def run_study(
    settings: StudySettings,
    train_fn: TrainFn,
    study_dir: str | Path,
    progress: Callable[[int, int, str], None] | None = None,
    max_trainings: int | None = None,
) -> StudyRun:
    """Train every training of the study that has no saved result; save each result as it finishes.

    A training that raises a :class:`RhopropError` (or a RuntimeError such as running out of
    memory) is recorded in ``runs/<key>/failed.json`` and skipped; a later call retries it.
    ``max_trainings`` bounds how many new trainings this call runs (the rest stay missing and a
    later call continues). ``progress(done, total, description)`` is called before each training.
    One process at a time may run a study directory.
    """
    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    with study_lock(study_dir):
        settings.to_json(study_dir / "study.json")
        cache = ResultCache(study_dir, settings.train, getattr(train_fn, "labels_digest", None))
        cells = plan_study(settings)
        todo = trainings(cells)
        trained = reused = 0
        failures: dict[str, str] = {}
        for k, (targets, seed) in enumerate(todo):
            if cache.get(targets, seed) is not None:
                reused += 1
                continue
            if max_trainings is not None and trained + len(failures) >= max_trainings:
                break
            name = f"{','.join(targets)} @ seed {seed}"
            if progress is not None:
                short = ", ".join(targets) if len(targets) <= 3 else f"{len(targets)} targets"
                progress(k, len(todo), f"seed {seed}: {short}")
            run_dir = cache.run_dir(targets, seed)
            run_dir.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            try:
                metrics = train_fn(list(targets), seed, run_dir)
                absent = [t for t in targets if t not in metrics]
                if absent:
                    raise SettingsError(f"the trainer returned no metrics for target(s) {absent}")
            except (RhopropError, RuntimeError) as exc:
                failures[name] = f"{type(exc).__name__}: {exc}"
                failure = {"targets": sorted(targets), "seed": seed, "error": failures[name]}
                atomic_write_text(run_dir / "failed.json", json.dumps(failure, indent=2) + "\n")
                continue
            cache.put(targets, seed, metrics, time.perf_counter() - start)
            (run_dir / "failed.json").unlink(missing_ok=True)
            trained += 1
        missing = sum(cache.get(t, s) is None for t, s in todo)
        if progress is not None:
            progress(len(todo), len(todo), "done")
    return StudyRun(cells, trained, reused, missing, failures)


# --- results ----------------------------------------------------------------------------------


def _metric(metrics: Mapping[str, Any], *names: str) -> float:
    lowered = {k.lower(): v for k, v in metrics.items()}
    for name in names:
        value = lowered.get(name)
        if value is not None and np.isfinite(float(value)):
            return float(value)
    return float("nan")


def collect_results(
    settings: StudySettings,
    study_dir: str | Path,
    kinds: Mapping[str, str],
    labels_digest: LabelsDigest | None = None,
) -> pd.DataFrame:
    """One row per finished (target, config, seed) cell: score (R² or ROC-AUC), MAE, accuracy
    (with ``labels_digest``, only results of the labels it describes: :class:`ResultCache`)."""
    cache = ResultCache(study_dir, settings.train, labels_digest)
    rows = []
    for cell in plan_study(settings):
        record = cache.get(cell.trained, cell.seed)
        if record is None:
            continue
        metrics = record["metrics"].get(cell.target, {})
        regression = kinds.get(cell.target, "regression") == "regression"
        rows.append(
            {
                "target": cell.target,
                "kind": kinds.get(cell.target, "regression"),
                "config": cell.config,
                "seed": cell.seed,
                "n_cotrained": cell.n_cotrained,
                "trained_with": ";".join(cell.trained),
                "score_name": "R2" if regression else "AUC",
                "score": _metric(metrics, "r2")
                if regression
                else _metric(metrics, "roc_auc", "auc"),
                "mae": _metric(metrics, "mae") if regression else float("nan"),
                "accuracy": float("nan") if regression else _metric(metrics, "accuracy", "acc"),
                "wall_s": record.get("wall_s"),
            }
        )
    columns = [
        "target",
        "kind",
        "config",
        "seed",
        "n_cotrained",
        "trained_with",
        "score_name",
        "score",
        "mae",
        "accuracy",
        "wall_s",
    ]
    return pd.DataFrame(rows, columns=columns)


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds per (target, config), with the change against single-task training.

    ``delta`` is score minus the single-task score (R² or AUC); ``rel_score_pct`` its relative
    change in percent of |single-task score|; ``rel_mae_pct`` the relative change of the MAE.
    """
    if results.empty:
        return pd.DataFrame(
            columns=[
                "target",
                "kind",
                "config",
                "n_cotrained",
                "seeds",
                "score_name",
                "score",
                "score_std",
                "mae",
                "mae_std",
                "delta",
                "rel_score_pct",
                "rel_mae_pct",
            ]
        )
    grouped = results.groupby(["target", "config"], sort=False)
    summary = grouped.agg(
        kind=("kind", "first"),
        n_cotrained=("n_cotrained", "mean"),
        seeds=("seed", "nunique"),
        score_name=("score_name", "first"),
        score=("score", "mean"),
        score_std=("score", "std"),
        mae=("mae", "mean"),
        mae_std=("mae", "std"),
    ).reset_index()
    single = summary[summary["config"] == "single"].set_index("target")
    base_score = summary["target"].map(single["score"])
    base_mae = summary["target"].map(single["mae"])
    summary["delta"] = summary["score"] - base_score
    summary["rel_score_pct"] = 100.0 * summary["delta"] / base_score.abs()
    summary["rel_mae_pct"] = 100.0 * (summary["mae"] - base_mae) / base_mae
    order = {c: k for k, c in enumerate(CONFIGS)}
    summary["_order"] = summary["config"].map(order)
    return summary.sort_values(["target", "_order"]).drop(columns="_order").reset_index(drop=True)


def overall(summary: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """Per config: mean score over targets, mean change vs single, targets improved, and wins over
    random.

    Only targets with every compared config finished count, so the means compare like with like.
    """
    rows = []
    for name in ("R2", "AUC"):
        part = summary[summary["score_name"] == name]
        if part.empty:
            continue
        wide = part.pivot(index="target", columns="config", values="score")
        for config in [c for c in CONFIGS if c in wide.columns]:
            columns = (
                ["single", config] if "single" in wide.columns and config != "single" else [config]
            )
            both = wide[columns].dropna()
            if both.empty:
                continue
            row: dict[str, Any] = {
                "score_name": name,
                "config": config,
                "targets": len(both),
                "mean_score": both[config].mean(),
            }
            if "single" in both.columns and config != "single":
                diff = both[config] - both["single"]
                row.update(
                    mean_single=both["single"].mean(),
                    mean_delta=diff.mean(),
                    rel_mean_pct=100.0 * diff.mean() / abs(both["single"].mean()),
                    improved=int((diff > 0).sum()),
                    p_wilcoxon=_wilcoxon(diff),
                )
            rows.append(row)
        if {"group", "random"} <= set(wide.columns):
            both = wide[["group", "random"]].dropna()
            if len(both):
                diff = both["group"] - both["random"]
                rows.append(
                    {
                        "score_name": name,
                        "config": "group - random",
                        "targets": len(both),
                        "mean_score": np.nan,
                        "mean_delta": diff.mean(),
                        "improved": int((diff > 0).sum()),
                        "p_wilcoxon": _wilcoxon(diff),
                    }
                )
    return pd.DataFrame(rows)


def _wilcoxon(diff: pd.Series) -> float:
    """Two-sided Wilcoxon signed-rank p-value over targets (NaN with fewer than 5 non-zero)."""
    d = diff.to_numpy(dtype=float)
    d = d[np.isfinite(d) & (d != 0)]
    if d.size < 5:
        return float("nan")
    return float(stats.wilcoxon(d).pvalue)


#: The paired comparisons of :func:`paired_tests`: (config, against).
COMPARISONS = (("group", "single"), ("all", "single"), ("random", "single"), ("group", "random"))
TEST_COLUMNS = (
    "target", "score_name", "config", "against", "seeds", "mean_difference", "wins", "p", "q",
)  # fmt: skip


def paired_tests(results: pd.DataFrame) -> pd.DataFrame:
    """Per target and comparison (:data:`COMPARISONS`): the score difference (R² or ROC-AUC;
    config − against) paired by seed, its mean, the seeds where the config scores higher, a
    two-sided paired t-test's p over seeds (NaN with fewer than 3 pairs or no spread), and its
    Benjamini-Hochberg q over the targets of that comparison."""
    rows: list[dict[str, Any]] = []
    for target, group in results.groupby("target", sort=False):
        table = group.pivot_table(index="seed", columns="config", values="score")
        for config, against in COMPARISONS:
            if config not in table or against not in table:
                continue
            pair = table[[config, against]].dropna()
            if pair.empty:
                continue
            diff = pair[config] - pair[against]
            p = math.nan
            if len(pair) >= 3 and float(diff.std()) > 0:
                p = float(stats.ttest_rel(pair[config], pair[against]).pvalue)
            rows.append(
                {
                    "target": target,
                    "score_name": group["score_name"].iloc[0],
                    "config": config,
                    "against": against,
                    "seeds": len(pair),
                    "mean_difference": float(diff.mean()),
                    "wins": int((diff > 0).sum()),
                    "p": p,
                }
            )
    out = pd.DataFrame(rows, columns=list(TEST_COLUMNS[:-1]))
    out["q"] = math.nan
    for _, part in out.groupby(["config", "against"], sort=False):
        valid = part["p"].dropna()
        if len(valid):
            out.loc[valid.index, "q"] = stats.false_discovery_control(valid.to_numpy())
    return out[list(TEST_COLUMNS)]


def paper_gain(summary: pd.DataFrame, below: float = 0.8) -> pd.DataFrame:
    """The paper's measure: per config, over the regression targets whose single-task R² is below
    ``below`` (where there is room to gain), the mean R² of that config against the mean
    single-task R² of the same targets, and the gain in percent of the latter's magnitude."""
    part = summary[summary["score_name"] == "R2"]
    wide = part.pivot(index="target", columns="config", values="score")
    if "single" not in wide:
        return pd.DataFrame(columns=["config", "targets", "mean_single", "mean_score", "gain_pct"])
    room = wide[wide["single"] < below]
    rows = []
    for config in [c for c in CONFIGS if c in wide.columns and c != "single"]:
        both = room[["single", config]].dropna()
        if both.empty:
            continue
        single, score = float(both["single"].mean()), float(both[config].mean())
        rows.append(
            {
                "config": config,
                "targets": len(both),
                "mean_single": single,
                "mean_score": score,
                "gain_pct": 100.0 * (score - single) / abs(single) if single else math.nan,
            }
        )
    return pd.DataFrame(
        rows, columns=["config", "targets", "mean_single", "mean_score", "gain_pct"]
    )


@dataclasses.dataclass(frozen=True)
class StudyResults:
    """The finished cells of a study and their summaries (see :func:`study_results`).

    Attributes:
        results: one row per finished (target, config, seed) cell (:func:`collect_results`).
        summary: mean ± std over seeds per (target, config) (:func:`summarize`).
        overall: per config over targets (:func:`overall`).
        tests: per target, paired tests over seeds with Benjamini-Hochberg q (:func:`paired_tests`).
        gain: the paper's mean R² gain where single-task R² < 0.8 (:func:`paper_gain`).
    """

    results: pd.DataFrame
    summary: pd.DataFrame
    overall: pd.DataFrame
    tests: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    gain: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)


def study_results(
    settings: StudySettings,
    study_dir: str | Path,
    kinds: Mapping[str, str],
    labels_digest: LabelsDigest | None = None,
) -> StudyResults:
    """The results of every finished training of the study in ``study_dir``, summarized (see
    :func:`collect_results`)."""
    results = collect_results(settings, study_dir, kinds, labels_digest)
    summary = summarize(results)
    return StudyResults(
        results, summary, overall(summary, results), paired_tests(results), paper_gain(summary)
    )
