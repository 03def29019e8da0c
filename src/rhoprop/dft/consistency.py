"""Consistency between tiers: recompute ``gpaw-v1`` materials with the fast tier and compare labels.

:func:`recompute_with_fast_tier` takes materials of a ``gpaw-v1`` folder (their input structures,
ids and prototypes), puts the fast tier's references of their elements in front, and runs them with
``gpaw-scf-v1`` into another folder; :func:`compare_tiers` tabulates, per label, the median and
largest difference between the two folders (and, given the store holding the ``gpaw-v1``
densities, the relative L1 difference of the standardized tensors). ``bench/tier_consistency.py``
runs both.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from rhoprop.dft.enumerate import build_any, scf_reference_ids
from rhoprop.dft.generate import GenerateReport, generate
from rhoprop.dft.labels import folder_protocol, label_schema, labels_frame, load_results
from rhoprop.dft.material import Candidate, chgcar_path
from rhoprop.dft.phonons import PHONON_LABEL_SCHEMA, phonon_labels
from rhoprop.dft.protocol import SCFProtocol
from rhoprop.dft.prototypes import GASES, build_dimer
from rhoprop.errors import RhopropError


def spread_ids(reference_dir: str | Path, n: int) -> list[str]:
    """``n`` crystal ids of a ``gpaw-v1`` folder spread over prototypes, spin and metal/non-metal:
    round-robin over the (prototype, spin, metal) groups, smallest cells first (deterministic)."""
    groups: dict[tuple[str, bool, bool], list[tuple[int, str]]] = defaultdict(list)
    for rec in load_results(reference_dir):
        if rec.get("kind", "crystal") == "crystal":
            key = (rec["prototype"], bool(rec["spin_polarized"]), bool(rec["scf"]["is_metal"]))
            groups[key].append((rec["natoms"], rec["id"]))
    queues = [sorted(v) for _, v in sorted(groups.items())]
    picked: list[str] = []
    while len(picked) < n and any(queues):
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop(0)[1])
    return picked


def fast_tier_candidates(reference_dir: str | Path, ids: Sequence[str]) -> list[Candidate]:
    """The fast tier's candidates for ``ids`` of a ``gpaw-v1`` folder (input structures, same ids
    and prototypes), each element's fast-tier references (elemental structures, dimer) in front."""
    results = Path(reference_dir) / "results"
    materials: list[Candidate] = []
    elements: list[str] = []
    for mid in ids:
        path = results / f"{mid}.json"
        if not path.exists():
            raise RhopropError(
                f"{path} does not exist: {mid!r} is not a computed material of {reference_dir}"
            )
        rec = json.loads(path.read_text())
        if rec.get("kind", "crystal") != "crystal":
            raise RhopropError(
                f"{mid} is a {rec.get('kind')!r} of {reference_dir}; only crystals can be compared"
            )
        structure = Structure.from_dict(rec.get("input_structure") or rec["structure"])
        materials.append(
            Candidate(mid, structure, rec["prototype"], f"{reference_dir} (tier consistency)")
        )
        elements.extend(el.symbol for el in structure.composition)
    references = []
    for el in dict.fromkeys(elements):
        for ref in scf_reference_ids(el):
            if ref in set(ids):
                continue
            if el in GASES:
                references.append(Candidate(ref, build_dimer(el), "dimer", "reference"))
            else:
                proto = ref.split("-", 1)[1]
                references.append(Candidate(ref, build_any(proto, (el,)), proto, "prototype"))
    return references + materials


def recompute_with_fast_tier(
    reference_dir: str | Path,
    out_dir: str | Path,
    ids: Sequence[str],
    workers: int = 1,
    max_minutes: float = 30.0,
    progress: bool = True,
) -> GenerateReport:
    """Compute ``ids`` of a ``gpaw-v1`` folder, with their elements' references, with
    ``gpaw-scf-v1`` into ``out_dir`` (resumable like any batch), then assemble its labels."""
    from rhoprop.dft.labels import assemble_labels

    report = generate(
        fast_tier_candidates(reference_dir, ids),
        out_dir,
        workers=workers,
        protocol=SCFProtocol(),
        max_minutes=max_minutes,
        progress=progress,
    )
    assemble_labels(out_dir)
    return report


