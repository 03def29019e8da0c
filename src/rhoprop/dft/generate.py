"""Resumable, parallel batch generation: one GPAW process per material, failures recorded, never fatal.

A material is done when ``DIR/results/<id>.json`` exists with the current protocol hash (it is
written atomically after every other output), so a killed run leaves nothing half-finished marked
done and a rerun skips exactly the finished materials. Failures go to ``DIR/failures.json``
(id → reason, protocol hash, time) and are not retried unless asked. Candidates the fast tier's
CHGNet screening skips go to ``DIR/skipped.json`` (id → reason, CHGNet energies, protocol hash,
screen settings); they are not failures and count as finished under the same protocol and screen.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import functools
import itertools
import json
import multiprocessing
import os
import re
import signal
import time
import traceback
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

from rhoprop.dft.material import Candidate, chgcar_path, compute, result_path
from rhoprop.dft.protocol import DFTProtocol, GPAWProtocol, SCFProtocol, load_protocol
from rhoprop.dft.prototypes import enumerate_prototypes, ready_first
from rhoprop.errors import RhopropError
from rhoprop.settings import atomic_write_text

STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar")
STRUCTURE_NAMES = ("POSCAR", "CONTCAR")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclasses.dataclass
class GenerateReport:
    """What one ``generate`` call did: ids computed now, skipped as already done, failed (id →
    reason), and screened out by the fast tier's CHGNet screening now (id → reason)."""

    computed: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    screened: dict[str, str] = dataclasses.field(default_factory=dict)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)


def _safe_id(text: str) -> str:
    """A file-name-safe material id."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text)


def read_structures(paths: Sequence[str | os.PathLike[str]]) -> list[Candidate]:
    """Candidates from CIF/POSCAR files or folders of them (ids = file stems; folders not recursed)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and (
                f.suffix.lower() in STRUCTURE_SUFFIXES or f.name in STRUCTURE_NAMES))
            if not found:
                raise RhopropError(
                    f"folder {p} has no structure files; expected *.cif, *.vasp, *.poscar, POSCAR or CONTCAR"
                )
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise RhopropError(f"structure path {p} does not exist; give CIF/POSCAR files or folders of them")
    candidates, ids = [], set()
    for f in files:
        try:
            structure = Structure.from_file(f)
        except Exception as exc:  # noqa: BLE001 - pymatgen raises many types on bad files
            raise RhopropError(f"cannot read a structure from {f}: {exc}; expected a CIF or POSCAR file") from exc
        mid = _safe_id(f.stem if f.name not in STRUCTURE_NAMES else f"{f.parent.name}_{f.name}")
        if mid in ids:
            raise RhopropError(f"two input structures map to the same id {mid!r} ({f}); rename one of them")
        ids.add(mid)
        candidates.append(Candidate(mid, structure, "user", str(f)))
    return candidates


def is_done(
    out_dir: str | Path, material_id: str, protocol: GPAWProtocol, stored: Collection[str] = ()
) -> bool:
    """True when the material's result JSON exists and ``protocol`` accepts it (see :meth:`DFTProtocol.accepts`).

    A crystal also needs its CHGCAR, unless its id is in ``stored`` (ids whose density a dataset store
    already holds, e.g. on a fresh clone where the committed results have no CHGCARs): a result whose
    density is nowhere is computed again.
    """
    out = Path(out_dir)
    path = result_path(out, material_id)
    if not path.exists():
        return False
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if record.get("kind") == "crystal" and material_id not in stored and not chgcar_path(out, material_id).exists():
        return False
    return protocol.accepts(record)


def finished_ids(
    out_dir: str | Path,
    candidates: Iterable[Candidate],
    protocol: GPAWProtocol,
    stored: Collection[str] = (),
    screen: Any = None,
) -> set[str]:
    """Ids of the candidates that ``generate`` would skip: done (see :func:`is_done`), failed before
    under an accepted protocol, or screened out before with this protocol and ``screen``."""
    failures = load_failures(out_dir)
    screened = screened_ids(out_dir, protocol, screen)
    finished = set()
    for c in candidates:
        old = failures.get(c.id)
        if (
            c.id in screened
            or is_done(out_dir, c.id, protocol, stored)
            or (
                old is not None
                and protocol.accepts(
                    {
                        **old,
                        "composition": {el.symbol: n for el, n in c.structure.composition.items()},
                    }
                )
            )
        ):
            finished.add(c.id)
    return finished


