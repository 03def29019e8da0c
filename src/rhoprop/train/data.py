"""From a dataset store to what training needs: targets, splits, datasets, statistics, a profile.

The *training profile* records what the model saw (code, elements, valence electrons per
element, native grid spacing) so that prediction can warn when a new density differs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rhoprop.data.composite import AnyStore, open_dataset, split_dataset_names
from rhoprop.errors import LabelTableError, RhopropError, SettingsError
from rhoprop.models.heads import TaskSpec


def open_store(dataset: str | os.PathLike[str]) -> AnyStore:
    """Open a dataset store from a path or a built-in name (``gpaw-v1``), or several as one from
    a comma-separated list (``gpaw-v1,gpaw-scf-v1``: a
    :class:`~rhoprop.data.composite.CompositeStore`)."""
    return open_dataset(dataset)


def dataset_label(dataset: str | os.PathLike[str]) -> str:
    """A short name for a dataset argument: the built-in name, else the folder name; for a list of
    stores (``"gpaw-v1,/data/my.rho"``) the names joined by commas (``"gpaw-v1,my.rho"``), so that
    reports never carry the machine's absolute paths."""

    def one(name: str) -> str:
        path = Path(name)
        return name if not path.exists() else path.resolve().name

    return ",".join(one(name) for name in split_dataset_names(dataset))


def select_tasks(store: AnyStore, requested: Sequence[str], ids: Sequence[str]) -> list[TaskSpec]:
    """TaskSpecs of the requested targets, or of every target with a label among ``ids`` when none
    requested."""
    known = store.targets
    if not known:
        raise LabelTableError(
            f"dataset {store.path} has no labelled targets; build it with a label table "
            "(`rhoprop dataset build ... --labels labels.csv`)"
        )
    unknown = [t for t in requested if t not in known]
    if unknown:
        raise LabelTableError(
            f"target(s) {unknown} are not in dataset {store.path}; its targets are {sorted(known)}"
        )
    labels = store.labels.loc[list(ids)]
    names = list(requested) or [t for t in known if labels[t].notna().any()]
    if not names:
        raise LabelTableError(
            f"none of the {len(ids)} training samples of {store.path} has a label (labels.csv "
            f"holds {int(store.labels.notna().any(axis=1).sum())} labelled ids of the store's "
            f"{len(store)}); rebuild the store with the label table whose ids match its density "
            "files"
        )
    empty = [t for t in names if not labels[t].notna().any()]
    if empty:
        raise LabelTableError(
            f"target(s) {empty} have no label in the training split of {store.path}; choose others"
        )
    return [TaskSpec.from_target(known[name]) for name in names]


