"""Benchmark training and inference throughput of the MSA-3DCNN on CPU (or GPU when present).

For each model size, in the same run: samples/s of training (Lightning ``fit``, timed per epoch
after a warm-up epoch, so start-up is excluded) and of inference (``predict_batches``, one pass and
30 MC-dropout passes), once with the DataLoader streaming from the dataset store (HDF5, what
``rhoprop train`` does) and once from a preloaded in-memory tensor (the upper bound a loader can
reach), plus the loader alone (no model). Each configuration runs in its own process so that its
peak RSS (MB) is its own. Prints a markdown table.

The store: ``--dataset`` (a store path or built-in name), or by default ``--samples`` CHGCARs of
real crystal structures written by ``tests/helpers/densities.py`` and built at n = ``--n``.

Usage: .venv/bin/python bench/train.py [--sizes tiny,small,default] [--threads 1,2] [--samples 64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_store(root: Path, samples: int, n: int) -> Path:
    """A store of ``samples`` generated CHGCARs (real structures) at n, with a 100/0/0-ish split."""
    sys.path.insert(0, str(REPO / "tests"))
    from rhoprop.data import DatasetStore, build_dataset, make_split
    from rhoprop.grid.settings import StandardizeSettings

    from helpers.densities import write_dataset_folder, write_labels_csv

    _, rows = write_dataset_folder(root / "in", samples, layout="flat")
    write_labels_csv(root / "labels.csv", rows)
    build_dataset(root / "in", root / "labels.csv", root / "ds", StandardizeSettings(n=n), progress=False)
    make_split(DatasetStore(root / "ds"), fractions=(0.8, 0.2, 0.0))
    return root / "ds"


class InMemory:
    """The store's samples preloaded as tensors, in DensityDataset's item format."""

    def __init__(self, dataset) -> None:  # noqa: ANN001 - a DensityDataset
        items = [dataset[i] for i in range(len(dataset))]
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def run_one(spec: dict) -> dict:
    """One configuration in this process: returns samples/s and peak RSS."""
    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    from rhoprop.data import DatasetStore, DensityDataset
    from rhoprop.models import build_model
    from rhoprop.train.config import TrainConfig
    from rhoprop.train.data import select_tasks, split_ids
    from rhoprop.train.fit import make_trainer
    from rhoprop.train.inference import predict_batches
    from rhoprop.train.module import RhopropModule

    torch.set_num_threads(spec["threads"])
    store = DatasetStore(spec["store"])
    ids = split_ids(store, "default")["train"]
    tasks = select_tasks(store, ("band_gap", "is_metal"), ids)
    dataset = DensityDataset(store, ids, [t.name for t in tasks])
    if spec["source"] == "memory":
        dataset = InMemory(dataset)
    batch = spec["batch_size"]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if spec["what"] == "loader":
        t0 = time.perf_counter()
        for _ in range(spec["epochs"]):
            for _ in DataLoader(dataset, batch_size=batch, shuffle=True):
                pass
        rate = spec["epochs"] * len(dataset) / (time.perf_counter() - t0)
        return {"rate": rate, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss0": rss0}
    settings = store.settings
    model = build_model(spec["size"], tasks, in_channels=settings.n_channels, side_features=settings.n_side_features)
    config = TrainConfig(model=spec["size"], epochs=spec["epochs"] + 1, batch_size=batch, progress=False,
                         patience=0, accelerator=spec["accelerator"], devices="1", augment=False)
    loader = DataLoader(dataset, batch_size=batch, shuffle=spec["what"] == "train")
    if spec["what"] == "train":
        times: list[float] = []

        class Timer(L.Callback):
            def on_train_epoch_start(self, trainer, module) -> None:  # noqa: ANN001
                times.append(time.perf_counter())

            def on_train_epoch_end(self, trainer, module) -> None:  # noqa: ANN001
                times[-1] = time.perf_counter() - times[-1]

        with tempfile.TemporaryDirectory() as tmp:
            trainer, _ = make_trainer(Path(tmp), config, len(loader))
            trainer.callbacks.append(Timer())
            trainer.fit(RhopropModule(model, config), loader, loader)
        rate = len(dataset) / (sum(times[1:]) / len(times[1:]))  # first epoch is the warm-up
    else:
        device = "cuda" if spec["accelerator"] == "gpu" else "cpu"
        predict_batches(model, [next(iter(loader))], mc_samples=spec["mc"], device=device)
        t0 = time.perf_counter()
        for _ in range(spec["epochs"]):
            predict_batches(model, loader, mc_samples=spec["mc"], device=device)
        rate = spec["epochs"] * len(dataset) / (time.perf_counter() - t0)
    return {"rate": rate, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss0": rss0,
            "params": model.num_parameters}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", help="Store path or built-in name (default: generate one).")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--sizes", default="tiny,small,default")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return
    tmp = tempfile.TemporaryDirectory()
    if args.dataset:
        from rhoprop.datasets import resolve

        store = str(resolve(args.dataset))
    else:
        store = str(build_store(Path(tmp.name), args.samples, args.n))
    from rhoprop.data import DatasetStore

    ds = DatasetStore(store)
    print(f"store: {store} ({len(ds)} samples, n = {ds.settings.n}, channels {ds.settings.channels}, "
          f"dtype {ds.store_settings.dtype})")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, "
          f"Python {platform.python_version()}")

    def one(**spec: object) -> dict:
        spec = {"store": store, "batch_size": args.batch_size, "epochs": args.epochs,
                "accelerator": args.accelerator, "mc": 1, **spec}
        out = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True,
                             env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-3000:])
        return json.loads(out.stdout.strip().splitlines()[-1])

    rows = []
    for threads in map(int, args.threads.split(",")):
        loader = {src: one(what="loader", source=src, threads=threads) for src in ("store", "memory")}
        rows.append(("loader only", "—", threads, loader["store"], loader["memory"]))
        for size in args.sizes.split(","):
            for what, mc, label in (("train", 1, "train"), ("infer", 1, "inference"), ("infer", 30, "inference, 30 MC")):
                res = {src: one(what=what, source=src, size=size, threads=threads, mc=mc) for src in ("store", "memory")}
                rows.append((label, f"{size} ({res['store']['params']:,})", threads, res["store"], res["memory"]))
        print(f"load average after {threads} thread(s): {os.getloadavg()[0]:.1f}", flush=True)
    print("\n| what | model (parameters) | threads | store loader samples/s | in-memory samples/s | "
          "store / memory | peak RSS store / memory (MB) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for label, model, threads, s, m in rows:
        print(f"| {label} | {model} | {threads} | {s['rate']:.1f} | {m['rate']:.1f} | {s['rate'] / m['rate']:.2f} "
              f"| {s['rss_mb']:.0f} / {m['rss_mb']:.0f} |")
    tmp.cleanup()


if __name__ == "__main__":
    main()
