"""Target similarity statistics, Benjamini-Hochberg, too-few-pairs handling and grouping."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rhoprop.analysis.labels import LabelTable, read_label_csv
from rhoprop.analysis.report import write_target_analysis
from rhoprop.analysis.similarity import (
    STATUS_TOO_FEW,
    SimilaritySettings,
    analyze_targets,
    benjamini_hochberg,
    correlation_ratio,
    distance_correlation,
    distance_correlation_test,
    group_targets,
    pairwise_similarity,
    read_groups,
)
from rhoprop.errors import LabelTableError, SettingsError

from helpers.elements import element_labels

FAST = SimilaritySettings(n_permutations=199, stop_after=10)


def planted_table(seed: int = 1) -> LabelTable:
    """Synthetic labels with known structure (160 materials).

    ``x`` is a symmetric sample (z and -z), so ``x_squared`` has exactly zero Pearson correlation
    with it while depending on it completely; ``noise_a`` and ``noise_b`` form a full factorial
    design (16 x 10 levels), so their empirical joint distribution is the product of the marginals:
    independent by construction, for every measure.
    """
    rng = np.random.default_rng(seed)
    z = rng.normal(size=80)
    x = np.concatenate([z, -z])
    frame = pd.DataFrame(
        {
            "x": x,
            "x_noisy": x + 0.5 * rng.normal(size=x.size),
            "x_squared": x**2,
            "noise_a": np.tile(rng.normal(size=16), 10),
            "noise_b": np.repeat(rng.normal(size=10), 16),
            "x_positive": (x > 0).astype(float),
            "x_class": np.digitize(x, [-0.7, 0.0, 0.7]).astype(float),
        },
        index=[f"m{i}" for i in range(x.size)],
    )
    kinds = {c: "regression" for c in frame.columns}
    kinds.update(x_positive="binary", x_class="multiclass")
    return LabelTable(frame, kinds, {}, {}, "planted")


def row(pairs: pd.DataFrame, a: str, b: str) -> pd.Series:
    hit = pairs[
        ((pairs.target_a == a) & (pairs.target_b == b))
        | ((pairs.target_a == b) & (pairs.target_b == a))
    ]
    assert len(hit) == 1
    return hit.iloc[0]


@pytest.fixture(scope="module")
def planted_pairs() -> pd.DataFrame:
    return pairwise_similarity(planted_table(), FAST)


def test_strong_linear_pair_is_significant_by_every_measure(planted_pairs: pd.DataFrame) -> None:
    r = row(planted_pairs, "x", "x_noisy")
    assert r.pearson > 0.8 and r.spearman > 0.8 and r.dcor > 0.75
    assert r.q_pearson < 1e-10 and r.q_spearman < 1e-10 and r.q_dcor < 0.05
    assert bool(r.significant) and r.n == 160


def test_independent_pair_is_not_significant(planted_pairs: pd.DataFrame) -> None:
    r = row(planted_pairs, "noise_a", "noise_b")
    assert abs(r.pearson) < 1e-12 and r.dcor < 1e-6
    assert r.q_pearson > 0.5 and r.q_spearman > 0.5 and r.q_dcor > 0.5 and not r.significant


def test_permutation_test_rejects_independent_samples_at_about_alpha() -> None:
    rng = np.random.default_rng(11)
    p = [
        distance_correlation_test(rng.normal(size=50), rng.normal(size=50), 99, rng)[1]
        for _ in range(200)
    ]
    assert 0.01 <= np.mean(np.array(p) < 0.05) <= 0.10


def test_nonlinear_pair_found_by_distance_correlation_only(planted_pairs: pd.DataFrame) -> None:
    r = row(planted_pairs, "x", "x_squared")
    assert r.q_pearson > 0.5 and abs(r.pearson) < 1e-12
    assert r.q_dcor < 0.05 and r.dcor > 0.3 and bool(r.significant)


def test_classification_targets_get_point_biserial_and_correlation_ratio(
    planted_pairs: pd.DataFrame,
) -> None:
    table = planted_table()
    r = row(planted_pairs, "x", "x_positive")
    expected = stats.pearsonr(table.labels["x"], table.labels["x_positive"]).statistic
    assert r.pearson == pytest.approx(expected, abs=1e-12) and r.pearson > 0.7
    m = row(planted_pairs, "x", "x_class")
    assert np.isnan(m.pearson) and m.measure == "dcor"
    assert m.eta > 0.85 and m.q_eta < 1e-10 and bool(m.significant)
    assert np.isfinite(row(planted_pairs, "noise_a", "x_class").q_similarity)


def test_benjamini_hochberg_is_applied_across_tested_pairs(planted_pairs: pd.DataFrame) -> None:
    for measure in ("pearson", "spearman", "dcor"):
        p = planted_pairs[f"p_{measure}"].to_numpy(dtype=float)
        ok = np.isfinite(p)
        np.testing.assert_allclose(
            planted_pairs[f"q_{measure}"].to_numpy()[ok], stats.false_discovery_control(p[ok])
        )
        assert (planted_pairs[f"q_{measure}"].to_numpy()[ok] >= p[ok] - 1e-15).all()
    q = benjamini_hochberg([0.01, np.nan, 0.04, 0.03])
    np.testing.assert_allclose(q[[0, 2, 3]], [0.03, 0.04, 0.04])
    assert np.isnan(q[1])


def test_distance_correlation_matches_bivariate_normal_theory() -> None:
    """Székely et al. (2007) give dCor(ρ) for a bivariate normal; a large sample matches it."""
    rho = 0.6
    rng = np.random.default_rng(3)
    xy = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=1500)
    num = (
        rho * np.arcsin(rho)
        + np.sqrt(1 - rho**2)
        - rho * np.arcsin(rho / 2)
        - np.sqrt(4 - rho**2)
        + 1
    )
    expected = np.sqrt(num / (1 + np.pi / 3 - np.sqrt(3)))
    assert distance_correlation(xy[:, 0], xy[:, 1]) == pytest.approx(expected, abs=0.03)
    assert distance_correlation(xy[:, 0], 3.0 * xy[:, 0] - 2.0) == pytest.approx(1.0, abs=1e-9)


def test_large_pairs_test_distance_correlation_on_a_subsample() -> None:
    table = planted_table()
    pairs = pairwise_similarity(table, SimilaritySettings(n_permutations=99, max_dcor_n=60))
    r = row(pairs, "x", "x_noisy")
    assert r.n == 160 and r.n_dcor == 60 and r.q_dcor < 0.05
    full = row(pairwise_similarity(table, FAST), "x", "x_noisy")
    assert r.pearson == full.pearson and full.n_dcor == 160
    assert r.dcor == pytest.approx(full.dcor, abs=0.1)


def test_permutation_test_is_seeded_and_bounded() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=60), rng.normal(size=60)
    first = distance_correlation_test(x, y, 99, np.random.default_rng(5))
    assert first == distance_correlation_test(x, y, 99, np.random.default_rng(5))
    assert 1 / 100 <= first[1] <= 1.0
    strong = distance_correlation_test(x, x + 0.1 * y, 99, np.random.default_rng(5))
    assert strong[1] == pytest.approx(1 / 100)


def test_categorical_permutation_statistic_equals_one_hot_distance_correlation() -> None:
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 3, size=80).astype(float)
    x = codes + rng.normal(size=80)
    one_hot = (codes[:, None] == np.arange(3)[None, :]).astype(float)
    dcor, p = distance_correlation_test(x, codes, 99, rng, y_categorical=True)
    assert dcor == pytest.approx(distance_correlation(x, one_hot), abs=1e-12)
    assert p == pytest.approx(0.01)


def test_correlation_ratio_of_perfectly_separated_classes_is_one() -> None:
    codes = np.repeat([0.0, 1.0, 2.0], 10)
    eta, p = correlation_ratio(codes, codes * 5.0)
    assert eta == pytest.approx(1.0) and p < 1e-10


def test_too_few_pairs_are_reported_not_tested_not_grouped() -> None:
    """Elements up to Ca: Young's modulus and the ASE volume are both known for only 7 of them."""
    table = element_labels(max_z=20).select(
        ["volume_per_atom", "youngs_modulus", "molar_volume", "melting_point"]
    )
    pairs = pairwise_similarity(table, SimilaritySettings(min_pairs=10, n_permutations=99))
    few = row(pairs, "volume_per_atom", "youngs_modulus")
    assert few.status == STATUS_TOO_FEW and few.n < 10 and not few.significant
    assert np.isnan(few.pearson) and np.isnan(few.q_similarity)
    tested = pairs[pairs.status == "ok"]
    np.testing.assert_allclose(tested.q_pearson, stats.false_discovery_control(tested.p_pearson))
    grouping = group_targets(pairs, table.targets, 0.5)
    i, j = table.targets.index("volume_per_atom"), table.targets.index("youngs_modulus")
    assert grouping.distance[i, j] == 1.0 and np.isnan(grouping.similarity[i, j])