def read_id_list(path: str | Path) -> list[str]:
    """Sample ids from a text file, one per line (blank lines and ``#`` comments ignored)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SettingsError(f"cannot read the id list {path}: {exc}") from exc
    ids = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    ids = [i for i in ids if i]
    if not ids:
        raise SettingsError(f"the id list {path} holds no id (one sample id per line)")
    return ids


def _select(store: AnyStore, term: str, only: str) -> np.ndarray:
    """Boolean mask over ``store.ids`` of one term of ``only``."""
    if term.startswith("ids:"):
        wanted = read_id_list(term[4:].strip())
        present = set(store.ids)
        absent = [i for i in wanted if i not in present]
        if absent:
            raise SettingsError(
                f"--only {only!r}: {len(absent)} id(s) of {term[4:].strip()} are not in "
                f"{store.path}, e.g. {absent[:3]}; was the list written for another dataset?"
            )
        chosen = set(wanted)
        return np.array([i in chosen for i in store.ids], dtype=bool)
    if term.startswith("labelled:"):
        target = term[len("labelled:") :].strip()
        if target not in store.targets:
            raise SettingsError(
                f"--only {only!r}: {target!r} is not a target of {store.path} "
                f"({', '.join(store.targets) or 'none'})"
            )
        return np.asarray(store.labels[target].reindex(store.ids).notna().to_numpy(), dtype=bool)
    negate = term.startswith("not ")
    name = term[4:].strip() if negate else term
    flags = ("has_spin",)
    if name in flags:
        values = np.asarray(store.column(name), dtype=bool)
        return ~values if negate else values
    if name in store.targets:
        if store.targets[name].kind != "binary":
            raise SettingsError(
                f"--only {only!r}: target {name!r} is {store.targets[name].kind}, not binary; "
                f"select by a flag ({', '.join(flags)}) or a binary target"
            )
        labels = store.labels[name].reindex(store.ids).to_numpy(dtype=float)
        return np.asarray(labels == (0.0 if negate else 1.0))
    binary = [t for t, spec in store.targets.items() if spec.kind == "binary"]
    raise SettingsError(
        f"--only {only!r}: {name!r} is neither a per-sample flag ({', '.join(flags)}) nor a "
        f"binary target of {store.path} ({', '.join(binary) or 'none'}); write NAME, "
        "'not NAME', 'labelled:TARGET' or 'ids:FILE', joined by ' and '"
    )


def subset_ids(store: AnyStore, only: str) -> list[str]:
    """The ids of ``store`` that ``only`` selects, in store order: ``""`` every sample; ``NAME``
    the samples where NAME is true, NAME being a per-sample flag of the store (``has_spin``: a spin
    density was stored, i.e. the material was computed spin-polarized) or a binary target (label
    1); ``not NAME`` the others (a sample without a label of a target is in neither);
    ``labelled:TARGET`` the samples with a label of TARGET (any kind of target);
    ``ids:FILE`` the samples listed in FILE (one id per line; every one must be in the store), which
    pins a study to a fixed set of materials while the store grows. Terms join with `` and ``
    (``has_spin and ids:study-ids.txt``).

    Raises SettingsError for an unknown NAME, a target that is not binary, an id list naming
    samples the store lacks, and when nothing is selected.
    """
    text = only.strip()
    if not text:
        return list(store.ids)
    chosen = np.ones(len(store.ids), dtype=bool)
    for term in text.split(" and "):
        chosen &= _select(store, term.strip(), only)
    ids = [i for i, keep in zip(store.ids, chosen, strict=True) if keep]
    if not ids:
        raise SettingsError(f"--only {only!r} selects no sample of {store.path}")
    return ids


def labels_digest(labels: Any, ids: Sequence[str], targets: Sequence[str]) -> str:
    """A short hash of the labels of ``targets`` for ``ids`` (in that order; missing labels
    included) in a store's label table (a pandas DataFrame indexed by id). Cached results keep it
    and are reused only while it is unchanged, so a corrected or newly merged label retrains what
    was fitted to (or scored on) it."""
    frame = labels.reindex(index=list(ids), columns=list(targets))

    def cell(value: Any) -> Any:
        if isinstance(value, str):
            return value
        number = float(value)
        return None if math.isnan(number) else round(number, 9)

    rows = [[cell(v) for v in row] for row in frame.itertuples(index=False)]
    payload = json.dumps({"ids": list(ids), "targets": list(targets), "labels": rows})
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def label_matrix(store: AnyStore, ids: Sequence[str], tasks: Sequence[TaskSpec]) -> np.ndarray:
    """(N, T) float64 labels of ``ids`` (NaN where missing; class codes for classification)."""
    return np.array(store.labels.loc[list(ids), [t.name for t in tasks]], dtype=np.float64)


def split_ids(store: AnyStore, name: str) -> dict[str, list[str]]:
    """Train/val/test ids of split ``name``, refusing an empty train or val part."""
    parts = store.splits(name)
    for part in ("train", "val"):
        if not parts[part]:
            raise SettingsError(
                f"split {name!r} of {store.path} has an empty {part} part; remake it with non-zero "
                "fractions (`rhoprop dataset split --fractions 0.8,0.1,0.1 --overwrite`)"
            )
    return parts


def side_features(store: AnyStore, ids: Sequence[str]) -> np.ndarray:
    """(N, S) side features of ``ids`` (lattice parameters in cell mode), without reading the
    tensors."""
    every = np.asarray(store.column("side"), dtype=np.float32).reshape(len(store), -1)
    return every[[store.index_of(i) for i in ids]]


def fit_valence(
    compositions: Sequence[dict[str, float]], electrons: Sequence[float]
) -> dict[str, Any]:
    """Per-element electrons per atom fitted to the densities' electron counts (least squares).

    Returns ``{"elements", "per_element": {el: e/atom}, "row_space": (r, E) orthonormal rows,
    "rms", "max"}``. Elements that only ever appear together (Na and Cl in NaCl) are not separately
    determined; ``row_space`` spans the compositions whose electron count the fit does determine
    (see :func:`expected_electrons`). With PAW pseudo densities the fitted values are the code's
    valence counts (GPAW Li: 1, VASP Li_sv: 3).
    """
    elements = sorted({el for comp in compositions for el in comp})
    if not elements:
        return {"elements": [], "per_element": {}, "row_space": [], "rms": 0.0, "max": 0.0}
    a = np.array([[comp.get(el, 0.0) for el in elements] for comp in compositions])
    b = np.asarray(electrons, dtype=np.float64)
    coef, *_ = np.linalg.lstsq(a, b, rcond=None)
    resid = a @ coef - b
    _, sv, vt = np.linalg.svd(a, full_matrices=False)
    rank = int(np.sum(sv > 1e-8 * sv.max()))
    return {
        "elements": elements,
        "per_element": {el: round(float(c), 4) for el, c in zip(elements, coef, strict=True)},
        "row_space": np.round(vt[:rank], 8).tolist(),
        "rms": float(np.sqrt(np.mean(resid**2))),
        "max": float(np.abs(resid).max()),
    }


def expected_electrons(valence: dict[str, Any], composition: dict[str, float]) -> float | None:
    """Electrons the fitted valence model gives a composition, or None when the fit cannot tell."""
    elements = valence.get("elements", [])
    if not elements or any(el not in elements for el in composition):
        return None
    c = np.array([composition.get(el, 0.0) for el in elements])
    basis = np.asarray(valence.get("row_space", []), dtype=float).reshape(-1, len(elements))
    if np.linalg.norm(c - basis.T @ (basis @ c)) > 1e-6 * np.linalg.norm(c):
        return None
    return float(sum(n * valence["per_element"][el] for el, n in composition.items()))


def determined_elements(valence: dict[str, Any]) -> list[str]:
    """Elements whose electrons per atom the valence fit determines on their own."""
    return [
        el
        for el in valence.get("elements", [])
        if expected_electrons(valence, {el: 1.0}) is not None
    ]


def gpaw_valence(symbols: Sequence[str]) -> dict[str, float] | None:
    """Valence electrons of GPAW's default PAW setups (from gpaw-data); None when unavailable."""
    try:
        from rhoprop.grid.atoms import free_atom

        return {el: float(free_atom(el).z_valence) for el in symbols}
    except RhopropError:
        return None


