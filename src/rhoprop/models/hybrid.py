"""Hybrid predictions: several models' raw outputs averaged with equal weights.

rhoprop's hybrid model (``hybrid-<inputs>`` in ``rhoprop benchmark``) averages the MSA-3DCNN with
a gradient boosting fitted on the same global features the network reads beside the density (the
density invariants, and with ``density+structure`` the electrons per atom and the composition).
The two learners make different errors: the network is best where the spatial density matters
(volume, mass density, crystal system), the gradient boosting where a few global numbers carry
the label (total energy, band gap, bandwidth), and their mean beats both on most targets of the
cross-validated benchmarks (``docs/benchmarks.md``). Equal weights need no data to choose them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from rhoprop.errors import SettingsError


def average_predictions(
    members: Sequence[Mapping[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    """Equal-weight mean of the members' raw outputs, per target they all predict.

    Raw outputs are what a model returns before rhoprop's reporting rules
    (:func:`~rhoprop.data.labels.consistent_predictions`): regression values, the probability of
    a binary target, the class probabilities of a multiclass one (rows, so the mean of
    probability rows is a probability row). A target missing from a member is left out; members
    whose arrays for one target differ in shape are refused."""
    if not members:
        raise SettingsError("average_predictions needs at least one member's predictions")
    names = [n for n in members[0] if all(n in m for m in members[1:])]
    out: dict[str, np.ndarray] = {}
    for name in names:
        arrays = [np.asarray(m[name], dtype=float) for m in members]
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise SettingsError(
                f"the members' predictions of {name!r} differ in shape {sorted(shapes)}; a hybrid "
                "averages predictions of the same samples"
            )
        out[name] = np.mean(arrays, axis=0)
    return out