def test_constant_targets_on_shared_materials_are_reported_not_tested() -> None:
    frame = pd.DataFrame({"a": np.arange(20.0), "b": np.r_[np.ones(12), np.full(8, np.nan)]})
    table = LabelTable(frame, {"a": "regression", "b": "binary"}, {}, {}, "constant")
    r = row(pairwise_similarity(table, FAST), "a", "b")
    assert r.status == "constant" and r.n == 12 and not r.significant and np.isnan(r.dcor)


def test_grouping_recovers_planted_blocks() -> None:
    rng = np.random.default_rng(7)
    n = 120
    u, v = rng.normal(size=n), rng.normal(size=n)
    frame = pd.DataFrame(
        {
            "u1": u,
            "u2": u + 0.3 * rng.normal(size=n),
            "u3": -u + 0.3 * rng.normal(size=n),
            "v1": v,
            "v2": np.exp(v) + 0.1 * rng.normal(size=n),
            "lone": rng.normal(size=n),
        }
    )
    table = LabelTable(frame, {c: "regression" for c in frame}, {}, {}, "blocks")
    grouping = group_targets(pairwise_similarity(table, FAST), table.targets, 0.5)
    assert sorted(map(sorted, grouping.groups)) == [["lone"], ["u1", "u2", "u3"], ["v1", "v2"]]
    assert grouping.distance.shape == (6, 6) and sorted(grouping.order) == list(range(6))


