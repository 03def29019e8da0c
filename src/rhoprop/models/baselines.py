"""Baselines that give rhoprop's numbers a meaning, trained on the same split as the density model.

* mean predictor: the training mean (regression) or the training class frequencies (classification);
* composition model: element-property statistics of the formula (pymatgen ``Element`` data) fed
  to scikit-learn histogram gradient boosting, one model per target;
* CGCNN: a crystal graph convolutional network (Xie & Grossman 2018) in plain torch on pymatgen
  neighbour lists, multi-task with the same heads and masked losses as the MSA-3DCNN.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pymatgen.core import Composition, Element, Structure
from torch import nn
from torch.utils.data import Dataset

from rhoprop.models.base import MultiTaskModel
from rhoprop.models.heads import TaskSpec
from rhoprop.settings import Settings, check_fields, is_int, is_number

#: Element properties used by the composition model (pymatgen Element attributes).
ELEMENT_PROPERTIES = (
    "Z",
    "X",
    "atomic_radius",
    "row",
    "group",
    "atomic_mass",
    "mendeleev_no",
    "ionization_energy",
    "electron_affinity",
    "molar_volume",
    "nvalence",
)
STATISTICS = ("mean", "std", "min", "max")


@functools.cache
def element_properties(symbol: str) -> np.ndarray:
    """The :data:`ELEMENT_PROPERTIES` of an element as floats (NaN where pymatgen has no value)."""
    el = Element(symbol)
    values = []
    for name in ELEMENT_PROPERTIES:
        try:
            if name == "ionization_energy":
                value = el.ionization_energies[0] if el.ionization_energies else math.nan
            elif name == "nvalence":
                value = el.valence[1] if el.valence is not None else math.nan
            else:
                value = getattr(el, name)
            values.append(float(value) if value is not None else math.nan)
        except (ValueError, TypeError, AttributeError, IndexError, KeyError):
            values.append(math.nan)
    return np.asarray(values, dtype=np.float64)


def composition_features(composition: Composition | Structure) -> np.ndarray:
    """Fraction-weighted mean, std, min and max of each element property, plus the number of
    elements."""
    if isinstance(composition, Structure):
        composition = composition.composition
    fractions = composition.fractional_composition
    props = np.stack([element_properties(str(el)) for el in fractions])  # (E, P)
    w = np.array([fractions[el] for el in fractions])[:, None]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        # a property pymatgen has for none of the elements (nvalence of Cr, Ni ...) stays NaN,
        # which the gradient boosting handles; numpy's "All-NaN slice" warning says only that
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nansum(props * w, axis=0) / np.sum(np.where(np.isnan(props), 0, w), axis=0)
        std = np.sqrt(np.nansum(w * (props - mean) ** 2, axis=0))
        lo, hi = np.nanmin(props, axis=0), np.nanmax(props, axis=0)
    return np.concatenate([mean, std, lo, hi, [len(fractions)]])


def feature_names() -> list[str]:
    """Names of the columns of :func:`composition_features`."""
    return [f"{s}_{p}" for s in STATISTICS for p in ELEMENT_PROPERTIES] + ["n_elements"]


# --- CGCNN -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CGCNNConfig(Settings):
    """Architecture of a :class:`CGCNN`: atom embedding size, conv layers, Gaussian distance
    basis."""

    atom_dim: int = 64
    n_conv: int = 3
    cutoff: float = 6.0
    max_neighbors: int = 12
    n_gaussians: int = 40
    embed_dim: int = 64
    head_hidden: int = 32
    dropout: float = 0.1

    def __post_init__(self) -> None:
        sizes = ("atom_dim", "n_conv", "max_neighbors", "n_gaussians", "embed_dim", "head_hidden")
        values = {name: getattr(self, name) for name in sizes}
        check_fields(
            "CGCNNConfig",
            [
                *((is_int(v) and v >= 1, f"{k} must be an int >= 1", v) for k, v in values.items()),
                (is_number(self.cutoff) and self.cutoff > 0, "cutoff must be > 0 (Å)", self.cutoff),
                (
                    is_number(self.dropout) and 0.0 <= self.dropout < 1.0,
                    "dropout must be in [0, 1)",
                    self.dropout,
                ),
            ],
        )


def crystal_graph(structure: Structure, cutoff: float, max_neighbors: int) -> dict[str, np.ndarray]:
    """Atoms (N,) atomic numbers and directed edges (src, dst, distance Å) to the nearest
    neighbours."""
    centers, neighbors, _, distances = structure.get_neighbor_list(r=cutoff)
    src, dst, dist = [], [], []
    for i in range(len(structure)):
        sel = np.flatnonzero(centers == i)
        sel = sel[np.argsort(distances[sel], kind="stable")[:max_neighbors]]
        src.append(np.full(len(sel), i))
        dst.append(neighbors[sel])
        dist.append(distances[sel])
    return {
        "atoms": np.array([site.specie.Z for site in structure], dtype=np.int64),
        "src": np.concatenate(src).astype(np.int64) if src else np.zeros(0, np.int64),
        "dst": np.concatenate(dst).astype(np.int64) if dst else np.zeros(0, np.int64),
        "dist": np.concatenate(dist).astype(np.float32) if dist else np.zeros(0, np.float32),
    }


class GraphDataset(Dataset[dict[str, Any]]):
    """Crystal graphs of structures with an (N, T) label matrix (NaN where missing)."""

    def __init__(
        self, structures: Sequence[Structure], labels: np.ndarray, config: CGCNNConfig
    ) -> None:
        self.graphs = [crystal_graph(s, config.cutoff, config.max_neighbors) for s in structures]
        self.labels = np.asarray(labels, dtype=np.float32).reshape(len(self.graphs), -1)

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.graphs[index], "y": self.labels[index], "index": index}


def collate_graphs(items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Batch graphs into one disjoint graph: atoms, edges offset per crystal, ``crystal`` index per
    atom."""
    offsets = np.cumsum([0] + [len(it["atoms"]) for it in items[:-1]])
    return {
        "atoms": torch.from_numpy(np.concatenate([it["atoms"] for it in items])),
        "src": torch.from_numpy(
            np.concatenate([it["src"] + o for it, o in zip(items, offsets, strict=True)])
        ),
        "dst": torch.from_numpy(
            np.concatenate([it["dst"] + o for it, o in zip(items, offsets, strict=True)])
        ),
        "dist": torch.from_numpy(np.concatenate([it["dist"] for it in items])),
        "crystal": torch.from_numpy(
            np.concatenate([np.full(len(it["atoms"]), k) for k, it in enumerate(items)])
        ),
        "y": torch.from_numpy(np.stack([it["y"] for it in items])),
        "index": torch.tensor([it["index"] for it in items]),
    }


