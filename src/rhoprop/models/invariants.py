"""Physically meaningful invariants of a standardized density, computed from the tensor a model
reads.

:func:`density_invariants` undoes the value transform (back to ρ in e/Å³ and the magnetization in
μB/Å³) and summarizes each channel by numbers that do not change under the cubic rotations of
training augmentation nor under the cube's placement: moments and percentiles, volume and electron
fractions above fixed density levels, the radially averaged power spectrum, the reduced density
gradient of DFT (s = |∇ρ| / (2 (3π²)^{1/3} ρ^{4/3}), small in bonds and shells, large in the tails),
the sign of the Laplacian (charge concentration), and local maxima (atoms, bond and lone-pair
peaks). One definition serves both the ``density-invariants`` gradient-boosting baseline and the
invariants branch of the MSA-3DCNN.

Everything is computed in float64 torch on a batch ``(B, C, n, n, n)`` → ``(B, F)``; gradients are
not needed (the input is data, not a parameter). Finite differences use the interior of the grid
(the cube is a window onto the crystal, not periodic).
"""

from __future__ import annotations

import math

import torch

from rhoprop.errors import SettingsError
from rhoprop.grid.settings import StandardizeSettings
from rhoprop.grid.transforms import apply_transform, inverse_transform

QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
#: Density levels (e/Å³) for volume and electron fractions.
LEVELS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
SPIN_LEVELS = (0.001, 0.005, 0.02, 0.05, 0.1)
#: Radial |k| bins of the power spectrum.
K_BINS = 16
#: ρ below which the reduced gradient is not evaluated (e/Å³; the vacuum-like tails).
S_FLOOR = 0.005
#: Local maxima count only above this density (e/Å³).
PEAK_FLOOR = 0.05
#: Version of these definitions; results computed from an older one are not reused (2: a
#: maximum whose value ties across adjacent voxels counts once).
INVARIANTS_VERSION = 2
CF = 2.0 * (3.0 * math.pi**2) ** (1.0 / 3.0)
EPS = 1e-12


def _quantiles(values: torch.Tensor, qs: tuple[float, ...]) -> torch.Tensor:
    """(B, N) -> (B, len(qs)) quantiles along the last axis."""
    return torch.quantile(
        values, torch.tensor(qs, dtype=values.dtype, device=values.device), dim=1
    ).T


def _radial_power(field: torch.Tensor) -> torch.Tensor:
    """(B, n, n, n) -> (B, K_BINS) log10 of the radially averaged power of the mean-free field."""
    b, n = field.shape[0], field.shape[-1]
    spectrum = torch.fft.rfftn(field - field.mean(dim=(1, 2, 3), keepdim=True), dim=(1, 2, 3))
    power = (spectrum.real**2 + spectrum.imag**2) / n**6
    k = torch.fft.fftfreq(n, device=field.device) * n
    kz = torch.fft.rfftfreq(n, device=field.device) * n
    radius = torch.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + kz[None, None, :] ** 2)
    bins = torch.clamp(
        ((radius - 0.5) / (n / 2) * K_BINS).long(), 0, K_BINS
    )  # K_BINS: beyond the sphere
    flat = power.reshape(b, -1)
    index = bins.reshape(-1).expand(b, -1)
    sums = torch.zeros(b, K_BINS + 1, dtype=field.dtype, device=field.device).scatter_add_(
        1, index, flat
    )
    counts = torch.bincount(bins.reshape(-1), minlength=K_BINS + 1).to(field.dtype).clamp(min=1)
    return torch.log10(sums[:, :K_BINS] / counts[:K_BINS] + EPS)