def training_profile(store: AnyStore, ids: Sequence[str], dataset: str) -> dict[str, Any]:
    """What the training samples were: dataset, code(s), elements, valence model, native grid
    spacing."""
    rows = [store.provenance(i) for i in ids]
    compositions, spacings = [], []
    for sid, row in zip(ids, rows, strict=True):
        structure = store.structure(sid)
        compositions.append({str(el): float(n) for el, n in structure.composition.items()})
        spacings.append(
            max(a / n for a, n in zip(structure.lattice.abc, row["native_shape"], strict=True))
        )
    codes = Counter(str(r["code"]) for r in rows)
    spacing = np.asarray(spacings)
    valence = fit_valence(compositions, [float(r["electrons"]) for r in rows])
    determined = determined_elements(valence)
    setups = gpaw_valence(determined) if determined else None
    valence["matches_gpaw_setups"] = setups is not None and all(
        abs(valence["per_element"][el] - setups[el]) < 0.05 for el in determined
    )
    return {
        "dataset": dataset,
        "n_train": len(ids),
        "code": codes.most_common(1)[0][0] if codes else "unknown",
        "codes": dict(codes),
        "elements": sorted({el for comp in compositions for el in comp}),
        "valence": valence,
        "grid_spacing": {"max": float(spacing.max()), "median": float(np.median(spacing))}
        if len(spacing)
        else {},
    }


