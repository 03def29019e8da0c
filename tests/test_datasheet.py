"""The datasheet of a dataset (`rhoprop analyze datasheet`) on the real built-in gpaw-v1 store and on
a store built from a real VASP CHGCAR."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

import rhoprop.datasets
from rhoprop.analysis import DatasheetSummary, write_datasheet
from rhoprop.analysis.datasheet import NOT_IN_CSV, prototypes_from_ids
from rhoprop.analysis.datasheet_report import FILES
from rhoprop.cli import app
from rhoprop.data import DatasetError, DatasetStore, build_dataset
from rhoprop.data.store import StoreSettings
from rhoprop.errors import LabelTableError
from rhoprop.grid.settings import StandardizeSettings

# Strukturbericht designations of the gpaw-v1 prototypes (what a materials.csv could hold instead).
STRUKTURBERICHT = {
    "fcc": "A1",
    "bcc": "A2",
    "hcp": "A3",
    "diamond": "A4",
    "sc": "Ah",
    "rocksalt": "B1",
    "zincblende": "B3",
    "perovskite": "E21",
}
# Space group number of each prototype of rhoprop.dft.prototypes (ideal, undistorted structures).
SPACE_GROUP = {
    "fcc": 225,
    "bcc": 229,
    "hcp": 194,
    "diamond": 227,
    "sc": 221,
    "rocksalt": 225,
    "zincblende": 216,
    "cscl": 221,
    "wurtzite": 186,
    "fluorite": 225,
    "antifluorite": 225,
    "l12": 221,
    "perovskite": 221,
    "half_heusler": 216,
    "full_heusler": 225,
    "dimer": 47,
}


@pytest.fixture(scope="module")
def store() -> DatasetStore:
    return rhoprop.datasets.load("gpaw-v1")


@pytest.fixture(scope="module")
def sheet(store: DatasetStore, tmp_path_factory: pytest.TempPathFactory) -> DatasheetSummary:
    return write_datasheet(store, tmp_path_factory.mktemp("datasheet"))


@pytest.fixture(scope="module")
def counts(sheet: DatasheetSummary) -> dict:
    return json.loads(sheet.files[FILES.index("counts.json")].read_text())


def test_class_counts_and_coverage_agree_with_the_store_labels(store, counts) -> None:
    labels = store.labels
    assert counts["n_materials"] == len(store) >= 55
    classification = [n for n, s in store.targets.items() if s.kind != "regression"]
    assert set(counts["classes"]) == set(classification) >= {"is_metal", "crystal_system"}
    for name in classification:
        spec = store.targets[name]
        per_class = counts["classes"][name]
        assert list(per_class) == list(spec.classes)
        assert (
            sum(per_class.values()) == labels[name].notna().sum() == counts["coverage"][name]["n"]
        )
        for code, cls in enumerate(spec.classes):
            assert per_class[cls] == (labels[name] == code).sum()
    for name, spec in store.targets.items():
        cov = counts["coverage"][name]
        have = labels[name].dropna()
        assert (cov["n"], cov["unit"], cov["kind"]) == (len(have), spec.unit, spec.kind)
        assert cov["percent"] == pytest.approx(100 * len(have) / len(store), abs=0.05)
        if spec.kind == "regression":
            assert cov["min"] == pytest.approx(have.min()) and cov["max"] == pytest.approx(
                have.max()
            )
            assert cov["min"] <= cov["median"] <= cov["max"]
    assert counts["coverage"]["band_gap"]["unit"] == "eV"


def test_element_counts_agree_with_the_structures(store, counts) -> None:
    expected: Counter[str] = Counter()
    arity: Counter[int] = Counter()
    for sample_id in store.ids:
        symbols = {el.symbol for el in store.structure(sample_id).composition.elements}
        expected.update(symbols)
        arity[len(symbols)] += 1
    assert counts["elements"] == dict(expected)
    order = list(counts["elements"].values())
    assert order == sorted(order, reverse=True)
    named = {"unary": 1, "binary": 2, "ternary": 3, "quaternary": 4}
    assert {named[k]: v for k, v in counts["n_elements"].items()} == dict(arity)
    in_formula = [re.findall(r"[A-Z][a-z]?", i.rsplit("-", 1)[0]) for i in store.ids]
    assert counts["elements"]["Si"] == sum("Si" in symbols for symbols in in_formula)


def test_prototypes_come_from_the_ids_and_match_their_space_groups(store, counts) -> None:
    assert counts["prototype_source"] == "id suffix"
    suffixes = Counter(i.rsplit("-", 1)[1] for i in store.ids)
    assert counts["prototypes"] == dict(suffixes)
    by_number: Counter[int] = Counter()
    for proto, n in counts["prototypes"].items():
        by_number[SPACE_GROUP[proto]] += n
    assert {g["number"]: g["n"] for g in counts["space_groups"]} == dict(by_number)
    systems: Counter[str] = Counter()
    for g in counts["space_groups"]:
        systems[g["crystal_system"]] += g["n"]
    labelled = {k: v for k, v in counts["classes"]["crystal_system"].items() if v}
    assert dict(systems) == labelled


def test_spin_polarized_and_magnetic_counts_agree_with_the_samples(store, counts) -> None:
    spin = sum(store.read(i).has_spin for i in range(len(store)))
    assert counts["n_spin_polarized"] == spin
    moments = store.labels["magnetic_moment"].dropna()
    assert counts["n_magnetic"] == (moments.abs() > 0.05).sum()
    assert 1 <= counts["n_magnetic"] <= counts["n_spin_polarized"]
    assert counts["settings"]["magnetic_threshold"] == 0.05


def test_counts_markdown_holds_the_json_numbers_as_tables(sheet, counts) -> None:
    text = sheet.files[FILES.index("counts.md")].read_text()
    rows = {line for line in text.splitlines() if line.startswith("| ")}
    assert f"| materials | {counts['n_materials']} |" in rows
    assert (
        f"| spin-polarized densities (stored with a spin channel) | {counts['n_spin_polarized']} |"
        in rows
    )
    for proto, n in counts["prototypes"].items():
        assert any(r.startswith(f"| {proto} | {n} |") for r in rows), proto
    for name, cov in counts["coverage"].items():
        assert any(
            r.startswith(f"| {name} | {cov['kind']} | {cov['unit']} | {cov['n']} |") for r in rows
        )
    assert "### is_metal" in text and "### crystal_system" in text
    cells = [
        c.strip() for r in rows if r.startswith("| element |") for c in r.strip("|").split("|")
    ]
    assert cells.count("element") == 4
    tables = _markdown_tables(text)
    assert len(tables) >= 8
    for table in tables:
        widths = {line.count("|") - line.count("\\|") for line in table}
        assert len(widths) == 1, table[0]


def _markdown_tables(text: str) -> list[list[str]]:
    """Runs of consecutive lines starting with '|'."""
    tables: list[list[str]] = []
    previous = False
    for line in text.splitlines():
        is_row = line.startswith("|")
        if is_row and not previous:
            tables.append([])
        if is_row:
            tables[-1].append(line)
        previous = is_row
    return tables


def test_figures_are_non_trivial_pngs(sheet) -> None:
    for name in ("label_distributions.png", "elements.png"):
        path = sheet.files[FILES.index(name)]
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        image = imread(path)
        assert image.shape[0] > 500 and image.shape[1] > 1000, name
        assert float(np.std(image[..., :3])) > 0.05, name
    grid = imread(sheet.files[FILES.index("label_distributions.png")])
    assert grid.shape[0] > 1200  # 15 targets: four rows of panels


def test_prototypes_from_ids_need_every_id_to_be_formula_dash_prototype(store) -> None:
    comps = [store.structure(i).composition for i in store.ids]
    found = prototypes_from_ids(store.ids, comps)
    assert found is not None and found["SrTiO3-perovskite"] == "perovskite"
    materials_project = [f"mp-{k}" for k in range(len(comps))]
    assert prototypes_from_ids(materials_project, comps) is None
    ids = list(store.ids)
    a, b = ids.index("Al-fcc"), ids.index("Si-diamond")
    ids[a], ids[b] = ids[b], ids[a]  # formulas that do not match the structures
    assert prototypes_from_ids(ids, comps) is None
    assert prototypes_from_ids(["TiNiSn-half_heusler"], [_composition("NiTiSn")]) == {
        "TiNiSn-half_heusler": "half_heusler"
    }


def _composition(formula: str):
    from pymatgen.core import Composition

    return Composition(formula)


def test_materials_csv_prototypes_replace_the_id_suffixes(store, tmp_path) -> None:
    ids = store.ids
    csv = tmp_path / "materials.csv"
    designation = {i: STRUKTURBERICHT.get(i.rsplit("-", 1)[1], "other") for i in ids[1:]}
    rows = [f"{i},{d}" for i, d in designation.items()]
    csv.write_text("id,prototype\n" + "\n".join(rows) + "\n")
    sheet = write_datasheet(store, tmp_path / "out", materials_csv=csv)
    assert sheet.prototype_source == "materials.csv"
    assert sheet.prototypes[NOT_IN_CSV] == 1  # ids[0] is not in the file
    rest = {k: v for k, v in sheet.prototypes.items() if k != NOT_IN_CSV}
    assert rest == dict(Counter(designation.values()))
    assert rest["A4"] == sum(i.endswith("-diamond") for i in ids[1:])
    assert "`prototype` column of materials.csv" in (tmp_path / "out" / "counts.md").read_text()


def test_materials_csv_without_a_prototype_column_is_refused(store, tmp_path) -> None:
    csv = tmp_path / "materials.csv"
    csv.write_text("id,formula\nSi-diamond,Si\n")
    with pytest.raises(LabelTableError, match="prototype"):
        write_datasheet(store, tmp_path / "out", materials_csv=csv)
    with pytest.raises(LabelTableError, match="does not exist"):
        write_datasheet(store, tmp_path / "out", materials_csv=tmp_path / "missing.csv")


def test_store_of_a_vasp_chgcar_without_labels_is_grouped_by_space_group(
    fixtures_dir: Path, tmp_path: Path
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(fixtures_dir / "CHGCAR.LiCoO2_spin.gz", inputs)
    build_dataset(inputs, None, tmp_path / "ds", StandardizeSettings(n=8), progress=False)
    sheet = write_datasheet(DatasetStore(tmp_path / "ds"), tmp_path / "sheet")
    assert (sheet.n_materials, sheet.n_spin_polarized, sheet.n_magnetic) == (1, 1, None)
    assert sheet.prototype_source is None and sheet.prototypes == {}
    assert sheet.space_groups == [
        {"symbol": "R-3m", "number": 166, "crystal_system": "trigonal", "n": 1}
    ]
    assert sheet.elements == {"Li": 1, "O": 1, "Co": 1} and sheet.n_elements == {"ternary": 1}
    assert sheet.classes == {} and sheet.coverage == {}
    text = (tmp_path / "sheet" / "counts.md").read_text()
    assert (
        "No prototypes" in text and "| R-3m | 166 | trigonal | 1 |" in text and "No labels." in text
    )
    assert [p.name for p in sheet.files] == list(FILES)
    for png in sheet.files[2:]:
        assert float(np.std(imread(png)[..., :3])) > 0.01, png.name
    assert imread(sheet.files[3]).shape[1] > 1000  # the whole periodic table, three cells coloured


def test_empty_store_is_refused_with_a_clear_error(tmp_path) -> None:
    StoreSettings().to_json(tmp_path / "empty" / "settings.json")
    with pytest.raises(DatasetError, match="holds no materials"):
        write_datasheet(DatasetStore(tmp_path / "empty"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_writes_the_datasheet_of_a_builtin_dataset(tmp_path) -> None:
    out = tmp_path / "sheet"
    result = CliRunner().invoke(app, ["analyze", "datasheet", "gpaw-v1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    n = len(rhoprop.datasets.load("gpaw-v1"))
    assert f"{n} materials" in result.output and "wrote" in result.output
    assert json.loads((out / "counts.json").read_text())["builtin"] is True
    assert "built-in dataset `gpaw-v1`" in (out / "counts.md").read_text()


def test_cli_refuses_a_folder_that_is_not_a_store(tmp_path) -> None:
    folder = tmp_path / "not-a-store"
    folder.mkdir()
    (folder / "labels.csv").write_text("id,band_gap\nSi,1.1\n")
    result = CliRunner().invoke(
        app, ["analyze", "datasheet", str(folder), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert "not a rhoprop dataset" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()
    empty = tmp_path / "empty"
    StoreSettings().to_json(empty / "settings.json")
    result = CliRunner().invoke(
        app, ["analyze", "datasheet", str(empty), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "holds no materials" in result.output