def _gradient_features(rho: torch.Tensor, spacing: float) -> torch.Tensor:
    """(B, n, n, n) ρ -> (B, 9): mean |∇ρ|, quantiles of s (10/25/50/75/90 %), fractions s < 0.5 and
    s < 1 (over ρ > S_FLOOR), fraction of the volume with ∇²ρ < 0, mean ∇²ρ / mean ρ."""
    inner = rho[:, 1:-1, 1:-1, 1:-1]
    gx = (rho[:, 2:, 1:-1, 1:-1] - rho[:, :-2, 1:-1, 1:-1]) / (2 * spacing)
    gy = (rho[:, 1:-1, 2:, 1:-1] - rho[:, 1:-1, :-2, 1:-1]) / (2 * spacing)
    gz = (rho[:, 1:-1, 1:-1, 2:] - rho[:, 1:-1, 1:-1, :-2]) / (2 * spacing)
    grad = torch.sqrt(gx**2 + gy**2 + gz**2)
    lap = (
        rho[:, 2:, 1:-1, 1:-1] + rho[:, :-2, 1:-1, 1:-1]
        + rho[:, 1:-1, 2:, 1:-1] + rho[:, 1:-1, :-2, 1:-1]
        + rho[:, 1:-1, 1:-1, 2:] + rho[:, 1:-1, 1:-1, :-2] - 6 * inner
    ) / spacing**2  # fmt: skip
    b = rho.shape[0]
    mask = inner > S_FLOOR
    s = grad / (CF * inner.clamp(min=S_FLOOR) ** (4.0 / 3.0))
    s = torch.where(mask, s, torch.full_like(s, float("nan"))).reshape(b, -1)
    s_q = torch.nanquantile(s, torch.tensor((0.1, 0.25, 0.5, 0.75, 0.9), dtype=s.dtype), dim=1).T
    count = mask.reshape(b, -1).sum(dim=1).clamp(min=1)
    below = torch.stack(
        [((s < level) & mask.reshape(b, -1)).sum(dim=1) / count for level in (0.5, 1.0)], 1
    )
    concentration = (lap < 0).reshape(b, -1).to(rho.dtype).mean(dim=1, keepdim=True)
    lap_ratio = (lap.reshape(b, -1).mean(dim=1) / inner.reshape(b, -1).mean(dim=1).clamp(min=EPS))[
        :, None
    ]
    return torch.cat(
        [torch.log10(grad.reshape(b, -1).mean(dim=1, keepdim=True) + EPS),
         torch.nan_to_num(s_q, nan=0.0), below, concentration, torch.asinh(lap_ratio)], dim=1,
    )  # fmt: skip


def _peak_roots(peaks: torch.Tensor) -> torch.Tensor:
    """(B, m, m, m) bool peak voxels -> bool mask of one voxel per 26-connected group of them.

    A maximum that falls between grid points gives two or more voxels of equal value, each
    ``>=`` its neighbours; whether the values tie exactly depends on where the grid happens to lie
    (a symmetric cube ties, the same cube after an origin shift by a lattice vector's fraction does
    not), so voxels are grouped and each group counts once. Groups are found by propagating the
    largest voxel index through the group (max pooling), which stops when nothing changes."""
    index = torch.arange(1, peaks[0].numel() + 1, dtype=torch.float64, device=peaks.device)
    index = index.reshape(peaks.shape[1:]).expand_as(peaks)
    label = torch.where(peaks, index, torch.zeros_like(index))
    while True:
        spread = torch.nn.functional.max_pool3d(label[:, None], 3, stride=1, padding=1)[:, 0]
        spread = torch.where(peaks, spread, torch.zeros_like(spread))
        if torch.equal(spread, label):
            return peaks & (label == index)
        label = spread