#: Extra features already computed in this process:
#: (store path, number of samples, inputs) -> {id: row}.
_EXTRA_CACHE: dict[tuple[str, int, str], dict[str, np.ndarray]] = {}


def store_tiers(store: AnyStore) -> list[str]:
    """The data tiers of a store: a joined store's member names, or the one store's folder name
    (the name :func:`~rhoprop.data.composite.tier_label` gives it when joined)."""
    from rhoprop.data.composite import CompositeStore, tier_label

    if isinstance(store, CompositeStore):
        return list(store.tiers)
    return [tier_label(str(store.path))]


def sample_tiers(store: AnyStore, ids: Sequence[str]) -> list[str]:
    """The data tier of each of ``ids``."""
    from rhoprop.data.composite import CompositeStore

    if isinstance(store, CompositeStore):
        return [store.tier(i) for i in ids]
    return store_tiers(store) * len(ids)


def store_extra_features(
    store: AnyStore,
    ids: Sequence[str],
    inputs: str,
    batch: int = 64,
    tiers: Sequence[str] | None = None,
) -> np.ndarray:
    """(N, X) global features of ``ids`` for a model with ``inputs``
    (:mod:`rhoprop.models.features`).

    Computed from the stored tensors, structures and electron counts, in batches; rows already
    computed in this process for the same store are reused (a benchmark trains many models on one
    store). With ``+tier`` the one-hot columns are over ``tiers`` (a trained model's; default: the
    store's own, :func:`store_tiers`).
    """
    from rhoprop.models.features import base_inputs, extra_features, reads_tier, tier_features

    base = base_inputs(inputs)
    key = (str(Path(store.path).resolve()), len(store), base)
    cache = _EXTRA_CACHE.setdefault(key, {})
    todo = [i for i in dict.fromkeys(ids) if i not in cache]
    electrons = np.asarray(store.column("electrons"), dtype=np.float64)
    for start in range(0, len(todo), batch):
        chunk = todo[start : start + batch]
        x = np.stack([store.read(i).x for i in chunk])
        structures = [store.structure(i) for i in chunk] if base != "density" else []
        counts = [float(electrons[store.index_of(i)]) for i in chunk] if base != "density" else []
        rows = extra_features(x, store.settings, base, structures, counts)
        cache.update(zip(chunk, rows, strict=True))
    if not ids:
        return np.zeros((0, 0), dtype=np.float32)
    out = np.stack([cache[i] for i in ids])
    if reads_tier(inputs):
        chosen = list(tiers) if tiers else store_tiers(store)
        out = np.concatenate([out, tier_features(sample_tiers(store, ids), chosen)], axis=1)
    return out


def channel_statistics(store: AnyStore, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation ``(C,)`` of the stored tensors of ``ids``
    (float64)."""
    total = np.zeros(store.settings.n_channels)
    squares = np.zeros(store.settings.n_channels)
    count = 0
    for i in ids:
        x = store.read(i).x.astype(np.float64).reshape(store.settings.n_channels, -1)
        total += x.sum(axis=1)
        squares += (x**2).sum(axis=1)
        count += x.shape[1]
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(squares / max(count, 1) - mean**2, 0.0))
    return mean, np.where(std > 1e-8, std, 1.0)
