"""Prediction time of the pretrained hybrid against its network half alone.

Usage::

    .venv/bin/python bench/predict_hybrid.py                 # 3 rounds, 30 MC-dropout samples
    .venv/bin/python bench/predict_hybrid.py --rounds 5 --mc-samples 10

Writes the network half of ``rhoprop predict builtin``'s hybrid to a temporary model directory
(its weights, settings and uncertainty record as they are inside the hybrid), then times
``predict_paths`` on the real VASP fixture files with each model, alternating, in one process,
and prints each wall time, the best of each and their ratio. What the hybrid adds is one pass of
its 6,000 trees over each file's global features (the network's MC-dropout passes are the same).
Say what else ran on the machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "vasp"


def main() -> int:
    """Time both models, alternating, and print the ratio."""
    from rhoprop.models.hybrid import Hybrid
    from rhoprop.models.io import ModelBundle, load_model, save_model
    from rhoprop.train.predict import predict_paths
    from rhoprop.train.runs import model_dirs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mc-samples", type=int, default=30)
    args = parser.parse_args()
    files = [FIXTURES / "CHGCAR.LiCoO2_spin.gz"]
    hybrid_dir = model_dirs("builtin")[0]
    bundle = load_model(hybrid_dir)
    if not isinstance(bundle.model, Hybrid):
        print(f"{hybrid_dir} is not a hybrid", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        extra = {k: v for k, v in bundle.extra.items() if k != "hybrid"}
        network_dir = save_model(
            Path(tmp) / "network",
            ModelBundle(bundle.model.network, bundle.standardize, bundle.training,
                        bundle.uncertainty, extra),
        )  # fmt: skip
        times: dict[str, list[float]] = {"network": [], "hybrid": []}
        for _ in range(args.rounds):
            for name, model in (("network", network_dir), ("hybrid", hybrid_dir)):
                t0 = time.perf_counter()
                result = predict_paths(model, files, mc_samples=args.mc_samples)
                times[name].append(time.perf_counter() - t0)
                assert not result.errors, result.errors
                print(f"{name}: {times[name][-1]:.2f} s", flush=True)
    best = {k: min(v) for k, v in times.items()}
    print(
        f"best: network {best['network']:.2f} s, hybrid {best['hybrid']:.2f} s per "
        f"{len(files)} file(s) with {args.mc_samples} MC samples, including loading the model; "
        f"hybrid/network {best['hybrid'] / best['network']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
