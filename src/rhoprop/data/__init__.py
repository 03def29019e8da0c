"""Dataset stores: build (resume, append) from density files, inspect, split, and read for training.

``DensityDataset`` (needs torch) is imported lazily so that building and reading stores does not
import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rhoprop.data.build import build_dataset
from rhoprop.data.info import dataset_info
from rhoprop.data.inputs import find_density_files, id_from_path
from rhoprop.data.labels import TargetSpec, read_targets, write_targets
from rhoprop.data.report import EXIT_SKIPPED, BuildReport, ReportEntry
from rhoprop.data.split import available_splits, make_split, read_split
from rhoprop.data.store import DatasetStore, Sample, StoreSettings
from rhoprop.errors import DatasetError

if TYPE_CHECKING:
    from rhoprop.data.torch_dataset import DensityDataset

__all__ = [
    "EXIT_SKIPPED",
    "BuildReport",
    "DatasetError",
    "DatasetStore",
    "DensityDataset",
    "ReportEntry",
    "Sample",
    "StoreSettings",
    "TargetSpec",
    "available_splits",
    "build_dataset",
    "dataset_info",
    "find_density_files",
    "id_from_path",
    "make_split",
    "read_split",
    "read_targets",
    "write_targets",
]


def __getattr__(name: str) -> Any:
    if name == "DensityDataset":
        from rhoprop.data.torch_dataset import DensityDataset

        return DensityDataset
    raise AttributeError(f"module 'rhoprop.data' has no attribute {name!r}")