def _local_maxima(x: torch.Tensor, floor: float) -> torch.Tensor:
    """(B, n, n, n) transformed values -> (B, 3): interior local maxima (3³ neighbourhood, above
    ``floor``; adjacent voxels of one tied maximum count once) per 1000 voxels, their mean and
    their spread of heights."""
    pooled = torch.nn.functional.max_pool3d(x[:, None], kernel_size=3, stride=1)[:, 0]
    inner = x[:, 1:-1, 1:-1, 1:-1]
    peaks = _peak_roots((inner >= pooled) & (inner > floor))
    b = x.shape[0]
    count = peaks.reshape(b, -1).sum(dim=1).to(x.dtype)
    heights = torch.where(peaks, inner, torch.zeros_like(inner)).reshape(b, -1)
    mean = heights.sum(dim=1) / count.clamp(min=1)
    var = (
        torch.where(peaks, inner - mean[:, None, None, None], torch.zeros_like(inner)) ** 2
    ).reshape(b, -1)
    std = torch.sqrt(var.sum(dim=1) / count.clamp(min=1))
    return torch.stack([count / inner[0].numel() * 1000, mean, std], dim=1)


def _moments(v: torch.Tensor) -> torch.Tensor:
    """(B, N) -> (B, 4): mean, std, skewness, excess kurtosis (skew/kurtosis through asinh)."""
    mean = v.mean(dim=1)
    centred = v - mean[:, None]
    std = centred.pow(2).mean(dim=1).sqrt()
    z = centred / std.clamp(min=EPS)[:, None]
    return torch.stack(
        [mean, std, torch.asinh(z.pow(3).mean(dim=1)), torch.asinh(z.pow(4).mean(dim=1) - 3)], 1
    )


def _total_features(
    x: torch.Tensor, rho: torch.Tensor, spacing: float, floor: float
) -> torch.Tensor:
    b = rho.shape[0]
    flat = rho.reshape(b, -1)
    xf = x.reshape(b, -1)
    mean = flat.mean(dim=1)
    moments = _moments(flat)
    electrons = flat.clamp(min=0)
    total = electrons.sum(dim=1).clamp(min=EPS)
    volume_fractions = torch.stack(
        [(flat > level).to(flat.dtype).mean(dim=1) for level in LEVELS], 1
    )
    electron_fractions = torch.stack(
        [(electrons * (flat > level)).sum(dim=1) / total for level in LEVELS], 1
    )
    return torch.cat(
        [
            torch.log10(mean.clamp(min=EPS))[:, None],  # ≈ log10(valence electrons / cell volume)
            moments[:, 1:2] / mean.clamp(min=EPS)[:, None],  # coefficient of variation
            moments[:, 2:],
            _quantiles(xf, QUANTILES),  # in the transform's units (asinh: log-like)
            xf.min(dim=1).values[:, None],
            xf.max(dim=1).values[:, None],
            volume_fractions,
            electron_fractions,
            _radial_power(rho),
            _gradient_features(rho, spacing),
            _local_maxima(x, floor),
        ],
        dim=1,
    )


def _total_names() -> list[str]:
    return (
        ["log10_mean_rho", "cv_rho", "skew_rho", "kurtosis_rho"]
        + [f"q{int(q * 100):02d}_x" for q in QUANTILES]
        + ["min_x", "max_x"]
        + [f"vol_frac_gt_{level:g}" for level in LEVELS]
        + [f"elec_frac_gt_{level:g}" for level in LEVELS]
        + [f"log10_power_k{i}" for i in range(K_BINS)]
        + [
            "log10_mean_grad",
            *[f"s_q{q}" for q in (10, 25, 50, 75, 90)],
            "frac_s_lt_0.5",
            "frac_s_lt_1",
            "frac_laplacian_neg",
            "asinh_laplacian_ratio",
        ]
        + ["maxima_per_1000_voxels", "maxima_mean_x", "maxima_std_x"]
    )


