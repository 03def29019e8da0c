"""The multi-scale attention 3D CNN (MSA-3DCNN, after Chen et al., arXiv 2510.13207).

A fixed per-channel input normalization (dataset statistics in buffers, fitted on the training
set: no per-sample normalization, so the absolute density level reaches the trunk), a
circular-padded stem, stages of :class:`~rhoprop.models.blocks.MSABlock` (each stage after the
first halves the grid with a stride-2 circular conv; BatchNorm), global average and max pooling,
an optional global branch (an MLP over ``extra_features``: the density's physical invariants and,
with ``inputs="density+structure"``, what the file's structure says; see
:mod:`rhoprop.models.features`) and side features (lattice parameters in ``cell`` mode) joining at
the embedding, and one small head per target.

Models written before the input normalization existed (no ``norm`` in their config) read as
``norm="group"``, ``input_norm=False``: GroupNorm after the stem, which made that trunk exactly
blind to a global scale of its input.

Periodic rolls: with global pooling the prediction is exactly invariant (up to float rounding)
to rolls of the input by multiples of :attr:`MSA3DCNNConfig.total_stride` voxels along each
axis; other rolls change it slightly (augmentation with random rolls teaches the rest).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from rhoprop.errors import SettingsError
from rhoprop.models.base import MultiTaskModel, Standardizer
from rhoprop.models.blocks import NORMS, ConvNormAct, MSABlock, make_norm
from rhoprop.models.heads import TaskSpec
from rhoprop.settings import Settings, check_fields

#: Bumped whenever a change makes old MSA-3DCNN weights load into a different function.
MODEL_VERSION = 1
#: What a model file written before ``norm`` existed was (:func:`rhoprop.models.io.load_model`).
LEGACY_CONFIG: dict[str, Any] = {"norm": "group", "input_norm": False}
#: Standardized global features are clipped to ±this many training standard deviations.
EXTRA_CLIP = 8.0


@dataclasses.dataclass(frozen=True)
class MSA3DCNNConfig(Settings):
    """Architecture of an :class:`MSA3DCNN`.

    Attributes:
        in_channels: input channels C (StandardizeSettings.n_channels).
        side_features: side features S joining at the embedding
            (StandardizeSettings.n_side_features).
        widths: channels of each stage; stage i > 0 starts with a stride-2 conv.
        depths: MSA blocks per stage.
        branches: ``(kernel_size, dilation)`` of the parallel branches of each multi-scale conv.
        stem_stride: stride of the stem: 1 or 2 (a circular 3x3x3 conv; 2 halves the grid before
            the first stage), or 4 (a patch embedding: a 4x4x4 conv with stride 4, each
            non-overlapping patch mapped to ``widths[0]`` channels, as in ConvNeXt; the cheapest
            way to a coarse grid that still sees every voxel).
        se_reduction: channel reduction of the squeeze-excitation attention.
        spatial_kernel: kernel size of the spatial attention conv.
        embed_dim: size E of the shared embedding.
        head_hidden: hidden units of each target head.
        dropout: dropout on the embedding and in the heads (also used for MC-dropout uncertainty).
        norm: ``"batch"`` or ``"group"`` (:func:`~rhoprop.models.blocks.make_norm`).
        input_norm: standardize each input channel with fixed training-set statistics.
        extra_features: size of the global feature vector (0: no global branch).
        extra_hidden: width of the global branch's MLP.
        extra_linear: also a linear path from the standardized global features straight to every
            target's output (wide and deep: quantities that are nearly linear in a feature, such
            as the mass density in the density's mass-density estimate, need not be learned
            through the embedding). Starts at zero, so the network begins as without it.
        extra_linear_skip: targets that get no linear path (none by default). Measured on the
            gpaw-v1 folds (``docs/model.md``): skipping the band gap lowers its error on 4 of 5
            folds but raises the volume's and the total energy's on 5 of 5.
    """

    in_channels: int = 1
    side_features: int = 0
    widths: tuple[int, ...] = (16, 32, 64)
    depths: tuple[int, ...] = (1, 1, 1)
    branches: tuple[tuple[int, int], ...] = ((3, 1), (3, 2), (3, 4))
    stem_stride: int = 1
    se_reduction: int = 4
    spatial_kernel: int = 5
    embed_dim: int = 64
    head_hidden: int = 32
    dropout: float = 0.1
    norm: str = "batch"
    input_norm: bool = True
    extra_features: int = 0
    extra_hidden: int = 64
    extra_linear: bool = True
    extra_linear_skip: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        object.__setattr__(self, "extra_linear_skip", tuple(str(t) for t in self.extra_linear_skip))
        try:
            branches = tuple((int(k), int(d)) for k, d in self.branches)
        except (TypeError, ValueError) as exc:
            raise SettingsError(
                "MSA3DCNNConfig.branches must be (kernel_size, dilation) pairs, got "
                f"{self.branches!r}"
            ) from exc
        object.__setattr__(self, "branches", branches)
        checks = [
            (self.in_channels >= 1, "in_channels must be >= 1", self.in_channels),
            (self.side_features >= 0, "side_features must be >= 0", self.side_features),
            (
                len(self.widths) >= 1 and min(self.widths) >= 1,
                "widths must be >= 1 ints",
                self.widths,
            ),
            (
                len(self.depths) == len(self.widths),
                "depths must have one entry per width",
                self.depths,
            ),
            (min(self.depths, default=0) >= 1, "depths must be >= 1", self.depths),
            (
                bool(branches) and all(k % 2 == 1 and d >= 1 for k, d in branches),
                "branches must be (odd kernel_size, dilation >= 1) pairs",
                branches,
            ),
            (self.stem_stride in (1, 2, 4), "stem_stride must be 1, 2 or 4", self.stem_stride),
            (self.spatial_kernel % 2 == 1, "spatial_kernel must be odd", self.spatial_kernel),
            (
                self.embed_dim >= 1 and self.head_hidden >= 1,
                "embed_dim and head_hidden must be >= 1",
                (self.embed_dim, self.head_hidden),
            ),
            (0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)", self.dropout),
            (self.norm in NORMS, f"norm must be one of {NORMS}", self.norm),
            (
                isinstance(self.input_norm, bool),
                "input_norm must be true or false",
                self.input_norm,
            ),
            (
                self.extra_features >= 0 and self.extra_hidden >= 1,
                "extra_features must be >= 0 and extra_hidden >= 1",
                (self.extra_features, self.extra_hidden),
            ),
            (
                isinstance(self.extra_linear, bool),
                "extra_linear must be true or false",
                self.extra_linear,
            ),
        ]
        check_fields("MSA3DCNNConfig", checks)

    @property
    def total_stride(self) -> int:
        """Downsampling factor of the trunk; rolls by multiples of it leave predictions
        unchanged."""
        return self.stem_stride * 2 ** (len(self.widths) - 1)


#: Model sizes by name: each is only its arguments (timm style). ``tiny`` is for tests;
#: ``small`` and ``default`` run on a CPU at n = 32; ``large`` wants a GPU.
MODEL_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(
        widths=(8, 16), depths=(1, 1), branches=((3, 1), (3, 2)), embed_dim=32, head_hidden=16
    ),
    "compact": dict(widths=(24, 48), depths=(1, 1), stem_stride=4, embed_dim=64, head_hidden=32),
    "small": dict(
        widths=(12, 24, 48), depths=(1, 1, 1), stem_stride=2, embed_dim=64, head_hidden=32
    ),
    "default": dict(
        widths=(24, 48, 96), depths=(1, 1, 2), stem_stride=2, embed_dim=96, head_hidden=48
    ),
    "large": dict(
        widths=(32, 64, 128, 256),
        depths=(1, 2, 3, 2),
        branches=((1, 1), (3, 1), (3, 2), (3, 4)),
        embed_dim=256,
        head_hidden=128,
        dropout=0.15,
    ),
}


class MSA3DCNN(MultiTaskModel):
    """Multi-scale attention 3D CNN: standardized density (+ side features) -> every target at
    once."""

    def __init__(self, config: MSA3DCNNConfig, tasks: Sequence[TaskSpec]) -> None:
        extra = config.extra_hidden if config.extra_features else 0
        super().__init__(
            tasks, 2 * config.widths[-1] + config.side_features + extra, config.embed_dim,
            config.head_hidden, config.dropout,
        )  # fmt: skip
        self.config = config
        w, norm = config.widths, config.norm
        # Buffers only where the config uses them: older model files hold exactly their own tensors.
        self.input_norm = Standardizer(config.in_channels) if config.input_norm else None
        self.stem = (
            ConvNormAct(config.in_channels, w[0], 3, stride=config.stem_stride, norm=norm)
            if config.stem_stride < 4
            else nn.Sequential(
                nn.Conv3d(config.in_channels, w[0], 4, stride=4), make_norm(norm, w[0]), nn.SiLU()
            )
        )
        stages: list[nn.Module] = []
        for i, (width, depth) in enumerate(zip(w, config.depths, strict=True)):
            layers: list[nn.Module] = (
                [] if i == 0 else [ConvNormAct(w[i - 1], width, 3, stride=2, norm=norm)]
            )
            layers += [
                MSABlock(width, config.branches, config.se_reduction, config.spatial_kernel, norm)
                for _ in range(depth)
            ]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.side_norm = Standardizer(config.side_features)
        self.extra_norm = Standardizer(config.extra_features) if config.extra_features else None
        self.extra_branch = (
            nn.Sequential(
                nn.Linear(config.extra_features, config.extra_hidden), nn.SiLU(),
                nn.Linear(config.extra_hidden, config.extra_hidden), nn.SiLU(),
            )
            if config.extra_features else None
        )  # fmt: skip
        self.extra_linear = (
            nn.ModuleDict(
                {
                    t.name: nn.Linear(config.extra_features, t.n_outputs)
                    for t in tasks
                    if t.name not in config.extra_linear_skip
                }
            )
            if config.extra_features and config.extra_linear
            else None
        )
        if self.extra_linear is not None:
            for layer in self.extra_linear.values():
                assert isinstance(layer, nn.Linear)
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def features(  # type: ignore[override]
        self, x: torch.Tensor, side: torch.Tensor | None = None, extra: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B, C, n, n, n), side (B, S) and extra (B, X) in natural units (None when S or X is 0)
        -> features (B, 2W + S + H [+ X]), H the global branch's width (0 without one), X the
        standardized global features themselves where the config has ``extra_linear``
        (:meth:`heads_forward` takes them off again)."""
        cfg = self.config
        if x.ndim != 5 or x.shape[1] != cfg.in_channels:
            raise SettingsError(
                f"MSA3DCNN input must have shape (B, {cfg.in_channels}, n, n, n), got "
                f"{tuple(x.shape)}"
            )
        if min(x.shape[2:]) < cfg.total_stride:
            raise SettingsError(
                f"MSA3DCNN input grid {tuple(x.shape[2:])} is smaller than the model's total "
                f"stride {cfg.total_stride}; use a larger StandardizeSettings.n or a model with "
                "fewer stages"
            )
        if self.input_norm is not None:
            x = (x - self.input_norm.mean[:, None, None, None]) / self.input_norm.std[
                :, None, None, None
            ]
        h = self.stages(self.stem(x))  # (B, W, n', n', n')
        pooled = torch.cat([h.mean(dim=(2, 3, 4)), h.amax(dim=(2, 3, 4))], dim=1)  # (B, 2W)
        if cfg.side_features:
            if side is None or side.shape != (x.shape[0], cfg.side_features):
                got = None if side is None else tuple(side.shape)
                raise SettingsError(
                    f"MSA3DCNN needs side features of shape ({x.shape[0]}, {cfg.side_features}), "
                    f"got {got}"
                )
            pooled = torch.cat([pooled, self.side_norm(side)], dim=1)  # (B, 2W + S)
        if self.extra_norm is not None and self.extra_branch is not None:
            if extra is None or extra.shape != (x.shape[0], cfg.extra_features):
                got = None if extra is None else tuple(extra.shape)
                raise SettingsError(
                    f"MSA3DCNN needs extra features of shape ({x.shape[0]}, {cfg.extra_features}), "
                    f"got {got}"
                )
            z = torch.nan_to_num(self.extra_norm(extra), nan=0.0).clamp(-EXTRA_CLIP, EXTRA_CLIP)
            pooled = torch.cat([pooled, self.extra_branch(z)], dim=1)  # (B, 2W + S + H)
            if self.extra_linear is not None:
                pooled = torch.cat([pooled, z], dim=1)  # (B, 2W + S + H + X)
        return pooled

    def heads_forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, F) features of :meth:`features` -> raw outputs; with ``extra_linear`` each target
        adds a linear function of the standardized global features to its head's output."""
        if self.extra_linear is None:
            return super().heads_forward(features)
        n = self.config.extra_features
        out = super().heads_forward(features[:, :-n])
        z = features[:, -n:]
        for name, layer in self.extra_linear.items():
            wide = layer(z)
            out[name] = out[name] + (wide.squeeze(-1) if wide.shape[-1] == 1 else wide)
        return out

    def batch_inputs(
        self, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(x, side, extra) from a DensityDataset batch (None for what the model does not use)."""
        return (
            batch["x"],
            batch["side"] if self.config.side_features else None,
            batch["extra"] if self.config.extra_features else None,
        )

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, side: torch.Tensor | None = None, extra: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """x (B, C, n, n, n), side (B, S), extra (B, X) -> {target: (B,) or (B, K)} raw outputs."""
        return self.heads_forward(self.features(x, side, extra))


def build_model(
    size: str,
    tasks: Sequence[TaskSpec],
    *,
    in_channels: int = 1,
    side_features: int = 0,
    **overrides: Any,
) -> MSA3DCNN:
    """Build an MSA-3DCNN of a named size (``tiny``, ``small``, ``default``, ``large``) for
    ``tasks``."""
    config = model_config(size, in_channels=in_channels, side_features=side_features, **overrides)
    return MSA3DCNN(config, tasks)


def model_config(size: str, **overrides: Any) -> MSA3DCNNConfig:
    """The :class:`MSA3DCNNConfig` of a named size, with ``overrides`` applied."""
    if size not in MODEL_SIZES:
        raise SettingsError(f"unknown model size {size!r}; valid sizes are {sorted(MODEL_SIZES)}")
    return MSA3DCNNConfig.from_dict({**MODEL_SIZES[size], **overrides})
