"""The built-in dataset registry: names, paths, and clear errors for unknown names."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import rhoprop.datasets as registry
from rhoprop.cli import app
from rhoprop.data import DatasetError, DatasetStore

from helpers.densities import built_store


@pytest.fixture
def builtin_root(tmp_path_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A built-in folder holding one store, ``tiny-v0``, plus a folder that is not a store."""
    store_path = built_store(tmp_path_factory)[0]
    root = tmp_path / "builtin"
    shutil.copytree(store_path, root / "tiny-v0")
    (root / "not-a-store").mkdir()
    monkeypatch.setattr(registry, "BUILTIN_ROOT", root)
    return root


def test_builtin_names_load_and_resolve(builtin_root: Path) -> None:
    assert registry.available() == ["tiny-v0"]
    assert registry.resolve("tiny-v0") == builtin_root / "tiny-v0"
    store = registry.load("tiny-v0")
    assert isinstance(store, DatasetStore) and len(store) > 0
    assert registry.resolve(builtin_root / "tiny-v0") == builtin_root / "tiny-v0"
    result = CliRunner().invoke(app, ["dataset", "info", "tiny-v0"])
    assert result.exit_code == 0 and f"{len(store)} samples" in " ".join(result.output.split())  # rich wraps lines


def test_unknown_name_lists_the_valid_ones(builtin_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no dataset 'gpaw-v9'.*built-in: tiny-v0"):
        registry.load("gpaw-v9")
    with pytest.raises(DatasetError, match="not a rhoprop dataset"):
        registry.resolve(tmp_path)


def test_shipped_builtin_datasets_open() -> None:
    for name in registry.available():
        store = registry.load(name)
        assert len(store) > 0 and store.store_settings.dtype in ("float16", "float32", "q16")


def test_shipped_store_shards_match_their_recorded_checksums_and_read_back_whole() -> None:
    from rhoprop.data.verify import verify_store

    checks = verify_store(registry.resolve("gpaw-v1"))
    assert checks and all(c.ok and c.checksum == "ok" for c in checks), [c for c in checks if not c.ok]


def test_dataset_ids_lists_and_pins_the_samples_of_several_stores(tmp_path: Path) -> None:
    """`rhoprop dataset ids` writes the ids in store order (with the tier prefix for joined
    stores), a selection narrows them, and the file read back with --only ids:FILE selects the
    same samples."""
    from rhoprop.train.data import open_store, subset_ids

    out = tmp_path / "ids.txt"
    runner = CliRunner()
    result = runner.invoke(app, ["dataset", "ids", "gpaw-v1,gpaw-scf-v1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    both = open_store("gpaw-v1,gpaw-scf-v1")
    lines = out.read_text().splitlines()
    assert lines[0].startswith(f"# {len(both)} sample ids") and lines[1:] == list(both.ids)
    spin = runner.invoke(app, ["dataset", "ids", "gpaw-v1,gpaw-scf-v1", "--only", f"has_spin and ids:{out}"])
    listed = spin.output.split()
    assert spin.exit_code == 0 and listed == subset_ids(both, "has_spin")
    assert 0 < len(listed) < len(both) and all(i.startswith(("gpaw-v1/", "gpaw-scf-v1/")) for i in listed)
    # a list of the joined stores does not fit one store alone: refused with the reason
    alone = runner.invoke(app, ["dataset", "ids", "gpaw-v1", "--only", f"ids:{out}"])
    assert alone.exit_code == 2 and "not in" in alone.output and "another dataset" in alone.output
    out.write_text("# nothing\n")
    empty = runner.invoke(app, ["dataset", "ids", "gpaw-v1", "--only", f"ids:{out}"])
    assert empty.exit_code == 2 and "holds no id" in empty.output
