"""Label tables: kind inference, bad cells, duplicate ids, schemas, and the file-name id rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rhoprop.data.inputs import find_density_files, id_from_path, is_density_name
from rhoprop.data.labels import (
    TargetSpec,
    encode_labels,
    parse_labels,
    read_raw_labels,
    read_targets,
    write_targets,
)
from rhoprop.errors import LabelTableError, SettingsError


def _csv(tmp_path: Path, text: str, name: str = "labels.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_kinds_are_inferred_from_column_contents(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "id,band_gap,is_metal,stable,crystal_system,formula\n"
        "a,1.1,0,true,cubic,Si\n"
        "b,,1,false,hexagonal,C\n"
        "c,3.5,0,TRUE,tetragonal,NaCl\n",
    )
    raw, issues, dups = read_raw_labels(path)
    values, targets, more = parse_labels(raw, max_classes=2)
    kinds = {t.name: (t.kind, t.classes) for t in targets}
    assert kinds == {
        "band_gap": ("regression", ()),
        "is_metal": ("binary", ("0", "1")),
        "stable": ("binary", ("false", "true")),
    }
    # 3 distinct texts with max_classes=2: not a target, reported as an ignored column.
    ignored = {i.column for i in more if i.category == "ignored_column"}
    assert ignored == {"crystal_system", "formula"}
    _, targets3, _ = parse_labels(raw, max_classes=20)
    spec = {t.name: t for t in targets3}["crystal_system"]
    assert spec.kind == "multiclass" and spec.classes == ("cubic", "hexagonal", "tetragonal")
    encoded = encode_labels(parse_labels(raw, max_classes=20)[0], targets3)
    assert np.isnan(encoded.loc["b", "band_gap"])
    assert encoded.loc["c", "stable"] == 1.0 and encoded.loc["b", "stable"] == 0.0
    assert list(encoded["crystal_system"]) == [0.0, 1.0, 2.0]
    assert not issues and not dups


def test_non_numeric_cell_in_numeric_column_is_reported_and_missing(tmp_path: Path) -> None:
    path = _csv(tmp_path, "id,band_gap\na,1.0\nb,abc\nc,2.5\nd,inf\ne,n/a\n")
    raw, _, _ = read_raw_labels(path)
    values, targets, issues = parse_labels(raw)
    assert targets[0].kind == "regression"
    bad = {(i.id, i.line) for i in issues if i.category == "bad_value"}
    assert bad == {("b", 3), ("d", 5)}  # "n/a" is a blank, not a bad value
    encoded = encode_labels(values, targets)
    assert encoded["band_gap"].isna().tolist() == [False, True, False, True, True]


def test_duplicate_and_blank_ids_drop_all_their_rows(tmp_path: Path) -> None:
    path = _csv(tmp_path, "id,x\na,1\nb,2\na,3\n,4\nc,5\n")
    raw, issues, dups = read_raw_labels(path)
    assert dups == {"a"}
    assert list(raw.index) == ["b", "c"]
    by_cat = {i.category: i for i in issues}
    assert by_cat["duplicate_id"].id == "a" and "[2, 4]" in by_cat["duplicate_id"].detail
    assert by_cat["blank_id"].line == 5


def test_missing_id_column_is_a_clear_error(tmp_path: Path) -> None:
    path = _csv(tmp_path, "material,x\na,1\n")
    with pytest.raises(LabelTableError, match="no id column 'id'.*--id-column"):
        read_raw_labels(path)
    raw, _, _ = read_raw_labels(path, id_column="material")
    assert list(raw.index) == ["a"]
    with pytest.raises(LabelTableError, match="does not exist"):
        read_raw_labels(tmp_path / "nope.csv")


def test_a_property_column_named_twice_is_refused_not_renamed(tmp_path: Path) -> None:
    path = _csv(tmp_path, "id,band_gap,x,band_gap\na,1.0,2,1.5\nb,2.0,3,2.5\n")
    with pytest.raises(LabelTableError, match=r"duplicate column names \['band_gap'\] \(columns \{'band_gap': \[2, 4\]\}"):
        read_raw_labels(path)


def test_a_table_separated_by_semicolons_is_named_as_such(tmp_path: Path) -> None:
    path = _csv(tmp_path, "id;band_gap\na;1.0\n")
    with pytest.raises(LabelTableError, match="separated by semicolons: rhoprop reads comma-separated"):
        read_raw_labels(path)


def test_schema_fixes_kind_unit_and_classes(tmp_path: Path) -> None:
    schema = [
        TargetSpec("n_sites", "multiclass", "", ("1", "2", "4")),
        TargetSpec("band_gap", "regression", "eV"),
        TargetSpec("magnetic", "binary", "", ("no", "yes")),
    ]
    write_targets(tmp_path / "targets.json", schema)
    assert read_targets(tmp_path / "targets.json") == schema
    path = _csv(tmp_path, "id,n_sites,band_gap,magnetic\na,1,0.5,yes\nb,4,1.5,no\nc,3,2,maybe\n")
    raw, _, _ = read_raw_labels(path)
    values, targets, issues = parse_labels(raw, read_targets(tmp_path / "targets.json"))
    assert {t.name: t for t in targets}["band_gap"].unit == "eV"
    bad = {(i.id, i.column) for i in issues if i.category == "bad_value"}
    assert bad == {("c", "n_sites"), ("c", "magnetic")}
    encoded = encode_labels(values, targets)
    assert encoded["n_sites"].tolist()[:2] == [0.0, 2.0]
    assert encoded["magnetic"].tolist()[:2] == [1.0, 0.0]
    with pytest.raises(LabelTableError, match="lacks"):
        parse_labels(raw, [TargetSpec("bulk_modulus", "regression", "GPa")])


@pytest.mark.parametrize(
    ("spec", "column", "bound"),
    [
        (TargetSpec("band_gap", "regression", "eV", minimum=0.0), "0\n-0.2\n1.5", ">= 0"),
        (TargetSpec("min_frequency", "regression", "THz"), "0\n0.4\n-1.5", "<= 0"),  # known: maximum 0
    ],
)
def test_a_label_outside_the_schema_bounds_is_a_bad_value(tmp_path: Path, spec, column, bound) -> None:
    schema = [spec]
    write_targets(tmp_path / "targets.json", schema)
    assert read_targets(tmp_path / "targets.json") == schema
    rows = "\n".join(f"{i},{v}" for i, v in zip("abc", column.split("\n"), strict=True))
    raw, _, _ = read_raw_labels(_csv(tmp_path, f"id,{spec.name}\n{rows}\n"))
    values, _, issues = parse_labels(raw, schema)
    bad = [i for i in issues if i.category == "bad_value"]
    assert [(i.id, i.line) for i in bad] == [("b", 3)] and bound in bad[0].detail
    assert encode_labels(values, schema)[spec.name].isna().tolist() == [False, True, False]


def test_predictions_are_capped_at_a_maximum_and_bounds_are_checked() -> None:
    schema = [TargetSpec("min_frequency", "regression", "THz")]
    assert schema[0].maximum == 0.0 and schema[0].minimum is None
    assert schema[0].clip(np.array([-2.0, 0.3])).tolist() == [-2.0, 0.0]
    both = TargetSpec("fraction", "regression", "", minimum=0.0, maximum=1.0)
    assert both.clip(np.array([-0.1, 0.5, 1.2])).tolist() == [0.0, 0.5, 1.0]
    with pytest.raises(SettingsError, match="minimum 2 is above maximum 1"):
        TargetSpec("x", "regression", "", minimum=2.0, maximum=1.0)
    with pytest.raises(SettingsError, match="only a regression target has a maximum"):
        TargetSpec("x", "binary", "", maximum=1.0)


def test_invalid_schema_entries_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="kind must be one of"):
        TargetSpec("x", "ordinal")
    with pytest.raises(SettingsError, match="exactly 2 classes"):
        TargetSpec("x", "binary", "", ("a", "b", "c"))
    with pytest.raises(SettingsError, match="classes must be a list of class names"):
        TargetSpec("x", "multiclass", "", "abc")  # not the classes a, b, c
    bad = _csv(
        tmp_path, '{"targets": [{"name": "x", "kind": "regression", "units": "eV"}]}', "t.json"
    )
    with pytest.raises(LabelTableError, match="unknown key"):
        read_targets(bad)


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("mp-149.CHGCAR.gz", "mp-149"),
        ("mp-149.CHGCAR", "mp-149"),
        ("mp-149_AECCAR2.bz2", "mp-149"),
        ("CHGCAR_mp-149", "mp-149"),
        ("CHGCAR.mp-149.xz", "mp-149"),
        ("mp-149.cube", "mp-149"),
        ("mp-149.xsf.gz", "mp-149"),
        ("mp-149/CHGCAR", "mp-149"),
        ("mp-149/CHGCAR.gz", "mp-149"),
        ("batch1/mp-149/CHGCAR", "batch1/mp-149"),
        ("batch1/Li2O.mp-1960.CHGCAR", "Li2O.mp-1960"),
        ("CHGCAR", None),
    ],
)
def test_id_from_file_name(tmp_path: Path, relative: str, expected: str | None) -> None:
    assert id_from_path(tmp_path / relative, tmp_path) == expected


def test_input_discovery_takes_density_names_only(tmp_path: Path) -> None:
    for rel in ["a.CHGCAR", "b/CHGCAR.gz", "c.cube", "POSCAR", "OUTCAR", "notes.txt",
                ".hidden.CHGCAR", ".git/x.CHGCAR", "d/CHGCARX", "e.dat"]:  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    found = [p.relative_to(tmp_path).as_posix() for p in find_density_files(tmp_path)]
    assert found == ["a.CHGCAR", "b/CHGCAR.gz", "c.cube"]
    assert [p.name for p in find_density_files(tmp_path, glob="*.dat")] == ["e.dat"]
    assert not is_density_name("CHGCARX") and is_density_name("PARCHG.0001.gz")