def compare_tiers(
    reference_dir: str | Path,
    tier_dir: str | Path,
    ids: Sequence[str] | None = None,
    store: Any = None,
) -> pd.DataFrame:
    """Per label of the fast tier: materials compared, median signed and absolute difference (tier −
    reference), largest absolute difference and its material (classification labels: fraction that
    agrees). With ``store`` (a DatasetStore holding the reference densities) a last row compares the
    standardized tensors: relative L1 difference ``Σ|x_tier − x_ref| / Σ|x_ref|``. Where both
    folders hold phonon results (``DIR/phonons``) for common materials, ``dynamically_stable`` and
    ``min_frequency`` are compared too."""
    ref_records, tier_records = load_results(reference_dir), load_results(tier_dir)
    ref = labels_frame(ref_records, folder_protocol(reference_dir))
    tier_protocol = folder_protocol(tier_dir)
    tier = labels_frame(tier_records, tier_protocol)
    common = sorted(
        set(ref.index) & set(tier.index) & (set(ids) if ids is not None else set(tier.index))
    )
    if not common:
        raise RhopropError(
            f"{reference_dir} and {tier_dir} have no computed crystal in common to compare"
        )
    rows = [
        _label_row(name, spec, tier.loc[common, name], ref.loc[common, name])
        for name, spec in label_schema(tier_protocol).items()
    ]
    # Phonon labels (DIR/phonons of both folders, each from its own tier's geometry), where both
    # tiers have them for a common material.
    ref_ph = phonon_labels(reference_dir, ref_records)
    tier_ph = phonon_labels(tier_dir, tier_records)
    both_ph = [m for m in common if m in ref_ph.index and m in tier_ph.index]
    if both_ph:
        rows += [
            _label_row(name, spec, tier_ph.loc[both_ph, name], ref_ph.loc[both_ph, name])
            for name, spec in PHONON_LABEL_SCHEMA.items()
        ]
    if store is not None:
        rows.append(_tensor_row(tier_dir, common, store))
    return pd.DataFrame(rows).set_index("label")


def _label_row(name: str, spec: dict[str, Any], a: pd.Series, b: pd.Series) -> dict[str, Any]:
    """One label's row of :func:`compare_tiers`: ``a`` the tier's values, ``b`` the reference's.
    Classes: the fraction of materials that agree; regression: median signed and absolute
    difference, largest absolute difference and its material."""
    both = a.notna() & b.notna()
    if spec["kind"] != "regression":
        same = a[both].astype(str) == b[both].astype(str)
        agree = float(same.mean()) if both.any() else math.nan
        return {"label": name, "unit": spec["unit"], "n": int(both.sum()), "agreement": agree}
    diff = a[both].astype(float) - b[both].astype(float)
    return {
        "label": name,
        "unit": spec["unit"],
        "n": int(both.sum()),
        "median_diff": float(diff.median()) if len(diff) else math.nan,
        "median_abs_diff": float(diff.abs().median()) if len(diff) else math.nan,
        "max_abs_diff": float(diff.abs().max()) if len(diff) else math.nan,
        "worst": diff.abs().idxmax() if len(diff) else "",
    }


def _tensor_row(tier_dir: str | Path, ids: Sequence[str], store: Any) -> dict[str, Any]:
    """Relative L1 difference of standardized tensors: the tier's CHGCAR against the store's."""
    from rhoprop.grid import standardize
    from rhoprop.io import read_density

    held = set(store.ids)
    values: dict[str, float] = {}
    for mid in ids:
        path = chgcar_path(Path(tier_dir), mid)
        if mid not in held or not path.exists():
            continue
        x = standardize(read_density(path), store.settings).x.astype(np.float64)
        x_ref = np.asarray(store.read(mid).x, dtype=np.float64)
        values[mid] = float(np.abs(x - x_ref).sum() / np.abs(x_ref).sum())
    series = pd.Series(values, dtype=float)
    return {
        "label": "density_tensor_rel_l1",
        "unit": "",
        "n": len(series),
        "median_diff": math.nan,
        "median_abs_diff": float(series.median()) if len(series) else math.nan,
        "max_abs_diff": float(series.max()) if len(series) else math.nan,
        "worst": series.idxmax() if len(series) else "",
    }


def consistency_markdown(table: pd.DataFrame) -> str:
    """The comparison table as markdown (differences: fast tier − gpaw-v1)."""
    lines = [
        "| label | unit | n | median Δ | median \\|Δ\\| | max \\|Δ\\| (material) | agreement |",
        "|---|---|---:|---:|---:|---|---:|",
    ]

    def f(v: Any, digits: int = 3) -> str:
        return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"

    for name, row in table.iterrows():
        worst = row.get("worst") if isinstance(row.get("worst"), str) else ""
        max_text = (
            f"{f(row.get('max_abs_diff'))} ({worst})" if worst else f(row.get("max_abs_diff"))
        )
        lines.append(
            f"| {name} | {row.get('unit', '')} | {int(row['n'])} | {f(row.get('median_diff'))} | "
            f"{f(row.get('median_abs_diff'))} | {max_text} | {f(row.get('agreement'), 2)} |"
        )
    return "\n".join(lines)
