"""Benchmark: ``rhoprop dataset build`` versus the plain loop a user would otherwise write.

The plain loop, per file: pymatgen ``Chgcar.from_file`` + pyrho
``ChargeDensity.from_pmg(chgcar).get_data_in_cube(edge, n)`` + ``numpy.save``. rhoprop: the library
call behind ``rhoprop dataset build`` (read, standardize, hash, HDF5 shards) with 1 and 2 workers.
The plain loop also runs spread over a pool of 2 processes: what two processes can gain over one on
the machine for this work, the ceiling against which rhoprop's 2 workers are judged (1.39-1.91x on
the project's 2-vCPU VM, depending on the run).
All variants run on the same files in the same invocation, each in a fresh child process (so that
peak memory is measured per variant), interleaved over ``--repeat`` rounds; the median time of each
is reported as a ratio to the plain loop.

Files: ``--files DIR`` (any folder of density files), or CHGCARs generated into a temporary
folder: periodic two-shell valence densities on real crystal prototypes (some spin-polarized) on
grids of about ``--spacing`` Å, plus copies of the real VASP fixture CHGCAR.LiCoO2_spin.gz
(0.088 Å) when it is present. Presets: ``--preset small`` (400 files at 0.1 Å, 0.3-1.3 MB
each: per-file overheads dominate) and ``--preset realistic`` (120 files at 0.05 Å, 10^5-10^6
values and 2-20 MB each, like VASP's fine FFT grids: the parse dominates). Every fourth generated
file is gzipped unless ``--plain``.

Besides wall time, each variant's CPU time (its process and its pool workers) is reported: on a
shared machine the wall time of a 2-worker run depends on what else holds the cores.

``--baseline-src DIR`` adds the same calls run from an older source tree (``pool-cubic-w1/w2``), in
the same rounds: how the Dask local cluster (2 workers) compares with the process pool it replaced.
``--preset large`` (the small set, each file hard-linked under 4 ids: 1600 files) makes a 2-worker
build last several seconds (a real one lasts minutes to days), so that the cluster's start and
close weigh less than on the small sets.

    git archive e30b9c4 src | tar -x -C /tmp/pool
    .venv/bin/python bench/preprocess.py --preset large --plain --baseline-src /tmp/pool/src \
        --variants plain-loop,plain-loop-p2,pool-cubic-w2,rhoprop-cubic-w2 --repeat 5

    .venv/bin/python bench/preprocess.py --preset small --plain        # 3 rounds
    .venv/bin/python bench/preprocess.py --preset realistic --repeat 5
    .venv/bin/python bench/preprocess.py --files my_chgcars --repeat 1 --json result.json
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO.parent / "shared" / "fixtures" / "vasp" / "CHGCAR.LiCoO2_spin.gz"
#: rhoprop-<interpolation>-w<workers>: rhoprop's default cubic B-spline sampling, or the trilinear
#: sampling pyrho's get_data_in_cube does (same accuracy class as the plain loop). plain-loop-p2:
#: the plain loop spread over a pool of 2 processes, which is what a user parallelizing it writes
#: and the most two processes gain on the machine for this work (the ceiling for 2 workers).
VARIANTS = (
    "plain-loop",
    "plain-loop-p2",
    "rhoprop-cubic-w1",
    "rhoprop-cubic-w2",
    "rhoprop-linear-w1",
    "rhoprop-linear-w2",
)
#: pool-<interpolation>-w<workers>: the same call run from an older rhoprop source tree
#: (``--baseline-src``), e.g. the process pool the Dask local cluster replaced (commit e30b9c4).
BASELINE_VARIANTS = ("pool-cubic-w2", "pool-cubic-w1")
#: rhoprop-cubic-w2-single: the Dask local cluster with one file per task (no batching).
EXTRA_VARIANTS = ("rhoprop-cubic-w2-single",)

#: Generated file sets: (number of files, grid spacing in Å). Each variant runs 1.5-5 s on them, so
#: that pool start-up and the last shard's write weigh what they do in a real build.
PRESETS = {"small": (400, 0.1, 1), "realistic": (120, 0.05, 1), "large": (400, 0.1, 4)}


def generate(folder: Path, count: int, spacing: float, plain: bool = False) -> None:
    """Write ``count`` realistic CHGCARs into ``folder`` (plus fixture copies when available).

    Every fourth generated file and the fixture copies are gzipped unless ``plain``.
    """
    sys.path.insert(0, str(REPO / "tests"))
    from helpers.densities import structure_for, write_chgcar

    n_fixture = 4 if FIXTURE.is_file() else 0
    for i in range(count - n_fixture):
        _, structure = structure_for(i, seed=7)
        suffix = ".CHGCAR.gz" if i % 4 == 0 and not plain else ".CHGCAR"
        write_chgcar(folder / f"bench-{i:04d}{suffix}", structure, spacing)
    for k in range(n_fixture):
        if plain:
            with gzip.open(FIXTURE, "rb") as src, open(folder / f"licoo2-{k}.CHGCAR", "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            shutil.copy(FIXTURE, folder / f"licoo2-{k}.CHGCAR.gz")


def run_variant(variant: str, files: Path, out: Path, n: int, edge: float) -> dict[str, float]:
    """Run one variant here (in a child process) and return its time and peak memory."""
    import numpy  # noqa: F401 - every variant's imports are loaded before the clock starts
    import pymatgen.io.vasp  # noqa: F401
    import pyrho.charge_density  # noqa: F401

    import rhoprop
    import rhoprop.grid
    import rhoprop.grid._spline
    import rhoprop.io
    import rhoprop.io._kernels  # imports (and numba's kernels) are not timed, in any variant

    with contextlib.suppress(ImportError):
        import distributed  # noqa: F401 - Dask's import (1.4 s here) is not timed either
    from rhoprop.data import build_dataset, find_density_files
    from rhoprop.grid.settings import StandardizeSettings

    paths = find_density_files(files)
    rss_start = _vm_rss_mb()
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    n_ok = 0
    if variant == "plain-loop":
        out.mkdir(parents=True)
        n_ok = sum(_plain_one((k, path, out, edge, n)) for k, path in enumerate(paths))
    elif variant == "plain-loop-p2":
        out.mkdir(parents=True)
        jobs = [(k, path, out, edge, n) for k, path in enumerate(paths)]
        with multiprocessing.get_context("fork").Pool(2) as pool:
            n_ok = sum(pool.imap_unordered(_plain_one, jobs))
    else:
        _, interpolation, w, *single = variant.split("-")  # rhoprop-... or pool-... (baseline)
        if single:
            import rhoprop.data.dispatch

            rhoprop.data.dispatch.BATCH_FILES = 1
        settings = StandardizeSettings(n=n, edge=edge, interpolation=interpolation)
        workers = int(w[1:])
        report = build_dataset(files, None, out, settings, workers=workers, progress=False)
        n_ok = report.n_added
    seconds = time.perf_counter() - t0
    deadline = time.monotonic() + 30
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.01)  # reap the pool's workers so that their CPU time is counted
    cpu = _cpu_seconds() - cpu0
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"seconds": seconds, "cpu_s": cpu, "n_ok": n_ok, "n_files": len(paths),
            "rss_start_mb": rss_start,
            "peak_rss_mb": own,
            "peak_worker_rss_mb": children if variant.endswith(("w2", "p2")) else 0.0,
            "output_mb": size / 1e6, "rhoprop": str(Path(rhoprop.__file__).parent)}  # fmt: skip


#: The plain loop's last CHGCAR and cube, kept until the next file as a loop's variables are: freed
#: on return, glibc trims its heap and faults it back in for the next file (measured, small set:
#: 4.7x the page faults and 1.6-2x the time of the same loop written inline).
_LAST: list[object] = []


def _plain_one(job: tuple[int, Path, Path, float, int]) -> int:
    """The plain loop's body for one file: 1 when its cube was saved, 0 when it failed."""
    import numpy as np
    from pymatgen.io.vasp import Chgcar
    from pyrho.charge_density import ChargeDensity

    k, path, out, edge, n = job
    try:
        chgcar = Chgcar.from_file(path)
        cube = ChargeDensity.from_pmg(chgcar).get_data_in_cube(edge, n)
    except Exception as exc:  # a plain loop that survives a bad file
        print(f"plain loop: {path}: {exc}", file=sys.stderr)
        return 0
    np.save(out / f"{k:05d}.npy", cube.astype(np.float32))
    _LAST[:] = [chgcar, cube]
    return 1


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (pool workers), s."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _vm_rss_mb() -> float:
    """Resident memory of this process now (MB), from /proc (0 where unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=Path, help="folder of density files (default: generate)")
    parser.add_argument(
        "--preset", choices=tuple(PRESETS), default="small", help="generated file set"
    )
    parser.add_argument("--count", type=int, help="files to generate (default: the preset's)")
    parser.add_argument(
        "--spacing", type=float, help="grid spacing of generated files, Å (default: the preset's)"
    )
    parser.add_argument("--plain", action="store_true", help="generate no gzipped files")
    parser.add_argument(
        "--copies", type=int, help="hard links of each generated file under other ids (default: 1)"
    )
    parser.add_argument("--n", type=int, default=32, help="points per cube edge")
    parser.add_argument("--edge", type=float, default=10.0, help="cube edge, Å")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--variants", help="comma-separated subset of the variants, in this order (default: all)"
    )
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="an older rhoprop's src/ folder: adds its variants (pool-cubic-w1, pool-cubic-w2), "
        "run "
        "with it first on PYTHONPATH, e.g. `git archive e30b9c4 src | tar -x -C /tmp/pool`",
    )
    choices = VARIANTS + BASELINE_VARIANTS + EXTRA_VARIANTS
    parser.add_argument("--child", choices=choices, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.count = args.count or PRESETS[args.preset][0]
    args.spacing = args.spacing or PRESETS[args.preset][1]
    args.copies = args.copies or PRESETS[args.preset][2]
    if args.child:
        print(json.dumps(run_variant(args.child, args.files, args.out, args.n, args.edge)))
        return

    work = Path(tempfile.mkdtemp(prefix="rhoprop-bench-"))
    try:
        files = args.files
        if files is None:
            files = work / "files"
            files.mkdir()
            t = time.perf_counter()
            generate(files, args.count, args.spacing, args.plain)
            for k in range(1, args.copies):
                for p in sorted(files.glob("*CHGCAR*")):
                    if not p.name.startswith("copy"):
                        os.link(p, files / f"copy{k}-{p.name}")
            print(
                f"generated {args.count} files in {time.perf_counter() - t:.1f} s", file=sys.stderr
            )
        input_mb = sum(p.stat().st_size for p in files.rglob("*") if p.is_file()) / 1e6
        n_gzipped = sum(1 for _ in files.rglob("*.gz"))
        for p in files.rglob("*"):  # warm the page cache so no variant pays for the first read
            if p.is_file():
                p.read_bytes()
        load_before = os.getloadavg()
        variants = VARIANTS + (BASELINE_VARIANTS if args.baseline_src else ())
        if args.variants:
            variants = tuple(v.strip() for v in args.variants.split(","))
            unknown = set(variants) - set(choices)
            if unknown or ("plain-loop" not in variants):
                parser.error(
                    f"--variants: unknown {sorted(unknown)} or no plain-loop (the baseline)"
                )
        results: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
        for r in range(args.repeat):
            for variant in variants:
                out = work / f"out-{variant}-{r}"
                cmd = [sys.executable, __file__, "--child", variant, "--files", str(files),
                       "--out", str(out), "--n", str(args.n), "--edge", str(args.edge)]  # fmt: skip
                env = dict(os.environ)
                if variant.startswith("pool-"):
                    if args.baseline_src is None:
                        parser.error(f"{variant} needs --baseline-src")
                    env["PYTHONPATH"] = os.pathsep.join(
                        [str(args.baseline_src.resolve()), env.get("PYTHONPATH", "")]
                    )
                done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
                results[variant].append(json.loads(done.stdout.strip().splitlines()[-1]))
                shutil.rmtree(out)
                print(
                    f"round {r}: {variant:11s} {results[variant][-1]['seconds']:.2f} s",
                    file=sys.stderr,
                )
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    median = {v: statistics.median(x["seconds"] for x in results[v]) for v in variants}
    base = median["plain-loop"]
    p2 = median.get("plain-loop-p2", float("nan"))
    n_files = results["plain-loop"][0]["n_files"]
    summary = {
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in load_after],
        "n_files": n_files,
        "input_mb": round(input_mb, 1),
        "settings": {
            "n": args.n,
            "edge": args.edge,
            "repeat": args.repeat,
            "plain": args.plain,
            "spacing": args.spacing if args.files is None else None,
        },
        "n_gzipped": n_gzipped,
        "variants": {
            v: {
                "median_s": round(median[v], 3),
                "median_cpu_s": round(statistics.median(x["cpu_s"] for x in results[v]), 3),
                "all_s": [round(x["seconds"], 3) for x in results[v]],
                "files_per_s": round(n_files / median[v], 2),
                "throughput_vs_plain": round(base / median[v], 3),
                "throughput_vs_plain_p2": round(p2 / median[v], 3),
                "time_vs_plain": round(median[v] / base, 3),
                "rss_after_imports_mb": round(max(x["rss_start_mb"] for x in results[v]), 1),
                "peak_rss_mb": round(max(x["peak_rss_mb"] for x in results[v]), 1),
                "peak_worker_rss_mb": round(max(x["peak_worker_rss_mb"] for x in results[v]), 1),
                "output_mb": round(results[v][0]["output_mb"], 2),
                "n_ok": results[v][0]["n_ok"],
                "rhoprop": results[v][0]["rhoprop"],
            }
            for v in variants
        },
    }
    v = summary["variants"]
    summary["targets"] = {}
    for name in ("cubic", "linear"):
        w1, w2 = v.get(f"rhoprop-{name}-w1"), v.get(f"rhoprop-{name}-w2")
        if w1 and w2:
            summary["targets"][f"{name}: w2 throughput >= 1.6x plain and w1 time <= 1.2x plain"] = (
                w2["throughput_vs_plain"] >= 1.6 and w1["time_vs_plain"] <= 1.2
            )
        if w2 and "plain-loop-p2" in v:
            summary["targets"][f"{name}: w2 at least as fast as the plain loop in 2 processes"] = (
                w2["throughput_vs_plain_p2"] >= 1.0
            )
    for w in ("w1", "w2"):
        new, old = v.get(f"rhoprop-cubic-{w}"), v.get(f"pool-cubic-{w}")
        if new and old:
            summary[f"cubic-{w}: time vs the baseline tree"] = round(
                new["median_s"] / old["median_s"], 3
            )
            summary["targets"][f"cubic {w}: within 10 % of the baseline tree's time"] = (
                new["median_s"] <= 1.1 * old["median_s"]
            )
    print(json.dumps(summary, indent=2))
    print("\n| variant | median s | CPU s | files/s | vs plain loop | vs plain loop, 2 processes "
          "| RSS after imports / peak MB | worker peak MB | output MB |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for v, s in summary["variants"].items():
        worker = f"{s['peak_worker_rss_mb']:.0f}" if s["peak_worker_rss_mb"] else "-"
        speed = f"{s['throughput_vs_plain']:.2f}x"
        print(f"| {v} | {s['median_s']:.2f} | {s['median_cpu_s']:.2f} "
              f"| {s['files_per_s']:.1f} | {speed} | {s['throughput_vs_plain_p2']:.2f}x "
              f"| {s['rss_after_imports_mb']:.0f} / {s['peak_rss_mb']:.0f} | {worker} "
              f"| {s['output_mb']:.1f} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
