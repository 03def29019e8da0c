"""The torch Dataset over a store: DataLoader workers, per-process HDF5 handles, labels, augment."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from rhoprop.data import DatasetStore, DensityDataset
from rhoprop.errors import LabelTableError

from helpers.densities import built_store

TARGETS = ["band_gap", "bulk_modulus", "is_metal"]


class _WithPid(Dataset):
    """Adds to each item the pid of the process and the pid that opened the store's handles."""

    def __init__(self, inner: DensityDataset) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int) -> dict:
        item = self.inner[i]
        item["pid"] = os.getpid()
        item["owner"] = self.inner.store.handle_owner_pid
        return item


def test_dataloader_workers_each_open_their_own_handles(tmp_path_factory) -> None:
    store = DatasetStore(built_store(tmp_path_factory)[0])
    ids = sorted(store.ids)[::-1]
    ds = DensityDataset(store, ids, TARGETS, cache_mb=0)  # streaming: every item read from disk
    first = ds[0]  # the parent opens a handle before the workers fork
    assert store.handle_owner_pid == os.getpid()
    loader = DataLoader(_WithPid(ds), batch_size=3, num_workers=2, shuffle=False)
    seen: list[int] = []
    pids: set[int] = set()
    for batch in loader:
        assert batch["x"].shape[1:] == (2, 16, 16, 16) and batch["x"].dtype == torch.float32
        assert torch.equal(batch["pid"], batch["owner"])  # handles opened by the reading process
        pids.update(batch["pid"].tolist())
        for j, index in enumerate(batch["index"].tolist()):
            expected = store.read(ids[index]).x
            np.testing.assert_array_equal(batch["x"][j].numpy(), expected)
            labels = store.labels.loc[ids[index], TARGETS].to_numpy(dtype=np.float32)
            np.testing.assert_array_equal(batch["y"][j].numpy(), labels)  # NaN where missing
        seen.extend(batch["index"].tolist())
    assert sorted(seen) == list(range(len(ids)))
    assert len(pids) == 2 and os.getpid() not in pids
    assert first["side"].shape == (0,) and first["y"].shape == (3,)
    assert torch.isnan(torch.stack([ds[i]["y"][1] for i in range(len(ds))])).any()


def test_dataset_pickles_without_tensors(tmp_path_factory) -> None:
    store = DatasetStore(built_store(tmp_path_factory)[0])
    ds = DensityDataset(store, store.ids, TARGETS)
    _ = [ds[i] for i in range(len(ds))]
    assert ds._cache is not None and len(ds._cache) == len(ds)  # kept in this process
    tensor_bytes = len(ds) * 2 * 16**3 * 4
    assert len(pickle.dumps(ds)) < tensor_bytes / 20  # ids, offsets and labels only
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.store.handle_owner_pid is None  # no handle crosses a process boundary
    np.testing.assert_array_equal(clone[1]["x"].numpy(), ds[1]["x"].numpy())


def test_cached_tensors_are_the_stored_ones_and_never_handed_out(tmp_path_factory) -> None:
    """Epochs after the first read from memory when the selection fits the budget; the values are
    the store's, an item's tensor can be changed without changing the cache, and a selection above
    the budget streams."""
    store = DatasetStore(built_store(tmp_path_factory)[0])
    cached = DensityDataset(store, store.ids, TARGETS, cache_mb=64)
    streamed = DensityDataset(store, store.ids, TARGETS, cache_mb=0)
    too_big = DensityDataset(store, store.ids, TARGETS, cache_mb=1e-3)
    for epoch in range(2):
        for i in range(len(cached)):
            item = cached[i]
            np.testing.assert_array_equal(item["x"].numpy(), streamed[i]["x"].numpy())
            np.testing.assert_array_equal(item["x"].numpy(), too_big[i]["x"].numpy())
            item["x"].mul_(0.0)  # a consumer that works in place
            item["side"].add_(1.0)
    assert len(cached._cache) == len(store)
    assert streamed._cache is None and too_big._cache is None
    np.testing.assert_array_equal(cached[0]["x"].numpy(), store.read(store.ids[0]).x)
    rolled = DensityDataset(store, store.ids, [], augment=lambda x: np.roll(x, 1, axis=2))
    first = rolled[0]["x"].numpy().copy()
    np.testing.assert_array_equal(rolled[0]["x"].numpy(), first)  # the cache was not rolled


def test_augment_is_applied_and_shape_checked(tmp_path_factory) -> None:
    store_path = built_store(tmp_path_factory)[0]
    rolled = DensityDataset(str(store_path), None, [], augment=lambda x: np.roll(x, 3, axis=1))
    plain = DensityDataset(str(store_path), None, [])
    np.testing.assert_array_equal(rolled[0]["x"].numpy(), np.roll(plain[0]["x"].numpy(), 3, axis=1))
    assert rolled[0]["y"].shape == (0,)
    broken = DensityDataset(str(store_path), None, [], augment=lambda x: x[:, :8])
    with pytest.raises(ValueError, match="augment changed the tensor shape"):
        broken[0]
    with pytest.raises(LabelTableError, match="not in dataset"):
        DensityDataset(str(store_path), None, ["no_such_target"])
