"""Consistency of the fast tier ``gpaw-scf-v1`` with ``gpaw-v1`` on the same materials.

Usage::

    .venv/bin/python bench/tier_consistency.py --n 30 --out data-gen/tier-consistency --workers 1
    .venv/bin/python bench/tier_consistency.py --ids Si-diamond,MgO-rocksalt --out /tmp/tc
    .venv/bin/python bench/tier_consistency.py --n 0 --table-only --out data-gen/gpaw-scf-v1

Recomputes ``gpaw-v1`` materials (``--ids``, or ``--n`` of them spread over prototypes, spin and
metal/non-metal by :func:`rhoprop.dft.consistency.spread_ids`) with ``gpaw-scf-v1``, together with
the fast tier's references of their elements (formation energies need them), into ``--out``
(resumable), then prints per label the median and largest difference (fast tier − gpaw-v1) and,
with ``--store`` (default the built-in ``gpaw-v1``, which holds the gold densities), the relative
L1 difference of the standardized tensors. ``--table-only`` skips the computation; ``--n 0`` with
``--table-only`` compares every crystal both folders hold (the fast tier's own batch folder computes
many ``gpaw-v1`` materials under the same ids), phonon labels included where both have them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main() -> int:
    """Recompute the chosen materials with the fast tier, then print the comparison table."""
    from rhoprop import datasets
    from rhoprop.dft.consistency import (
        compare_tiers,
        consistency_markdown,
        recompute_with_fast_tier,
        spread_ids,
    )

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gold", type=Path, default=Path("data-gen/gpaw-v1"))
    parser.add_argument("--out", type=Path, required=True, help="fast-tier output folder")
    parser.add_argument("--ids", default="", help="comma-separated gpaw-v1 ids")
    parser.add_argument(
        "--n", type=int, default=30, help="without --ids: this many, spread out (0: all in common)"
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--store", default="gpaw-v1", help="store of the gold densities ('' = none)"
    )
    parser.add_argument("--table-only", action="store_true", help="compare what --out holds")
    args = parser.parse_args()
    ids: list[str] | None = [i for i in args.ids.split(",") if i] or (
        spread_ids(args.gold, args.n) if args.n else None
    )
    if not args.table_only:
        if ids is None:
            parser.error("--n 0 (every material in common) needs --table-only")
        report = recompute_with_fast_tier(args.gold, args.out, ids, workers=args.workers)
        print(
            f"computed {len(report.computed)}, skipped {len(report.skipped)}, "
            f"failed {len(report.failed)}: {report.failed}"
        )
    store = datasets.load(args.store) if args.store else None
    print(consistency_markdown(compare_tiers(args.gold, args.out, ids, store)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
