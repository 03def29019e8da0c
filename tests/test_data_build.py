"""Building dataset stores: read-back fidelity, the bad-input zoo, reruns, settings, dtype, info."""

from __future__ import annotations

import fcntl
import gzip
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pytest
import xxhash
from pymatgen.core import Structure
from typer.testing import CliRunner

from rhoprop.cli import app
from rhoprop.data import EXIT_SKIPPED, DatasetError, DatasetStore, build_dataset
from rhoprop.data.records import reuse_freed_memory
from rhoprop.data.store import StoreSettings, shard_paths, store_lock
from rhoprop.errors import FolderLockedError
from rhoprop.grid import standardize
from rhoprop.grid.settings import StandardizeSettings
from rhoprop.io import read_density

from helpers.densities import (
    VALENCE,
    built_store,
    structure_for,
    write_chgcar,
    write_dataset_folder,
    write_labels_csv,
)

runner = CliRunner()


def _input_file(inputs: Path, sid: str) -> Path:
    hits = [p for p in inputs.rglob("*") if p.is_file() and sid in p.as_posix()]
    assert len(hits) == 1, hits
    return hits[0]


def test_every_sample_reads_back_as_its_fresh_standardization(tmp_path_factory) -> None:
    store_path, inputs, ids, rows = built_store(tmp_path_factory)
    store = DatasetStore(store_path)
    assert sorted(store.ids) == sorted(ids) and len(store) == len(ids)
    settings = store.settings
    assert settings.n == 16 and settings.channels == ("total", "spin")
    for sid in ids:
        path = _input_file(inputs, sid)
        density = read_density(path)
        fresh = standardize(density, settings)
        sample = store.read(sid)
        assert sample.x.dtype == np.float32 and sample.x.shape == (2, 16, 16, 16)
        np.testing.assert_array_equal(sample.x, fresh.x)
        np.testing.assert_array_equal(sample.side, fresh.side)
        assert sample.has_spin == fresh.has_spin == (density.spin is not None)
        structure = store.structure(sid)
        assert isinstance(structure, Structure)
        assert [s.symbol for s in structure.species] == [
            s.symbol for s in density.structure.species
        ]
        np.testing.assert_allclose(
            structure.lattice.matrix, density.structure.lattice.matrix, atol=1e-9
        )
        np.testing.assert_allclose(structure.frac_coords, density.structure.frac_coords, atol=1e-9)
        prov = store.provenance(sid)
        assert prov["xxh3_128"] == xxhash.xxh3_128_hexdigest(path.read_bytes())
        assert Path(prov["source"]) == path.resolve()
        assert prov["native_shape"] == density.shape
        electrons = sum(VALENCE[s.specie.symbol] for s in structure)
        assert prov["electrons"] == pytest.approx(electrons, rel=1e-4)
    with h5py.File(store.shards[0], "r") as f:
        assert f["x"].chunks == (1, 2, 16, 16, 16)  # one sample per chunk: read alone
        assert f["x"].compression == "gzip" and f["x"].shuffle
    labels = store.labels
    expected = pd.DataFrame(rows).set_index("id")
    np.testing.assert_allclose(
        labels.loc[ids, "band_gap"], expected.loc[ids, "band_gap"].astype(float)
    )
    blank = expected.loc[ids, "bulk_modulus"] == ""
    assert labels.loc[ids, "bulk_modulus"].isna().tolist() == blank.tolist()
    kinds = {name: spec.kind for name, spec in store.targets.items()}
    assert kinds["band_gap"] == "regression" and kinds["is_metal"] == "binary"


