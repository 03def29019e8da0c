"""Several dataset stores read as one: train, evaluate, analyse on ``gpaw-v1,gpaw-scf-v1`` at once.

Tiers of data differ in what they label (the EOS tier has bulk moduli and elastic constants, the
fast single-SCF tier thousands more densities without them); a model trained on both learns every
target from the samples that have it (the losses are masked, a missing label is NaN). The stores
must hold tensors standardized the same way. Each sample's id becomes ``"<tier>/<id>"`` (a crystal
may sit in two tiers) and :meth:`CompositeStore.tier` names the tier. A target present in several
stores must mean the same thing (kind, unit, classes). Splits are read from every store (each
needs the split) and joined.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rhoprop.data.labels import TargetSpec
from rhoprop.data.store import DatasetStore, Sample, StoreSettings
from rhoprop.errors import DatasetError
from rhoprop.grid.settings import StandardizeSettings

SEPARATOR = "/"


def split_dataset_names(spec: str | os.PathLike[str]) -> list[str]:
    """The stores named by a dataset argument: ``"gpaw-v1,gpaw-scf-v1"`` -> two names (an existing
    path is always one store, even with a comma in it)."""
    text = str(spec)
    if Path(text).exists() or "," not in text:
        return [text]
    names = [part.strip() for part in text.split(",") if part.strip()]
    if len(set(names)) != len(names):
        raise DatasetError(f"dataset list {text!r} names a store twice")
    return names


def tier_label(name: str) -> str:
    """The tier name of a store argument: a built-in's name, or the folder's name."""
    return Path(name).name or name


class CompositeStore:
    """Read access to several :class:`DatasetStore` objects as one store (see the module docstring).

    Offers what training, evaluation and the benchmark read from a store: ``settings``, ``ids``,
    ``labels``, ``targets``, ``read``, ``structure``, ``provenance``, ``column``, ``splits``,
    ``index_of``, ``len``, plus :meth:`tier`.
    """

    def __init__(self, members: Sequence[tuple[str, DatasetStore]]) -> None:
        if len(members) < 2:
            raise DatasetError("a composite store needs at least two stores")
        names = [name for name, _ in members]
        if len(set(names)) != len(names):
            raise DatasetError(f"the stores of a composite need distinct names, got {names}")
        first = members[0][1].settings
        for name, store in members[1:]:
            if store.settings != first:
                mine, theirs = first.to_dict(), store.settings.to_dict()
                diff = ", ".join(
                    f"{k}: {names[0]} {mine[k]!r} vs {name} {theirs[k]!r}"
                    for k in mine
                    if mine[k] != theirs.get(k)
                )
                raise DatasetError(
                    f"stores {names[0]} and {name} hold tensors standardized differently ({diff}); "
                    "rebuild one with the other's settings to train on both"
                )
        self.members = list(members)
        # The members' paths, comma-separated: open_dataset reopens the composite from them.
        self.path = Path(",".join(str(store.path.resolve()) for _, store in members))
        self._ids: list[str] = []
        self._where: list[tuple[int, int]] = []
        for k, (name, store) in enumerate(members):
            self._ids.extend(f"{name}{SEPARATOR}{sid}" for sid in store.ids)
            self._where.extend((k, i) for i in range(len(store)))
        self._position = {sid: i for i, sid in enumerate(self._ids)}
        self._targets: dict[str, TargetSpec] | None = None

    # -- metadata -------------------------------------------------------------------------------
    @property
    def store_settings(self) -> StoreSettings:
        """The first store's settings (the standardization is the same for all)."""
        return self.members[0][1].store_settings

    @property
    def settings(self) -> StandardizeSettings:
        """The standardization settings shared by every store."""
        return self.members[0][1].settings

    @property
    def ids(self) -> list[str]:
        """``"<tier>/<id>"`` of every sample, store after store."""
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, sample_id: object) -> bool:
        return sample_id in self._position

    def index_of(self, sample_id: str) -> int:
        """Position of ``sample_id`` in :attr:`ids`."""
        try:
            return self._position[sample_id]
        except KeyError:
            raise KeyError(f"id {sample_id!r} is not in the composite of {self.tiers}") from None

    @property
    def tiers(self) -> list[str]:
        """Names of the member stores, in order."""
        return [name for name, _ in self.members]

    def tier(self, key: int | str) -> str:
        """The tier (member store's name) of a sample."""
        return self.members[self._locate(key)[0]][0]

    @property
    def targets(self) -> dict[str, TargetSpec]:
        """The union of the stores' targets; one named in several stores must agree."""
        if self._targets is None:
            targets: dict[str, TargetSpec] = {}
            origin: dict[str, str] = {}
            for name, store in self.members:
                for tname, spec in store.targets.items():
                    if tname in targets and targets[tname] != spec:
                        raise DatasetError(
                            f"target {tname!r} means different things in {origin[tname]} "
                            f"({targets[tname]}) and {name} ({spec}); rename one or give both the "
                            "same schema"
                        )
                    targets.setdefault(tname, spec)
                    origin.setdefault(tname, name)
            self._targets = targets
        return dict(self._targets)

    @property
    def labels(self) -> pd.DataFrame:
        """Every store's labels, NaN where a store lacks a target, indexed by ``"<tier>/<id>"``."""
        columns = list(self.targets)
        frames = []
        for name, store in self.members:
            frame = store.labels.reindex(columns=columns)
            frame.index = pd.Index([f"{name}{SEPARATOR}{sid}" for sid in frame.index], name="id")
            frames.append(frame)
        return pd.concat(frames).astype(float)

    # -- samples --------------------------------------------------------------------------------
    def _locate(self, key: int | str) -> tuple[int, int]:
        i = self.index_of(key) if isinstance(key, str) else int(key) % len(self._ids)
        return self._where[i]

    def read(self, key: int | str) -> Sample:
        """One sample, its id prefixed with its tier."""
        k, i = self._locate(key)
        sample = self.members[k][1].read(i)
        sample.id = f"{self.members[k][0]}{SEPARATOR}{sample.id}"
        return sample

    def structure(self, key: int | str) -> Any:
        """The pymatgen ``Structure`` of a sample."""
        k, i = self._locate(key)
        return self.members[k][1].structure(i)

    def provenance(self, key: int | str) -> dict[str, Any]:
        """Where a sample came from (its member store's record, with ``tier``)."""
        k, i = self._locate(key)
        name, store = self.members[k]
        return {**store.provenance(i), "id": self._ids[self._position_of(k, i)], "tier": name}

    def _position_of(self, k: int, i: int) -> int:
        return sum(len(store) for _, store in self.members[:k]) + i

    def column(self, name: str) -> np.ndarray:
        """A per-sample metadata column over every store, in :attr:`ids` order."""
        return np.concatenate([store.column(name) for _, store in self.members])

    def splits(self, name: str = "default") -> dict[str, list[str]]:
        """Split ``name`` of every store, joined (every store needs it)."""
        parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        for tier, store in self.members:
            own = store.splits(name)
            for part in parts:
                parts[part].extend(f"{tier}{SEPARATOR}{sid}" for sid in own.get(part, []))
        return parts

    def close(self) -> None:
        """Close every store's HDF5 handles."""
        for _, store in self.members:
            store.close()


#: A store as training, evaluation and the benchmark read it: one store, or several as one.
AnyStore = DatasetStore | CompositeStore


def open_dataset(spec: str | os.PathLike[str]) -> DatasetStore | CompositeStore:
    """A store from a path or built-in name, or a :class:`CompositeStore` of a comma-separated list
    of them (``"gpaw-v1,gpaw-scf-v1"``)."""
    from rhoprop.datasets import resolve

    names = split_dataset_names(spec)
    if len(names) == 1:
        return DatasetStore(resolve(names[0]))
    return CompositeStore([(tier_label(n), DatasetStore(resolve(n))) for n in names])