def load_skipped(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """The screening records of an output folder (``DIR/skipped.json``: id → record), or {}."""
    path = Path(out_dir) / "skipped.json"
    return json.loads(path.read_text()) if path.exists() else {}


def screened_ids(out_dir: str | Path, protocol: GPAWProtocol, screen: Any) -> set[str]:
    """Ids screened out before with this protocol and these screen settings (None: no screening)."""
    if screen is None:
        return set()
    wanted = screen.to_dict()
    return {
        mid
        for mid, rec in load_skipped(out_dir).items()
        if protocol.accepts(rec) and rec.get("screen") == wanted
    }


def prototype_candidates(
    out_dir: str | Path,
    limit: int = 0,
    protocol: GPAWProtocol | None = None,
    stored: Collection[str] = (),
    max_atoms: int = 8,
    screen: Any = None,
) -> list[Candidate]:
    """The protocol's enumeration (its first ``limit`` candidates, all for 0) in the order
    ``generate`` should run it for ``out_dir``: compounds needing no new reference calculation
    first (:func:`ready_first`).

    ``gpaw-v1``: :func:`~rhoprop.dft.prototypes.enumerate_prototypes`; ``gpaw-scf-v1``:
    :func:`~rhoprop.dft.enumerate.enumerate_scf_candidates` with at most ``max_atoms`` atoms per
    cell, and the candidates ``screen`` skipped before counted as finished.
    """
    protocol = protocol or DFTProtocol()
    if isinstance(protocol, SCFProtocol):
        from rhoprop.dft.enumerate import enumerate_scf_candidates, scf_reference_ids

        enumerated = list(
            itertools.islice(enumerate_scf_candidates(max_atoms=max_atoms), limit or None)
        )
        finished = finished_ids(out_dir, enumerated, protocol, stored, screen)
        return ready_first(enumerated, finished, references=scf_reference_ids)
    enumerated = list(itertools.islice(enumerate_prototypes(), limit or None))
    return ready_first(enumerated, finished_ids(out_dir, enumerated, protocol, stored))


def select_ids(candidates: Iterable[Candidate], ids: Sequence[str]) -> list[Candidate]:
    """The candidates named in ``ids``, in that order (e.g. to retry a few materials before the rest).

    Raises RhopropError naming every id that is not among the candidates, with the closest ids.
    """
    import difflib

    by_id = {c.id: c for c in candidates}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        hints = []
        for i in unknown:
            close = difflib.get_close_matches(i, list(by_id), n=3)
            hints.append(f"{i!r} (closest: {', '.join(close)})" if close else repr(i))
        raise RhopropError(f"{len(unknown)} of the ids given are not among the {len(by_id)} candidates: "
                           + "; ".join(hints))
    return [by_id[i] for i in dict.fromkeys(ids)]


def load_failures(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """The failures file of an output folder (id → record), empty when there is none."""
    path = Path(out_dir) / "failures.json"
    if not path.exists():
        return {}
    return json.loads(path.read_text())


class _Timeout(Exception):
    """Raised inside a worker when a material exceeds its CPU-time limit."""


def _alarm(signum: int, frame: Any) -> None:
    raise _Timeout("material exceeded its CPU-time limit")


def _work(
    candidate: Candidate,
    out_dir: str,
    protocol: dict[str, Any],
    max_seconds: int,
    screen: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Worker: compute one candidate with the protocol of that dict (its ``name`` picks the tier)
    and, for the fast tier, these screen settings; never raises, returns status, reason, timing."""
    for var in THREAD_VARIABLES:
        os.environ[var] = "1"
    t = time.perf_counter()
    # The limit counts the worker's CPU time (ITIMER_PROF), not the clock: a batch that is
    # suspended (Ctrl-Z, SIGSTOP, a sleeping laptop) must not fail the materials it was running.
    signal.signal(signal.SIGPROF, _alarm)
    signal.setitimer(signal.ITIMER_PROF, max(1.0, float(max_seconds)))
    try:
        from rhoprop.dft.scf import ScreenedOut, ScreenSettings

        settings = None if screen is None else ScreenSettings.from_dict(screen)
        record = compute(candidate, out_dir, load_protocol(protocol), settings)
        status: dict[str, Any] = {
            "status": "done",
            "natoms": record["natoms"],
            "spin_polarized": record["spin_polarized"],
        }
    except ScreenedOut as exc:
        status = {"status": "screened", "reason": str(exc), "record": exc.record}
    except BaseException as exc:  # noqa: BLE001 - every failure is recorded, never fatal
        reason = (
            f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, _Timeout)
            else f"Timeout: exceeded {max_seconds} s of CPU time"
        )
        status = {
            "status": "failed",
            "reason": reason[:2000],
            "traceback": "".join(traceback.format_exc().splitlines(True)[-12:]),
        }
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
    status.update(id=candidate.id, seconds=time.perf_counter() - t)
    return status


def _warm_up(protocol: dict[str, Any]) -> None:
    """Pool initializer of the fast tier: one thread per library, CHGNet loaded once per worker."""
    for var in THREAD_VARIABLES:
        os.environ[var] = "1"
    from rhoprop.dft.scf import chgnet_calculator

    chgnet_calculator(load_protocol(protocol).chgnet_model)  # type: ignore[attr-defined]


def check_folder_protocol(out_dir: Path, protocol: GPAWProtocol) -> None:
    """Refuse to mix tiers: RhopropError when ``DIR/protocol.json`` names another protocol."""
    path = out_dir / "protocol.json"
    if not path.exists():
        return
    try:
        name = json.loads(path.read_text()).get("name", "gpaw-v1")
    except (OSError, json.JSONDecodeError, AttributeError):
        return
    if name != protocol.name:
        raise RhopropError(
            f"{out_dir} holds results of protocol {name!r}, not {protocol.name!r}: give "
            f"--protocol {name} to continue it, or another --out folder for {protocol.name}"
        )


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM in the main process: stop like Ctrl-C (workers are killed, nothing half-done is marked done)."""
    raise KeyboardInterrupt("terminated")


def _kill_workers(pool: cf.ProcessPoolExecutor) -> None:
    """Terminate the pool's worker processes (their materials stay not-done and are redone on rerun)."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()


def generate(
    candidates: Iterable[Candidate],
    out_dir: str | Path,
    workers: int = 1,
    protocol: GPAWProtocol | None = None,
    retry_failed: bool = False,
    max_minutes: float = 90.0,
    progress: bool = True,
    stored: Collection[str] = (),
    screen: Any = None,
) -> GenerateReport:
    """Compute every candidate not yet done with this protocol, ``workers`` GPAW processes at a time.

    Writes ``DIR/protocol.json`` (a folder holds one tier: RhopropError if it was generated with a
    protocol of another name); skips done materials (and recorded failures unless ``retry_failed``);
    records failures with their reason in ``DIR/failures.json``. ``stored``: ids whose density a
    dataset store already holds, done without their CHGCAR (see :func:`is_done`). ``screen``: the
    fast tier's :class:`~rhoprop.dft.scf.ScreenSettings` (saved as ``DIR/screen.json``), whose
    skipped candidates go to ``DIR/skipped.json``.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if workers < 1:
        raise RhopropError(f"workers must be at least 1, got {workers}")
    protocol = protocol or DFTProtocol()
    out = Path(out_dir)
    check_folder_protocol(out, protocol)
    out.mkdir(parents=True, exist_ok=True)
    protocol.to_json(out / "protocol.json")
    if screen is not None:
        screen.to_json(out / "screen.json")
    phash = protocol.hash()
    failures = load_failures(out)
    skipped = load_skipped(out)
    report = GenerateReport()
    candidates = list(candidates)
    skip = (
        finished_ids(out, candidates, protocol, stored, screen)
        if not retry_failed
        else {c.id for c in candidates if is_done(out, c.id, protocol, stored)}
        | screened_ids(out, protocol, screen)
    )
    report.skipped.extend(c.id for c in candidates if c.id in skip)
    todo = [c for c in candidates if c.id not in skip]
    for var in THREAD_VARIABLES:
        os.environ[var] = "1"
    context = multiprocessing.get_context("spawn")
    columns = (TextColumn("[bold]generate"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[last]}"))
    def record(res: dict[str, Any]) -> str:
        mid = res["id"]
        report.seconds[mid] = res["seconds"]
        if res["status"] == "screened":
            report.screened[mid] = res["reason"]
            skipped[mid] = {
                "reason": res["reason"],
                "protocol_hash": phash,
                "screen": screen.to_dict(),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "seconds": res["seconds"],
                **res["record"],
            }
            atomic_write_text(out / "skipped.json", json.dumps(skipped, indent=1, sort_keys=True))
            if failures.pop(mid, None) is not None:
                atomic_write_text(
                    out / "failures.json", json.dumps(failures, indent=1, sort_keys=True)
                )
            return f"{mid} screened out: {res['reason']}"
        if res["status"] == "done":
            report.computed.append(mid)
            if failures.pop(mid, None) is not None:
                atomic_write_text(out / "failures.json", json.dumps(failures, indent=1, sort_keys=True))
            return f"{mid} {res['seconds']:.0f} s ({res.get('natoms', '?')} atoms)"
        report.failed[mid] = res["reason"]
        failures[mid] = {"reason": res["reason"], "protocol_hash": phash,
                         "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": res["seconds"],
                         "traceback": res.get("traceback", "")}
        atomic_write_text(out / "failures.json", json.dumps(failures, indent=1, sort_keys=True))
        return f"[red]{mid} failed[/red]: {res['reason'][:120]}"

    pending = list(reversed(todo))
    screen_dict = None if screen is None else screen.to_dict()
    work_args = (str(out), protocol.to_dict(), int(max_minutes * 60), screen_dict)

    def new_pool() -> cf.ProcessPoolExecutor:
        warm = isinstance(protocol, SCFProtocol)  # load CHGNet once per worker, outside the timing
        return cf.ProcessPoolExecutor(
            max_workers=workers, mp_context=context,
            max_tasks_per_child=type(protocol).tasks_per_worker,
            initializer=functools.partial(_warm_up, protocol.to_dict()) if warm else None,
        )

    pool = new_pool()
    running: dict[cf.Future, Candidate] = {}
    crashes: dict[str, int] = {}
    previous_term = signal.signal(signal.SIGTERM, _terminate)
    try:
        with Progress(*columns, disable=not progress) as bar:
            task = bar.add_task("generate", total=len(todo), last="")
            while pending or running:
                while pending and len(running) < workers:
                    c = pending.pop()
                    running[pool.submit(_work, c, *work_args)] = c
                finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for fut in finished:
                    c = running.pop(fut)
                    try:
                        res = fut.result()
                    except cf.process.BrokenProcessPool:
                        crashes[c.id] = crashes.get(c.id, 0) + 1
                        if crashes[c.id] < 2:  # maybe a bystander of another worker's crash: once more
                            pending.append(c)
                            continue
                        res = {"id": c.id, "status": "failed", "seconds": 0.0,
                               "reason": "worker process died twice (crash or out of memory) while computing it"}
                    line = record(res)
                    bar.update(task, advance=1, last=line.split(" ")[0])
                    bar.console.print(f"{time.strftime('%H:%M:%S')} {line}")
                if any(isinstance(f.exception(), cf.process.BrokenProcessPool) for f in finished):
                    for fut, c in list(running.items()):
                        pending.append(c)
                        running.pop(fut)
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = new_pool()
    except BaseException:
        _kill_workers(pool)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        pool.shutdown(wait=False, cancel_futures=True)
    return report