class CGConv(nn.Module):
    """One crystal graph convolution: gated sum over neighbours of (v_i, v_j, e_ij), residual."""

    def __init__(self, atom_dim: int, edge_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(2 * atom_dim + edge_dim, 2 * atom_dim)
        self.norm_edge = nn.LayerNorm(2 * atom_dim)
        self.norm_out = nn.LayerNorm(atom_dim)

    def forward(
        self, v: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, e: torch.Tensor
    ) -> torch.Tensor:
        """v (N, A), src/dst (E,), e (E, G) -> (N, A)."""
        z = self.norm_edge(self.linear(torch.cat([v[src], v[dst], e], dim=1)))  # (E, 2A)
        gate, core = z.chunk(2, dim=1)
        messages = torch.sigmoid(gate) * nn.functional.softplus(core)  # (E, A)
        summed = torch.zeros_like(v).index_add_(0, src, messages)
        return nn.functional.softplus(v + self.norm_out(summed))


class CGCNN(MultiTaskModel):
    """Crystal graph CNN: atom embeddings, graph convolutions, mean pooling, one head per target."""

    centers: torch.Tensor

    def __init__(self, config: CGCNNConfig, tasks: Sequence[TaskSpec]) -> None:
        super().__init__(
            tasks, config.atom_dim, config.embed_dim, config.head_hidden, config.dropout
        )
        self.config = config
        self.atom_embedding = nn.Embedding(119, config.atom_dim)
        self.register_buffer("centers", torch.linspace(0.0, config.cutoff, config.n_gaussians))
        self.gamma = (config.n_gaussians / config.cutoff) ** 2
        self.convs = nn.ModuleList(
            CGConv(config.atom_dim, config.n_gaussians) for _ in range(config.n_conv)
        )

    def batch_inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, ...]:
        """(atoms, src, dst, dist, crystal, n_crystals) from a :func:`collate_graphs` batch."""
        n = torch.tensor(batch["y"].shape[0])
        return batch["atoms"], batch["src"], batch["dst"], batch["dist"], batch["crystal"], n

    def features(  # type: ignore[override]
        self,
        atoms: torch.Tensor,
        src: torch.Tensor,
        dst: torch.Tensor,
        dist: torch.Tensor,
        crystal: torch.Tensor,
        n_crystals: torch.Tensor,
    ) -> torch.Tensor:
        """atoms (N,), edges (E,), dist (E,) Å, crystal (N,) -> (B, A) mean atom features per
        crystal."""
        v = self.atom_embedding(atoms)  # (N, A)
        e = torch.exp(-self.gamma * (dist[:, None] - self.centers[None, :]) ** 2)  # (E, G)
        for conv in self.convs:
            v = conv(v, src, dst, e)
        b = int(n_crystals)
        pooled = torch.zeros(b, v.shape[1], dtype=v.dtype, device=v.device).index_add_(
            0, crystal, v
        )
        count = torch.zeros(b, dtype=v.dtype, device=v.device).index_add_(
            0, crystal, torch.ones_like(v[:, 0])
        )
        return pooled / count.clamp(min=1)[:, None]
