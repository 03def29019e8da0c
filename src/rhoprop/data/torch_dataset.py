"""A PyTorch ``Dataset`` over a dataset store (safe with DataLoader workers and DDP ranks)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from rhoprop.data.composite import CompositeStore, open_dataset
from rhoprop.data.store import DatasetStore
from rhoprop.errors import LabelTableError


class DensityDataset(Dataset[dict[str, torch.Tensor | int]]):
    """Samples ``ids`` of ``store`` with labels ``targets`` as dicts of tensors.

    Each item is ``{"x": FloatTensor (C, n, n, n), "side": FloatTensor (S,), "y": FloatTensor (T,)
    (NaN where a label is missing; class codes for classification targets), "index": int}`` where
    ``index`` is the item's position in ``ids``; with ``extra`` (an ``(N, X)`` array, a row per id:
    global features such as :func:`rhoprop.models.features.extra_features`) also ``"extra":
    FloatTensor (X,)``. ``augment``, when given, maps the tensor
    ``x`` (C, n, n, n) numpy float32 to an augmented one of the same shape. The store's HDF5 files
    are opened lazily in each process that reads, so DataLoader workers and distributed ranks each
    get their own.

    Tensors read once are kept in memory (per process) while all of ``ids`` fit in
    ``cache_mb`` MiB (default: the environment variable ``RHOPROP_TENSOR_CACHE_MB``, else 2048; 0
    turns it off): an epoch after the first then skips reading and decompressing the shards (2 ms
    per sample, n = 32, 2 channels, q16); a CPU training of the ``compact`` model ran 1.08-1.18x
    faster (``bench/tensor_cache.py``, ``docs/benchmarks.md``). Larger selections stream from the
    store as before. The values are the same either way.
    """

    def __init__(
        self,
        store: DatasetStore | CompositeStore | str | os.PathLike[str],
        ids: Sequence[str] | None = None,
        targets: Sequence[str] = (),
        augment: Callable[[np.ndarray], np.ndarray] | None = None,
        extra: np.ndarray | None = None,
        cache_mb: float | None = None,
    ) -> None:
        if isinstance(store, (str, os.PathLike)):
            store = open_dataset(store)
        self.store = store
        self.ids = list(store.ids if ids is None else ids)
        self.targets = list(targets)
        known = store.targets
        unknown = [t for t in self.targets if t not in known]
        if unknown:
            raise LabelTableError(
                f"target(s) {unknown} are not in dataset {store.path}; its targets are "
                f"{list(known)}"
            )
        self._rows = np.array([store.index_of(i) for i in self.ids], dtype=np.int64)
        labels = store.labels
        self._y = (
            labels.loc[self.ids, self.targets].to_numpy(dtype=np.float32)
            if self.targets
            else np.zeros((len(self.ids), 0), dtype=np.float32)
        )
        self.augment = augment
        if extra is not None:
            extra = np.asarray(extra, dtype=np.float32)
            if extra.ndim != 2 or len(extra) != len(self.ids):
                raise ValueError(
                    f"extra must have one row per id ({len(self.ids)}), got shape {extra.shape}"
                )
        self.extra = extra
        if cache_mb is None:
            cache_mb = float(os.environ.get("RHOPROP_TENSOR_CACHE_MB", "2048"))
        self.cache_mb = float(cache_mb)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = None

    def _sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(x, side) of item ``index``: from the in-memory cache, or read (cached if it fits)."""
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        sample = self.store.read(int(self._rows[index]))
        x, side = sample.x, sample.side
        if self._cache is None and self.cache_mb > 0:
            total_mb = (x.nbytes + side.nbytes) * len(self.ids) / 2**20
            self._cache = {} if total_mb <= self.cache_mb else None
            if self._cache is None:
                self.cache_mb = 0.0  # too large: stream, and do not check again
        if self._cache is not None:
            x.setflags(write=False)
            side.setflags(write=False)
            self._cache[index] = (x, side)
        return x, side

    def __getstate__(self) -> dict[str, object]:
        """Pickled (DataLoader workers under spawn, DDP) without the cached tensors."""
        state = dict(self.__dict__)
        state["_cache"] = None
        return state

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        stored, side = self._sample(index)
        x = stored
        if self.augment is not None:
            x = np.ascontiguousarray(self.augment(x), dtype=np.float32)
            if x.shape != stored.shape:
                raise ValueError(f"augment changed the tensor shape {stored.shape} -> {x.shape}")
        if not x.flags.writeable:  # the cached array (kept read-only) or a view of it
            x = x.copy()
        item: dict[str, torch.Tensor | int] = {
            "x": torch.from_numpy(x),
            "side": torch.from_numpy(side if side.flags.writeable else side.copy()),
            "y": torch.from_numpy(self._y[index].copy()),
            "index": int(index),
        }
        if self.extra is not None:
            item["extra"] = torch.from_numpy(self.extra[index])
        return item
