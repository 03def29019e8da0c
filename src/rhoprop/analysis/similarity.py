"""Pairwise similarity of targets, significance, and grouping of related targets for multi-task
training.

For every two targets the statistics use only the materials labelled with both. Measures:
Pearson and Spearman correlation (regression and binary targets; Pearson on 0/1 is the
point-biserial correlation) with exact p-values; distance correlation (any kinds: multiclass
targets enter one-hot encoded; 0 only under independence, so it catches non-linear relations)
with a seeded permutation p-value; the correlation ratio η for a multiclass target against a
numeric one, with the one-way ANOVA p-value. Each measure's p-values are corrected across pairs
with Benjamini-Hochberg. Grouping is average-linkage hierarchical clustering on
``1 - |similarity|`` where non-significant or untestable pairs get distance 1, cut where the
average-linkage similarity falls below the threshold.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.cluster import hierarchy
from scipy.spatial.distance import cdist, squareform

from rhoprop.analysis.labels import LabelTable
from rhoprop.data.labels import KINDS
from rhoprop.errors import LabelTableError, SettingsError
from rhoprop.settings import Settings, atomic_write_text

MEASURES = ("dcor", "spearman", "pearson")
STATUS_OK = "ok"
STATUS_TOO_FEW = "too few pairs"
STATUS_CONSTANT = "constant"
#: Columns of the pairs table, in order.
PAIR_COLUMNS = (
    "target_a",
    "target_b",
    "kind_a",
    "kind_b",
    "n",
    "status",
    "pearson",
    "p_pearson",
    "q_pearson",
    "spearman",
    "p_spearman",
    "q_spearman",
    "n_dcor",
    "dcor",
    "p_dcor",
    "q_dcor",
    "eta",
    "p_eta",
    "q_eta",
    "measure",
    "similarity",
    "p_similarity",
    "q_similarity",
    "significant",
)
GROUPS_FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class SimilaritySettings(Settings):
    """Settings of ``rhoprop analyze targets``.

    Attributes:
        alpha: false discovery rate: a pair is significant when its Benjamini-Hochberg q < alpha.
        threshold: minimum (average-linkage) |similarity| for targets to share a group, in (0, 1].
        min_pairs: pairs with fewer materials labelled with both targets are not tested.
        measure: similarity used for grouping: ``dcor``, ``spearman`` or ``pearson``; pairs where
            the correlation is undefined (a multiclass target) fall back to ``dcor``.
        n_permutations: permutations of the distance-correlation test (sequential stopping after
            ``stop_after`` exceedances, Besag & Clifford 1991).
        stop_after: exceedances after which a permutation test stops early (p is then >= that/N).
        seed: seed of the permutation tests (each pair's stream also depends on its target names).
        max_dcor_n: pairs with more shared labels compute the distance correlation and its test on
            a seeded random subsample of this many materials (``n_dcor`` in the table); Pearson and
            Spearman always use every material.
    """

    alpha: float = 0.05
    threshold: float = 0.5
    min_pairs: int = 10
    measure: str = "dcor"
    n_permutations: int = 999
    stop_after: int = 20
    seed: int = 0
    max_dcor_n: int = 1000

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise SettingsError(f"alpha must be in (0, 1), got {self.alpha!r} (e.g. --alpha 0.05)")
        if not 0.0 < self.threshold <= 1.0:
            raise SettingsError(
                f"threshold must be in (0, 1] (a minimum |similarity| for grouping), got "
                f"{self.threshold!r} (e.g. --threshold 0.5)"
            )
        if not isinstance(self.min_pairs, int) or self.min_pairs < 4:
            raise SettingsError(f"min_pairs must be an int >= 4, got {self.min_pairs!r}")
        if self.measure not in MEASURES:
            raise SettingsError(f"measure must be one of {MEASURES}, got {self.measure!r}")
        if not isinstance(self.n_permutations, int) or self.n_permutations < 19:
            raise SettingsError(f"n_permutations must be an int >= 19, got {self.n_permutations!r}")
        if not isinstance(self.max_dcor_n, int) or self.max_dcor_n < self.min_pairs:
            raise SettingsError(f"max_dcor_n must be an int >= min_pairs, got {self.max_dcor_n!r}")
        if not isinstance(self.stop_after, int) or self.stop_after < 1:
            raise SettingsError(f"stop_after must be an int >= 1, got {self.stop_after!r}")


@dataclasses.dataclass(frozen=True)
class Grouping:
    """Result of clustering targets.

    Attributes:
        groups: lists of target names (largest first; singletons included).
        targets: the clustered targets, in input order.
        distance: (T, T) distance matrix used (1 - |similarity|, 1 when not significant).
        similarity: (T, T) similarity matrix (signed where the measure is; NaN when untested).
        linkage: scipy linkage matrix ((T-1, 4); empty for fewer than two targets).
        order: dendrogram leaf order (indices into ``targets``).
    """

    groups: list[list[str]]
    targets: list[str]
    distance: np.ndarray
    similarity: np.ndarray
    linkage: np.ndarray
    order: list[int]


# --- statistics -------------------------------------------------------------------------------


def double_centered_distances(x: np.ndarray) -> np.ndarray:
    """Double-centred Euclidean distance matrix (n, n) of samples ``x`` of shape (n,) or (n, d)."""
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    d = cdist(x, x)
    row = d.mean(axis=0)
    return d - row[None, :] - row[:, None] + row.mean()


def distance_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Distance correlation (Székely et al. 2007) of paired samples in [0, 1]; 0 iff independent."""
    a = double_centered_distances(x)
    b = double_centered_distances(y)
    return _dcor_from_centered(a, b)


def _dcor_from_centered(a: np.ndarray, b: np.ndarray) -> float:
    dcov2 = float(np.vdot(a, b))
    denom = float(np.sqrt(np.vdot(a, a) * np.vdot(b, b)))
    if denom <= 0.0:
        return float("nan")
    return float(np.sqrt(max(dcov2, 0.0) / denom))


def distance_correlation_test(
    x: np.ndarray,
    y: np.ndarray,
    n_permutations: int = 999,
    rng: np.random.Generator | None = None,
    stop_after: int | None = None,
    y_categorical: bool = False,
) -> tuple[float, float]:
    """Distance correlation of ``x`` ((n,) or (n, d)) and 1-D ``y``, with its permutation p-value.

    ``y_categorical`` treats ``y`` as class codes (the distance of one-hot vectors, sqrt(2) between
    different classes). The p-value is ``(1 + #{T_perm >= T}) / (1 + N)``; with ``stop_after`` the
    test stops once that many permutations reach the observed statistic and returns
    ``stop_after / N_done`` (Besag & Clifford's sequential p-value).
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    y = np.asarray(y, dtype=float)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D (values or class codes), got shape {y.shape}")
    a = double_centered_distances(x)
    b = double_centered_distances(_encode(y, "multiclass") if y_categorical else y)
    dcor = _dcor_from_centered(a, b)
    if not np.isfinite(dcor):
        return dcor, float("nan")
    # Since a is double-centred, sum(a * B) = sum(a * raw distances of y): permute y, not B.
    n = y.size
    flat = a.astype(np.float32).ravel()
    values = y.astype(np.float32)

    def statistic(batch: np.ndarray) -> np.ndarray:
        yp = values[batch]
        if y_categorical:
            dist = (yp[:, :, None] != yp[:, None, :]).astype(np.float32)
        else:
            dist = np.abs(yp[:, :, None] - yp[:, None, :])
        return dist.reshape(len(batch), -1) @ flat

    observed = float(statistic(np.arange(n)[None, :])[0])
    tol = 1e-5 * float(np.abs(flat).sum() * max(np.ptp(values), 1.0))
    batch_size = int(max(1, min(32, 2e7 // (n * n))))
    exceed = done = 0
    while done < n_permutations:
        k = min(batch_size, n_permutations - done)
        perms = np.stack([rng.permutation(n) for _ in range(k)])
        hits = statistic(perms) >= observed - tol
        if stop_after is not None and exceed + int(hits.sum()) >= stop_after:
            position = int(np.flatnonzero(np.cumsum(hits) + exceed >= stop_after)[0])
            return dcor, stop_after / (done + position + 1)
        exceed += int(hits.sum())
        done += k
    return dcor, (1 + exceed) / (1 + n_permutations)


def correlation_ratio(codes: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Correlation ratio η of numeric ``values`` across classes ``codes`` and the ANOVA p-value."""
    groups = [values[codes == c] for c in np.unique(codes)]
    groups = [g for g in groups if g.size]
    total = float(((values - values.mean()) ** 2).sum())
    if len(groups) < 2 or total <= 0.0:
        return float("nan"), float("nan")
    between = float(sum(g.size * (g.mean() - values.mean()) ** 2 for g in groups))
    eta = float(np.sqrt(min(max(between / total, 0.0), 1.0)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = float(stats.f_oneway(*groups).pvalue) if all(g.size for g in groups) else float("nan")
    return eta, p


def benjamini_hochberg(p: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg q-values of ``p``; NaN entries stay NaN and do not count as tests."""
    values = np.asarray(p, dtype=float)
    q = np.full(values.shape, np.nan)
    ok = np.isfinite(values)
    if ok.any():
        q[ok] = stats.false_discovery_control(np.clip(values[ok], 0.0, 1.0), method="bh")
    return q


def _pair_seed(seed: int, a: str, b: str) -> np.random.Generator:
    key = zlib.crc32(f"{a}\x00{b}".encode())
    return np.random.default_rng([seed, key])


def _encode(values: np.ndarray, kind: str) -> np.ndarray:
    """Numeric encoding for distance correlation: 1-D values, one-hot for multiclass."""
    if kind == "multiclass":
        classes = np.unique(values)
        return (values[:, None] == classes[None, :]).astype(float)
    return values.astype(float)


def _pair_stats(
    x: np.ndarray,
    y: np.ndarray,
    kind_x: str,
    kind_y: str,
    settings: SimilaritySettings,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """All measures for one pair of label vectors with no missing values."""
    out: dict[str, Any] = {}
    if np.ptp(x) == 0.0 or np.ptp(y) == 0.0:
        out["status"] = STATUS_CONSTANT
        return out
    out["status"] = STATUS_OK
    if "multiclass" not in (kind_x, kind_y):
        r = stats.pearsonr(x, y)
        out["pearson"], out["p_pearson"] = float(r.statistic), float(r.pvalue)
        rho = stats.spearmanr(x, y)
        out["spearman"], out["p_spearman"] = float(rho.statistic), float(rho.pvalue)
    elif kind_x == "multiclass" and kind_y != "multiclass":
        out["eta"], out["p_eta"] = correlation_ratio(x, y)
    elif kind_y == "multiclass" and kind_x != "multiclass":
        out["eta"], out["p_eta"] = correlation_ratio(y, x)
    if (
        x.size > settings.max_dcor_n
    ):  # O(n²) memory and time: a seeded subsample, still a valid test
        keep = np.sort(rng.choice(x.size, settings.max_dcor_n, replace=False))
        x, y = x[keep], y[keep]
    out["n_dcor"] = int(x.size)
    out["dcor"], out["p_dcor"] = distance_correlation_test(
        _encode(x, kind_x),
        y,
        settings.n_permutations,
        rng,
        settings.stop_after,
        y_categorical=kind_y == "multiclass",
    )
    return out


def pairwise_similarity(
    table: LabelTable,
    settings: SimilaritySettings | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Similarity statistics of every pair of targets of ``table`` (columns :data:`PAIR_COLUMNS`).

    Pairs with fewer than ``settings.min_pairs`` shared labels get status ``"too few pairs"`` and
    are neither tested nor grouped; q-values are Benjamini-Hochberg over the tested pairs.
    """
    settings = settings or SimilaritySettings()
    targets = table.targets
    for t in targets:
        if table.kinds.get(t) not in KINDS:
            raise LabelTableError(
                f"target {t!r} has kind {table.kinds.get(t)!r}; expected one of {KINDS}"
            )
    values = table.labels.to_numpy(dtype=float)
    rows: list[dict[str, Any]] = []
    total = len(targets) * (len(targets) - 1) // 2
    for i, a in enumerate(targets):
        for j in range(i + 1, len(targets)):
            b = targets[j]
            mask = np.isfinite(values[:, i]) & np.isfinite(values[:, j])
            n = int(mask.sum())
            row: dict[str, Any] = {
                "target_a": a,
                "target_b": b,
                "kind_a": table.kinds[a],
                "kind_b": table.kinds[b],
                "n": n,
            }
            if n < settings.min_pairs:
                row["status"] = STATUS_TOO_FEW
            else:
                row.update(
                    _pair_stats(
                        values[mask, i],
                        values[mask, j],
                        table.kinds[a],
                        table.kinds[b],
                        settings,
                        _pair_seed(settings.seed, a, b),
                    )
                )
            rows.append(row)
            if progress is not None:
                progress(len(rows), total)
    frame = pd.DataFrame(rows).reindex(columns=list(PAIR_COLUMNS))
    for name in ("pearson", "spearman", "dcor", "eta"):
        frame[f"q_{name}"] = benjamini_hochberg(frame[f"p_{name}"].to_numpy(dtype=float))
    measure = settings.measure
    own = frame[measure].notna()
    frame["measure"] = np.where(own, measure, np.where(frame["dcor"].notna(), "dcor", ""))
    frame["similarity"] = np.where(own, frame[measure], frame["dcor"]).astype(float)
    frame["p_similarity"] = np.where(own, frame[f"p_{measure}"], frame["p_dcor"]).astype(float)
    frame["q_similarity"] = benjamini_hochberg(frame["p_similarity"].to_numpy(dtype=float))
    frame["significant"] = (frame["q_similarity"] < settings.alpha).fillna(False).astype(bool)
    return frame


# --- grouping ---------------------------------------------------------------------------------


def group_targets(pairs: pd.DataFrame, targets: Sequence[str], threshold: float) -> Grouping:
    """Cluster ``targets`` by average linkage on ``1 - |similarity|`` of significant pairs.

    Non-significant and untested pairs have distance 1, so they are never linked directly;
    groups are cut at distance ``1 - threshold``.
    """
    targets = list(targets)
    t = len(targets)
    index = {name: k for k, name in enumerate(targets)}
    distance = np.ones((t, t))
    np.fill_diagonal(distance, 0.0)
    similarity = np.full((t, t), np.nan)
    np.fill_diagonal(similarity, 1.0)
    for row in pairs.itertuples(index=False):
        if row.target_a not in index or row.target_b not in index:
            continue
        i, j = index[row.target_a], index[row.target_b]
        similarity[i, j] = similarity[j, i] = row.similarity
        if row.significant and np.isfinite(row.similarity):
            distance[i, j] = distance[j, i] = 1.0 - min(abs(float(row.similarity)), 1.0)
    if t < 2:
        return Grouping(
            [targets] if targets else [],
            targets,
            distance,
            similarity,
            np.empty((0, 4)),
            list(range(t)),
        )
    linkage = hierarchy.linkage(squareform(distance, checks=False), method="average")
    labels = hierarchy.fcluster(linkage, t=1.0 - threshold + 1e-12, criterion="distance")
    order = [int(k) for k in hierarchy.leaves_list(linkage)]
    clusters: dict[int, list[str]] = {}
    for k in order:
        clusters.setdefault(int(labels[k]), []).append(targets[k])
    groups = sorted(clusters.values(), key=lambda g: (-len(g), order.index(index[g[0]])))
    return Grouping(groups, targets, distance, similarity, linkage, order)


def groups_document(
    grouping: Grouping, settings: SimilaritySettings, pairs: pd.DataFrame, source: str
) -> dict[str, Any]:
    """The ``groups.json`` content: groups plus how they were found."""
    too_few = pairs[pairs["status"] == STATUS_TOO_FEW]
    return {
        "groups": grouping.groups,
        "method": (
            f"average-linkage hierarchical clustering (scipy) on 1 - |{settings.measure}| between "
            f"targets; pairs not significant at Benjamini-Hochberg q < {settings.alpha} or with "
            f"fewer than {settings.min_pairs} shared labels get distance 1; cut at similarity "
            f"{settings.threshold}"
        ),
        "measure": settings.measure,
        "threshold": settings.threshold,
        "alpha": settings.alpha,
        "min_pairs": settings.min_pairs,
        "source": source,
        "too_few_pairs": [
            [r.target_a, r.target_b, int(r.n)] for r in too_few.itertuples(index=False)
        ],
        "version": GROUPS_FORMAT_VERSION,
    }


def write_groups(path: str | Path, document: dict[str, Any]) -> None:
    """Write a groups document (see :func:`groups_document`) atomically as JSON."""
    atomic_write_text(path, json.dumps(document, indent=2) + "\n")


def read_groups(path: str | Path, known_targets: Sequence[str] | None = None) -> list[list[str]]:
    """Read the groups of a groups file (``rhoprop analyze targets`` writes ``groups.json``).

    The file holds ``{"groups": [["target", ...], ...]}`` or the bare list: at least one group,
    each a non-empty list of target names, no target in two groups. With ``known_targets``, names
    not among them raise :class:`LabelTableError` listing the valid ones.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LabelTableError(f"cannot read groups file {path}: {exc}") from exc
    groups = data.get("groups") if isinstance(data, dict) else data
    if (
        not isinstance(groups, list)
        or not groups
        or not all(isinstance(g, list) and g and all(isinstance(n, str) for n in g) for g in groups)
    ):
        raise LabelTableError(
            f'groups file {path}: expected {{"groups": [["target", ...], ...]}} (or the bare list) '
            f"with at least one non-empty list of target names, found {str(groups)[:200]}"
        )
    seen: set[str] = set()
    for g in groups:
        dup = seen.intersection(g) | {n for n in g if g.count(n) > 1}
        if dup:
            raise LabelTableError(
                f"groups file {path}: target(s) {sorted(dup)} appear in more than one group"
            )
        seen.update(g)
    if known_targets is not None:
        unknown = sorted(seen - set(known_targets))
        if unknown:
            raise LabelTableError(
                f"groups file {path}: unknown target(s) {unknown}; the dataset has "
                f"{sorted(known_targets)}"
            )
    return [list(g) for g in groups]


# --- the whole analysis -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TargetAnalysis:
    """What the similarity analysis of a label table finds (written by
    :func:`rhoprop.analysis.report.write_target_analysis`).

    Attributes:
        pairs: one row per pair of targets (columns :data:`PAIR_COLUMNS`).
        grouping: the clustering of the targets.
        settings: the settings used.
        counts: target -> number of labelled materials.
        kinds: target -> kind (``regression``, ``binary``, ``multiclass``).
        source: where the labels came from.
    """

    pairs: pd.DataFrame
    grouping: Grouping
    settings: SimilaritySettings
    counts: dict[str, int]
    kinds: dict[str, str]
    source: str

    def groups_document(self) -> dict[str, Any]:
        """The ``groups.json`` content of this analysis (see :func:`groups_document`)."""
        return groups_document(self.grouping, self.settings, self.pairs, self.source)


def analyze_targets(
    table: LabelTable,
    settings: SimilaritySettings | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TargetAnalysis:
    """The similarity of every two targets of ``table`` and their groups; writes nothing.

    ``progress(done, total)`` is called after each pair.
    """
    settings = settings or SimilaritySettings()
    if len(table.targets) < 2:
        raise LabelTableError(
            f"{table.source}: the similarity analysis needs at least two targets, found "
            f"{table.targets}"
        )
    pairs = pairwise_similarity(table, settings, progress)
    grouping = group_targets(pairs, table.targets, settings.threshold)
    counts = {t: int(table.labels[t].notna().sum()) for t in table.targets}
    return TargetAnalysis(pairs, grouping, settings, counts, dict(table.kinds), table.source)