def _zoo(root: Path) -> tuple[Path, Path, dict[str, str]]:
    """Good files plus one of each bad input; returns (inputs, labels, expected category by id)."""
    inputs = root / "in"
    ids, rows = write_dataset_folder(inputs, 6, layout="flat")
    _, structure = structure_for(20)
    good = write_chgcar(root / "template.CHGCAR", structure)
    text = good.read_text()
    lines = text.splitlines(keepends=True)
    grid_line = next(
        i
        for i, ln in enumerate(lines)
        if ln.split() and all(t.isdigit() for t in ln.split()) and len(ln.split()) == 3
    )
    (inputs / "trunc.CHGCAR").write_text(text[: len(text) * 6 // 10])
    numbers = lines[grid_line + 3].split()
    numbers[1] = "NaN"
    (inputs / "nan.CHGCAR").write_text(
        "".join(lines[: grid_line + 3] + [" ".join(numbers) + "\n"] + lines[grid_line + 4 :])
    )
    nx, ny, nz = (int(t) for t in lines[grid_line].split())
    (inputs / "count.CHGCAR").write_text(
        "".join(lines[:grid_line] + [f" {nx} {ny} {nz + 2}\n"] + lines[grid_line + 1 :])
    )
    (inputs / "extra.CHGCAR").write_text(  # more values than the grid line says
        "".join(lines[:grid_line] + [f" {nx} {ny} {nz - 2}\n"] + lines[grid_line + 1 :])
    )
    (inputs / "empty.CHGCAR").write_text("")
    (inputs / "dangling.CHGCAR").symlink_to(root / "does-not-exist")
    (inputs / "garbage.CHGCAR.gz").write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4)
    shutil.copy(good, inputs / "twice.CHGCAR")
    (inputs / "twice").mkdir()
    shutil.copy(good, inputs / "twice" / "CHGCAR")
    shutil.copy(good, inputs / "unlabelled.CHGCAR")
    shutil.copy(good, inputs / "dup.CHGCAR")
    shutil.copy(good, inputs / "badcell.CHGCAR")
    bad_ids = "trunc nan count extra empty dangling garbage twice dup badcell".split()
    extra = [f"{b},1.0,0,cubic,0.0," for b in bad_ids if b != "badcell"]
    extra += ["dup,2.0,0,cubic,0.0,", "badcell,abc,0,cubic,0.0,", "ghost,1.0,0,cubic,0.0,"]
    labels = write_labels_csv(root / "labels.csv", rows, extra)
    expected = {
        "trunc": "bad_file", "nan": "bad_file", "count": "bad_file", "extra": "bad_file",
        "empty": "bad_file",
        "dangling": "bad_file", "garbage": "bad_file", "twice": "duplicate_file",
        "unlabelled": "file_without_id", "dup": "duplicate_id", "badcell": "bad_value",
        "ghost": "id_without_file",
    }  # fmt: skip
    return inputs, labels, expected | {sid: "" for sid in ids}


def test_bad_inputs_are_skipped_listed_and_the_exit_code_says_so(tmp_path: Path) -> None:
    inputs, labels, expected = _zoo(tmp_path)
    out = tmp_path / "ds"
    args = ["dataset", "build", str(inputs), "--labels", str(labels), "--out", str(out),
            "--n", "16", "--workers", "2", "--no-progress"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == EXIT_SKIPPED, result.output
    assert "report.csv" in result.output and "bad file" in result.output
    report = pd.read_csv(out / "report.csv", dtype=str, keep_default_na=False)
    for sid, category in expected.items():
        cats = set(report.loc[report["id"] == sid, "category"])
        assert cats == ({category} if category else set()), (sid, cats)
    reasons = dict(zip(report["id"], report["detail"], strict=False))
    assert "non-finite" in reasons["nan"] or "nan" in reasons["nan"].lower()
    assert "abc" in reasons["badcell"] and "band_gap" in reasons["badcell"]
    assert "No such file" in reasons["dangling"] or "does-not-exist" in reasons["dangling"]
    store = DatasetStore(out)
    good = sorted(sid for sid, cat in expected.items() if cat in ("", "bad_value"))
    assert sorted(store.ids) == good
    assert np.isnan(store.labels.loc["badcell", "band_gap"])
    summary = json.loads((out / "report.json").read_text())
    assert summary["exit_code"] == EXIT_SKIPPED and summary["n_total"] == len(good)
    # A rerun adds nothing, duplicates nothing, and reports the same problems.
    again = runner.invoke(app, args)
    assert again.exit_code == EXIT_SKIPPED
    assert sorted(DatasetStore(out).ids) == good
    assert json.loads((out / "report.json").read_text())["counts"] == summary["counts"]


def test_clean_build_exits_zero_and_rerun_adds_nothing(tmp_path: Path) -> None:
    ids, rows = write_dataset_folder(tmp_path / "in", 4)
    labels = write_labels_csv(tmp_path / "labels.csv", rows)
    args = ["dataset", "build", str(tmp_path / "in"), "--labels", str(labels), "--out",
            str(tmp_path / "ds"), "--n", "8", "--no-progress"]  # fmt: skip
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "4 added" in first.output and "nothing skipped" in first.output
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and "0 added, 4 already there" in second.output
    assert len(shard_paths(tmp_path / "ds")) == 1
    assert not (tmp_path / "ds" / ".lock").exists()  # the lock goes with the build
    runs = json.loads((tmp_path / "ds" / "build.json").read_text())["runs"]
    assert [r["n_added"] for r in runs] == [4, 0]


def test_rerun_with_other_settings_is_a_clear_error(tmp_path_factory, tmp_path: Path) -> None:
    store_path, inputs, _, _ = built_store(tmp_path_factory)
    out = tmp_path / "ds"
    shutil.copytree(store_path, out)
    result = runner.invoke(app, ["dataset", "build", str(inputs), "--out", str(out), "--n", "24"])
    assert result.exit_code == 2
    assert "n: store 16, given 24" in " ".join(result.output.split())
    linear = ["dataset", "build", str(inputs), "--out", str(out), "--interpolation", "linear"]
    result = runner.invoke(app, linear)
    assert result.exit_code == 2
    assert "interpolation: store 'cubic', given 'linear'" in " ".join(result.output.split())
    result = runner.invoke(
        app, ["dataset", "build", str(inputs), "--out", str(out), "--dtype", "float16"]
    )
    assert result.exit_code == 2 and "dtype" in result.output
    with pytest.raises(DatasetError, match="not a rhoprop dataset"):
        build_dataset(inputs, None, inputs, progress=False)


def test_float16_store_is_smaller_and_within_half_precision(
    tmp_path_factory, tmp_path: Path
) -> None:
    store_path, inputs, ids, _ = built_store(tmp_path_factory)
    ref = DatasetStore(store_path)
    report = build_dataset(
        inputs, None, tmp_path / "h", ref.settings, dtype="float16", progress=False
    )
    assert report.clean and report.n_total == len(ids)
    half = DatasetStore(tmp_path / "h")
    assert half.store_settings.dtype == "float16"
    for sid in ids:
        a, b = ref.read(sid).x, half.read(sid).x
        assert b.dtype == np.float32
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-3)
    size = lambda s: sum(p.stat().st_size for p in s.shards)  # noqa: E731
    assert size(half) < 0.75 * size(ref)


def test_vasp4_file_is_skipped_without_species_and_built_with_them(tmp_path: Path) -> None:
    _, structure = structure_for(5)  # GaAs
    write_chgcar(tmp_path / "in" / "gaas.CHGCAR", structure, vasp4=True)
    write_dataset_folder(tmp_path / "in", 1, layout="flat")
    first = build_dataset(
        tmp_path / "in", None, tmp_path / "ds", StandardizeSettings(n=8), progress=False
    )
    assert [e.id for e in first.skipped] == ["gaas"]
    assert "species" in first.skipped[0].detail.lower()
    second = build_dataset(
        tmp_path / "in", None, tmp_path / "ds", species=["Ga", "As"], progress=False
    )
    assert second.clean and second.n_added == 1 and second.n_already == 1
    store = DatasetStore(tmp_path / "ds")
    assert store.structure("gaas").composition.reduced_formula == "GaAs"


def test_stale_temporary_shards_are_ignored_then_removed(tmp_path_factory, tmp_path: Path) -> None:
    store_path, inputs, ids, _ = built_store(tmp_path_factory)
    out = tmp_path / "ds"
    shutil.copytree(store_path, out)
    stale = out / "shards" / ".shard-00007.h5.4242.tmp"
    stale.write_bytes(b"\x89HDF\r\n half a shard")
    assert len(DatasetStore(out)) == len(ids)
    report = build_dataset(inputs, None, out, progress=False)
    assert not stale.exists() and report.n_added == 0 and report.n_total == len(ids)


def test_appending_other_inputs_keeps_earlier_samples_and_labels(tmp_path: Path) -> None:
    ids_a, rows_a = write_dataset_folder(tmp_path / "a", 3)
    rows_b = []
    for i in range(3, 5):
        _, structure = structure_for(i)
        write_chgcar(tmp_path / "b" / f"new-{i}.CHGCAR", structure)
        rows_b.append({"id": f"new-{i}", "band_gap": 2.0 + i, "unit_cell_atoms": len(structure)})
    settings = StandardizeSettings(n=8)
    build_dataset(
        tmp_path / "a",
        write_labels_csv(tmp_path / "la.csv", rows_a),
        tmp_path / "ds",
        settings,
        progress=False,
    )
    report = build_dataset(
        tmp_path / "b",
        write_labels_csv(tmp_path / "lb.csv", rows_b),
        tmp_path / "ds",
        progress=False,
    )
    assert report.clean and report.n_total == 5
    store = DatasetStore(tmp_path / "ds")
    assert sorted(store.ids) == sorted(ids_a + ["new-3", "new-4"])
    labels = store.labels
    assert labels.loc["new-4", "band_gap"] == 6.0
    assert labels.loc[ids_a[1], "band_gap"] == float(rows_a[1]["band_gap"])
    assert np.isnan(labels.loc[ids_a[0], "unit_cell_atoms"])


def test_no_labels_builds_every_file_without_targets(tmp_path: Path) -> None:
    ids, _ = write_dataset_folder(tmp_path / "in", 3)
    report = build_dataset(
        tmp_path / "in", None, tmp_path / "ds", StandardizeSettings(n=8), progress=False
    )
    assert report.clean
    store = DatasetStore(tmp_path / "ds")
    assert sorted(store.ids) == ids and store.targets == {} and store.labels.shape == (3, 0)


def test_a_second_writer_is_refused_while_a_build_holds_the_store(tmp_path: Path) -> None:
    write_dataset_folder(tmp_path / "in", 1)
    with store_lock(tmp_path / "ds"):
        with pytest.raises(FolderLockedError, match="another build is writing this dataset"):
            build_dataset(tmp_path / "in", None, tmp_path / "ds", progress=False)


def _lingering_pool_worker(ready: Any, stop: Any) -> None:
    """A forked reader (a build's local Dask worker is forked) starts, then stays alive until told to stop."""
    reuse_freed_memory()
    ready.set()
    stop.wait(60)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_forked_pool_workers_do_not_keep_the_store_locked_after_the_build(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    out = tmp_path / "ds"
    ready, stop = ctx.Event(), ctx.Event()
    with store_lock(out):
        probe = os.open(out / ".lock", os.O_RDWR)  # the same lock file, opened without the lock
        worker = ctx.Process(target=_lingering_pool_worker, args=(ready, stop))
        worker.start()
        assert ready.wait(60)
    try:
        # The build's process has let go; a worker still holding its inherited copy would block this.
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        stop.set()
        worker.join(60)
        os.close(probe)


def test_info_shows_counts_coverage_settings_and_size(tmp_path_factory) -> None:
    store_path, _, ids, rows = built_store(tmp_path_factory)
    result = runner.invoke(app, ["dataset", "info", str(store_path)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"{len(ids)} samples" in text and "16^3" in text and "total,spin" in text
    have = sum(1 for r in rows if r["bulk_modulus"] != "")
    # a known target name gets its unit without a schema (rhoprop.data.labels.KNOWN_TARGETS)
    assert f"bulk_modulus │ regression │ GPa │ {have} │ {100 * have / len(ids):.1f}" in text
    data = json.loads(runner.invoke(app, ["dataset", "info", str(store_path), "--json"]).output)
    assert data["n_samples"] == len(ids) and data["size_bytes"] > 0 and data["n_shards"] == 1
    missing = runner.invoke(app, ["dataset", "info", str(store_path.parent / "nope")])
    assert missing.exit_code == 2 and "no dataset" in missing.output


def test_a_store_records_sha256_when_asked_and_keeps_its_content_hash_on_every_append(
    tmp_path: Path,
) -> None:
    """``--content-hash sha256`` fixes the store's hash; an append may not change it, and a store
    written before the setting existed (no ``content_hash`` in settings.json) keeps sha256."""
    import hashlib

    inputs = tmp_path / "in"
    paths = [write_chgcar(inputs / f"s{i}.CHGCAR", structure_for(i)[1]) for i in range(3)]
    out = tmp_path / "ds"
    result = runner.invoke(
        app, ["dataset", "build", str(inputs), "--out", str(out), "--n", "8", "--content-hash",
              "sha256", "--no-progress", "--glob", "s[01].CHGCAR"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((out / "settings.json").read_text())["content_hash"] == "sha256"
    refused = runner.invoke(
        app, ["dataset", "build", str(inputs), "--out", str(out), "--content-hash", "xxh3_128"]
    )
    assert refused.exit_code != 0
    assert "content hash: store 'sha256', given 'xxh3_128'" in " ".join(refused.output.split())
    settings = json.loads((out / "settings.json").read_text())
    del settings["content_hash"]
    (out / "settings.json").write_text(json.dumps(settings))
    build_dataset(inputs, None, out, progress=False)
    store = DatasetStore(out)
    assert len(store.shards) == 2 and store.store_settings.content_hash == "sha256"
    for i, path in enumerate(paths):
        prov = store.provenance(f"s{i}")
        assert prov["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert "xxh3_128" not in prov
    with h5py.File(store.shards[1], "r") as f:
        assert "sha256" in f and "xxh3_128" not in f
    bad = runner.invoke(
        app, ["dataset", "build", str(inputs), "--out", str(tmp_path / "ds2"), "--content-hash", "md5"]
    )
    assert bad.exit_code != 0 and "content_hash must be one of" in " ".join(bad.output.split())


def test_gzip_and_plain_inputs_give_identical_tensors(tmp_path: Path) -> None:
    _, structure = structure_for(2)
    plain = write_chgcar(tmp_path / "in" / "p.CHGCAR", structure)
    with open(plain, "rb") as src, gzip.open(tmp_path / "in" / "z.CHGCAR.gz", "wb") as dst:
        dst.write(src.read())
    build_dataset(
        tmp_path / "in", None, tmp_path / "ds", StandardizeSettings(n=8), workers=2, progress=False
    )
    store = DatasetStore(tmp_path / "ds")
    np.testing.assert_array_equal(store.read("p").x, store.read("z").x)
    assert store.provenance("p")["xxh3_128"] != store.provenance("z")["xxh3_128"]


def test_schema_units_are_kept_by_a_rebuild_without_schema(tmp_path: Path) -> None:
    ids, rows = write_dataset_folder(tmp_path / "in", 4)
    labels = write_labels_csv(tmp_path / "labels.csv", rows)
    schema = tmp_path / "targets.json"
    schema.write_text(
        json.dumps(
            {
                "format_version": 1,
                "targets": [
                    {"name": "band_gap", "kind": "regression", "unit": "eV"},
                    {"name": "is_metal", "kind": "binary", "classes": ["0", "1"]},
                    {
                        "name": "crystal_system",
                        "kind": "multiclass",
                        "classes": ["cubic", "hexagonal"],
                    },
                ],
            }
        )
    )
    args = ["dataset", "build", str(tmp_path / "in"), "--labels", str(labels), "--out",
            str(tmp_path / "ds"), "--n", "8", "--no-progress"]  # fmt: skip
    assert runner.invoke(app, [*args, "--schema", str(schema)]).exit_code == 0
    targets = DatasetStore(tmp_path / "ds").targets
    assert targets["band_gap"].unit == "eV"
    assert targets["crystal_system"].kind == "multiclass"  # one value present, kept by the schema
    assert runner.invoke(app, args).exit_code == 0
    again = DatasetStore(tmp_path / "ds").targets
    assert again["band_gap"].unit == "eV" and again["crystal_system"].kind == "multiclass"
    assert DatasetStore(tmp_path / "ds").labels["crystal_system"].eq(0.0).all()


def test_values_beyond_float16_are_skipped_with_a_reason(tmp_path: Path) -> None:
    write_dataset_folder(tmp_path / "in", 1)
    settings = StandardizeSettings(n=8, transform="scale", scale=1e-5)  # ρ / 1e-5: up to ~1e5
    report = build_dataset(
        tmp_path / "in", None, tmp_path / "ds", settings, dtype="float16", progress=False
    )
    assert [e.category for e in report.skipped] == ["bad_file"]
    assert "do not fit float16" in report.skipped[0].detail


_FAULTS_PER_ALLOCATION = """
import resource, sys
import numpy as np
from rhoprop.data.records import reuse_freed_memory
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):  # what reading a file does: several arrays of megabytes, then all freed
    arrays = [np.ones(2**19) for _ in range(4)]  # 4 MB each, touched
    del arrays
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 40)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_build_processes_reuse_freed_arrays_instead_of_faulting_them_in_again() -> None:
    def faults(mode: str) -> float:
        done = subprocess.run(
            [sys.executable, "-c", _FAULTS_PER_ALLOCATION, mode],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return float(done.stdout)

    default, reused = faults("default"), faults("reuse")
    assert default > 1000  # the heap trimmed after each round and 4 MB arrays faulted in again
    assert reused < default / 10


def test_store_settings_refuse_an_unknown_dtype_content_hash_or_standardization() -> None:
    from rhoprop.errors import SettingsError

    with pytest.raises(SettingsError, match="dtype must be one of"):
        StoreSettings(dtype="float64")
    with pytest.raises(SettingsError, match="content_hash must be one of"):
        StoreSettings(content_hash="md5")
    with pytest.raises(SettingsError, match="standardize must be a StandardizeSettings"):
        StoreSettings(standardize={"n": 8})  # type: ignore[arg-type]
