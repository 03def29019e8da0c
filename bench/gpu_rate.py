"""Benchmark: training samples per second of the MSA-3DCNN on a GPU, the rate a loader must feed.

Synthetic standardized tensors (one channel, n = 32, as ``rhoprop dataset build`` stores them by
default) already on the device, five regression targets; a full training step (forward, masked
MSE, backward, AdamW) per batch, fp32 and bf16 autocast, for the ``default`` and ``large`` sizes.
The number is the ceiling of training throughput: a loader slower than it starves the GPU
(docs/scaling.md compares it with the store's rate). Runs where rhoprop's data stack (pymatgen,
ASE, spglib) is not installed, e.g. a bare GPU machine: the model needs none of it, so missing
packages are stood in for by empty modules at import.

    python3 bench/gpu_rate.py --sizes default,large --batches 32,128 --json rate.json
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import importlib.util
import json
import sys
import time
import types
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
_STAND_INS = ("pymatgen", "pyrho", "ase", "spglib", "monty", "tensorboardX")


class _Anything(type):
    """A class whose attributes and calls give more of itself (a stand-in's contents)."""

    def __getattr__(cls, name: str) -> Any:
        return cls

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls

    def _number(cls, *args: Any) -> float:
        return 1.0

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _number
    __truediv__ = __rtruediv__ = __pow__ = __rpow__ = __neg__ = __float__ = _number


class _StandIn(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything(name, (), {})


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name.split(".")[0] in _MISSING:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec: Any) -> types.ModuleType:
        module = _StandIn(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


_MISSING = {
    m for m in _STAND_INS if "--stand-ins" in sys.argv or importlib.util.find_spec(m) is None
}
if _MISSING:
    sys.meta_path.insert(0, _StandInFinder())


def rate(size: str, batch: int, bf16: bool, steps: int, device: str) -> float:
    """Training samples per second (median of 3 timed blocks of ``steps`` steps)."""
    import torch

    from rhoprop.models import build_model
    from rhoprop.models.heads import TaskSpec

    tasks = [TaskSpec(f"t{i}", "regression", "eV") for i in range(5)]
    model = build_model(size, tasks).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 1, 32, 32, 32, device=device)
    y = torch.randn(batch, 5, device=device)

    def step() -> None:
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
            loss = sum(((out[t.name].float().reshape(-1) - y[:, i]) ** 2).mean()
                       for i, t in enumerate(tasks))  # fmt: skip
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    times = []
    for _ in range(3):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(steps):
            step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return batch * steps / sorted(times)[1]


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="default,large")
    parser.add_argument("--batches", default="32,128")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--stand-ins", action="store_true", help="stand in for the data stack")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cudnn.benchmark = True
    rows = []
    for size in args.sizes.split(","):
        for batch in map(int, args.batches.split(",")):
            for bf16 in (False, True):
                r = rate(size, batch, bf16, args.steps, device)
                rows.append(
                    {"size": size, "batch": batch, "bf16": bf16, "samples_per_s": round(r, 1)}
                )
                print(json.dumps(rows[-1]), flush=True)
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    result = {
        "device": name,
        "torch": torch.__version__,
        "stand_ins": sorted(_MISSING),
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
