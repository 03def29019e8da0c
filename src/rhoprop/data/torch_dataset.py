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
    ``x`` (C, n, n, n) numpy float32 to an augmented one of the same shape. Only ids, row offsets
    and the (N, T) label matrix are held in memory; the store's HDF5 files are opened lazily in
    each process that reads, so DataLoader workers and distributed ranks each get their own.
    """

    def __init__(
        self,
        store: DatasetStore | CompositeStore | str | os.PathLike[str],
        ids: Sequence[str] | None = None,
        targets: Sequence[str] = (),
        augment: Callable[[np.ndarray], np.ndarray] | None = None,
        extra: np.ndarray | None = None,
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

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        sample = self.store.read(int(self._rows[index]))
        x = sample.x
        if self.augment is not None:
            x = np.ascontiguousarray(self.augment(x), dtype=np.float32)
            if x.shape != sample.x.shape:
                raise ValueError(f"augment changed the tensor shape {sample.x.shape} -> {x.shape}")
        item: dict[str, torch.Tensor | int] = {
            "x": torch.from_numpy(x),
            "side": torch.from_numpy(sample.side),
            "y": torch.from_numpy(self._y[index].copy()),
            "index": int(index),
        }
        if self.extra is not None:
            item["extra"] = torch.from_numpy(self.extra[index])
        return item