def test_analysis_of_element_properties_writes_readable_groups(tmp_path) -> None:
    table = element_labels()
    result = analyze_targets(table, SimilaritySettings(n_permutations=199))
    assert not any(tmp_path.iterdir())  # the analysis itself writes nothing
    write_target_analysis(result, tmp_path)
    groups = read_groups(tmp_path / "groups.json", known_targets=table.targets)
    assert sorted(t for g in groups for t in g) == sorted(table.targets)
    group_of = {t: k for k, g in enumerate(groups) for t in g}
    assert group_of["density"] == group_of["density_ase"]
    assert group_of["volume_per_atom"] == group_of["molar_volume"]
    assert group_of["bulk_modulus"] == group_of["youngs_modulus"]
    doc = json.loads((tmp_path / "groups.json").read_text())
    assert doc["alpha"] == 0.05 and doc["threshold"] == 0.5 and doc["measure"] == "dcor"
    pairs = pd.read_csv(tmp_path / "pairs.csv")
    assert len(pairs) == len(table.targets) * (len(table.targets) - 1) // 2
    for col in (
        "target_a",
        "target_b",
        "n",
        "pearson",
        "spearman",
        "dcor",
        "p_dcor",
        "q_dcor",
        "significant",
    ):
        assert col in pairs.columns
    strong = row(pairs, "density", "density_ase")
    assert strong.pearson > 0.99 and strong.n == 56
    for name in ("similarity_heatmap.png", "dendrogram.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.counts["molar_volume"] == 83


def test_read_groups_rejects_bad_files(tmp_path) -> None:
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"groups": [["a", "b"], ["b"]]}))
    with pytest.raises(LabelTableError, match="more than one group"):
        read_groups(path)
    path.write_text(json.dumps({"groups": [["a", "zz"]]}))
    with pytest.raises(LabelTableError, match="unknown target.*zz"):
        read_groups(path, known_targets=["a", "b"])
    path.write_text(json.dumps({"groups": "a,b"}))
    with pytest.raises(LabelTableError, match="expected"):
        read_groups(path)
    for bad in ({"groups": []}, {"groups": [["a"], []]}, [], {"groups": [["a", 1]]}):
        path.write_text(json.dumps(bad))
        with pytest.raises(LabelTableError, match="groups file .*expected"):
            read_groups(path)
    path.write_text(json.dumps({"groups": [["a", "b"], ["c"]], "method": "similarity"}))
    assert read_groups(path) == [["a", "b"], ["c"]]
    path.write_text(json.dumps([["a", "b"], ["c"]]))  # the bare list
    assert read_groups(path) == [["a", "b"], ["c"]]


def test_settings_reject_invalid_values() -> None:
    with pytest.raises(SettingsError, match="alpha"):
        SimilaritySettings(alpha=1.5)
    with pytest.raises(SettingsError, match="threshold"):
        SimilaritySettings(threshold=0.0)
    with pytest.raises(SettingsError, match="measure"):
        SimilaritySettings(measure="kendall")
    assert SimilaritySettings.from_dict(FAST.to_dict()) == FAST


def test_label_csv_is_read_like_dataset_build_with_kinds_and_dropped_duplicates(tmp_path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(
        "id,gap,metal,system,empty\na,1.5,false,cubic,\nb,0.0,true,hexagonal,\nc,2.5,false,trigonal,\nd,,true,,\n"
    )
    table = read_label_csv(path)
    assert table.kinds == {"gap": "regression", "metal": "binary", "system": "multiclass"}
    assert table.classes["system"] == ("cubic", "hexagonal", "trigonal")
    assert table.labels.loc["d", "metal"] == 1.0 and np.isnan(table.labels.loc["d", "gap"])
    path.write_text("id,gap\na,1\na,2\nb,3\n")
    table = read_label_csv(path)
    assert list(table.labels.index) == ["b"] and any("lines [2, 3]" in n for n in table.notes)


def test_label_csv_takes_kinds_units_and_classes_from_targets_json_beside_it(tmp_path) -> None:
    from rhoprop.data.labels import TargetSpec, write_targets

    (tmp_path / "labels.csv").write_text("id,gap,metal,extra\na,1.5,0,3\nb,0,1,4\nc,2.5,0,5\n")
    write_targets(
        tmp_path / "targets.json",
        [
            TargetSpec("gap", "regression", "eV"),
            TargetSpec("metal", "binary", "", ("no", "yes")),
            TargetSpec("not_in_csv", "regression"),
        ],
    )
    table = read_label_csv(tmp_path / "labels.csv")
    assert table.units["gap"] == "eV" and table.classes["metal"] == ("no", "yes")
    assert table.kinds == {"gap": "regression", "metal": "binary", "extra": "regression"}