def _spin_features(m: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    b = m.shape[0]
    flat, absm = m.reshape(b, -1), m.reshape(b, -1).abs()
    rho_flat = rho.reshape(b, -1)
    polarization = absm.mean(dim=1) / rho_flat.clamp(min=0).mean(dim=1).clamp(min=EPS)
    net = flat.mean(dim=1) / rho_flat.clamp(min=0).mean(dim=1).clamp(min=EPS)
    cm, cr = flat - flat.mean(dim=1, keepdim=True), rho_flat - rho_flat.mean(dim=1, keepdim=True)
    corr = (cm * cr).mean(dim=1) / (
        cm.pow(2).mean(dim=1).sqrt() * cr.pow(2).mean(dim=1).sqrt()
    ).clamp(min=EPS)
    fractions = torch.stack([(absm > level).to(m.dtype).mean(dim=1) for level in SPIN_LEVELS], 1)
    return torch.cat(
        [
            torch.stack(
                [net, polarization, flat.min(dim=1).values, absm.max(dim=1).values, corr], 1
            ),
            torch.asinh(_quantiles(absm, (0.5, 0.9, 0.99)) / 0.01),
            fractions,
        ],
        dim=1,
    )


def _spin_names() -> list[str]:
    return (
        [
            "net_spin_per_electron",
            "abs_spin_per_electron",
            "min_spin",
            "max_abs_spin",
            "corr_spin_rho",
        ]
        + [f"asinh_abs_spin_q{q}" for q in (50, 90, 99)]
        + [f"vol_frac_abs_spin_gt_{level:g}" for level in SPIN_LEVELS]
    )


def _deformation_features(d: torch.Tensor) -> torch.Tensor:
    b = d.shape[0]
    flat = d.reshape(b, -1)
    return torch.cat(
        [_moments(flat), torch.asinh(_quantiles(flat, (0.01, 0.1, 0.5, 0.9, 0.99)) / 0.01),
         torch.stack([(flat > level).to(d.dtype).mean(dim=1) for level in (0.01, 0.05, 0.1)], 1)],
        dim=1,
    )  # fmt: skip


def _deformation_names() -> list[str]:
    return (
        ["mean_def", "std_def", "skew_def", "kurtosis_def"]
        + [f"asinh_def_q{q}" for q in (1, 10, 50, 90, 99)]
        + [f"vol_frac_def_gt_{level:g}" for level in (0.01, 0.05, 0.1)]
    )


def invariant_names(settings: StandardizeSettings) -> list[str]:
    """Names of the columns :func:`density_invariants` returns for tensors of ``settings``."""
    names: list[str] = []
    parts = {"total": _total_names, "spin": _spin_names, "deformation": _deformation_names}
    for channel in settings.channels:
        names += parts[channel]()
    return names


def density_invariants(x: torch.Tensor, settings: StandardizeSettings) -> torch.Tensor:
    """(B, C, n, n, n) standardized tensors -> (B, F) float32 invariants (see the module docstring).

    Needs the ``total`` channel; ``spin`` and ``deformation`` add their own columns
    (:func:`invariant_names`). Mode ``cube`` gives gradients in physical units (voxel ``edge / n``
    Å); mode ``cell`` uses a unit voxel.
    """
    if "total" not in settings.channels:
        raise SettingsError(
            "density invariants need the 'total' channel; the tensors have channels "
            f"{settings.channels}"
        )
    if x.ndim != 5 or x.shape[1] != settings.n_channels:
        raise SettingsError(
            f"density_invariants expects (B, {settings.n_channels}, n, n, n) tensors, got "
            f"{tuple(x.shape)}"
        )
    with torch.no_grad():
        x64 = x.to(torch.float64)
        values = inverse_transform(x64, settings)
        spacing = settings.edge / settings.n if settings.mode == "cube" else 1.0
        peak_floor = float(apply_transform(PEAK_FLOOR, settings))
        i_total = settings.channels.index("total")
        rho = values[:, i_total]
        parts = []
        for c, channel in enumerate(settings.channels):
            if channel == "total":
                parts.append(_total_features(x64[:, c], rho, spacing, peak_floor))
            elif channel == "spin":
                parts.append(_spin_features(values[:, c], rho))
            else:
                parts.append(_deformation_features(values[:, c]))
        out = torch.cat(parts, dim=1)
    return torch.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).to(torch.float32)
