"""Training with the in-memory tensor cache of ``DensityDataset`` against streaming from the store.

Usage::

    .venv/bin/python bench/tensor_cache.py                   # 400 materials, 4 epochs, 2 rounds
    .venv/bin/python bench/tensor_cache.py --samples 800 --epochs 6 --rounds 3

Trains the same network (size ``compact``, inputs ``density+structure``, one thread, no early
stopping) on the first SAMPLES materials of ``gpaw-v1,gpaw-scf-v1`` with the cache off
(``RHOPROP_TENSOR_CACHE_MB=0``: every epoch reads and decompresses the tensors from the HDF5
shards) and on (the default), alternating, in one process, and prints each wall time, the best of
each and their ratio, and checks that both give the same validation MAE (the cache must not change
what is learned). The first round also warms the operating system's file cache, so the ratio is
the decompression saved, not the disk. Say what else ran on the machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    """Time both settings, alternating, and print the ratio."""
    from rhoprop.train.config import TrainConfig
    from rhoprop.train.data import open_store
    from rhoprop.train.fit import train

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    dataset = "gpaw-v1,gpaw-scf-v1"
    ids = list(open_store(dataset).ids)
    n = args.samples
    parts = {"train": ids[:n], "val": ids[n : n + n // 8], "test": ids[n + n // 8 : n + n // 8 + 8]}
    config = TrainConfig(model="compact", epochs=args.epochs, patience=0, lr=2e-3, batch_size=16,
                         mc_samples=1, progress=False, threads=1,
                         targets=("volume_per_atom", "band_gap"))  # fmt: skip
    times: dict[str, list[float]] = {"stream": [], "cache": []}
    maes: dict[str, set[float]] = {"stream": set(), "cache": set()}
    for _ in range(args.rounds):
        for name, megabytes in (("stream", "0"), ("cache", "2048")):
            os.environ["RHOPROP_TENSOR_CACHE_MB"] = megabytes
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                result = train(dataset, Path(tmp) / "run", config, parts=parts)
                times[name].append(time.perf_counter() - start)
            assert result is not None
            maes[name].add(round(float(result.val["volume_per_atom"]["mae"]), 6))
            print(f"{name}: {times[name][-1]:.1f} s", flush=True)
    best = {k: min(v) for k, v in times.items()}
    print(f"{n} materials x {args.epochs} epochs: streaming {best['stream']:.1f} s, cached "
          f"{best['cache']:.1f} s, ratio {best['stream'] / best['cache']:.2f}x")  # fmt: skip
    same = maes["stream"] == maes["cache"] and len(maes["cache"]) == 1
    print(f"validation volume MAE: {sorted(maes['stream'])} streaming, {sorted(maes['cache'])} "
          f"cached ({'identical' if same else 'DIFFERENT'})")  # fmt: skip
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
