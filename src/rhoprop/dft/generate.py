"""Resumable, parallel batch generation on Dask: a task per material, failures recorded, not fatal.

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
import itertools
import json
import os
import re
import signal
import time
import traceback
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

from rhoprop.dft.material import Candidate, chgcar_path, compute, result_path
from rhoprop.dft.protocol import DFTProtocol, GPAWProtocol, SCFProtocol, load_protocol
from rhoprop.dft.prototypes import enumerate_prototypes, ready_first
from rhoprop.errors import RhopropError
from rhoprop.isolate import THREAD_VARIABLES
from rhoprop.settings import atomic_write_text

STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar")
STRUCTURE_NAMES = ("POSCAR", "CONTCAR")


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
    """Candidates from CIF/POSCAR files or folders of them (ids: file stems; not recursive)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(
                f
                for f in p.iterdir()
                if f.is_file()
                and (f.suffix.lower() in STRUCTURE_SUFFIXES or f.name in STRUCTURE_NAMES)
            )
            if not found:
                raise RhopropError(
                    f"folder {p} has no structure files; expected *.cif, *.vasp, *.poscar, "
                    "POSCAR or CONTCAR"
                )
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise RhopropError(
                f"structure path {p} does not exist; give CIF/POSCAR files or folders of them"
            )
    candidates, ids = [], set()
    for f in files:
        try:
            structure = Structure.from_file(f)
        except Exception as exc:  # pymatgen raises many types on bad files
            raise RhopropError(
                f"cannot read a structure from {f}: {exc}; expected a CIF or POSCAR file"
            ) from exc
        mid = _safe_id(f.stem if f.name not in STRUCTURE_NAMES else f"{f.parent.name}_{f.name}")
        if mid in ids:
            raise RhopropError(
                f"two input structures map to the same id {mid!r} ({f}); rename one of them"
            )
        ids.add(mid)
        candidates.append(Candidate(mid, structure, "user", str(f)))
    return candidates


def is_done(
    out_dir: str | Path, material_id: str, protocol: GPAWProtocol, stored: Collection[str] = ()
) -> bool:
    """True when the material's result JSON exists and ``protocol`` accepts it (see
    :meth:`DFTProtocol.accepts`).

    A crystal also needs its CHGCAR, unless its id is in ``stored`` (ids whose density a dataset
    store already holds, e.g. on a fresh clone where the committed results have no CHGCARs): a
    result whose density is nowhere is computed again.
    """
    out = Path(out_dir)
    path = result_path(out, material_id)
    if not path.exists():
        return False
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if (
        record.get("kind") == "crystal"
        and material_id not in stored
        and not chgcar_path(out, material_id).exists()
    ):
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
    ``generate`` should run it for ``out_dir``.

    ``gpaw-v1``: :func:`~rhoprop.dft.prototypes.enumerate_prototypes`, compounds needing no new
    reference calculation first (:func:`ready_first`). ``gpaw-scf-v1``:
    :func:`~rhoprop.dft.enumerate.enumerate_scf_candidates` with at most ``max_atoms`` atoms per
    cell, in its own order (chemistry first: an element's references and first compounds come
    early, so the tier reaches every element within its first few hundred candidates; moving the
    compounds of elements already referenced to the front, as for ``gpaw-v1``, would put thousands
    of them before the next new element). ``generate`` skips the finished ones, and the candidates
    ``screen`` skipped before count as finished.
    """
    protocol = protocol or DFTProtocol()
    if isinstance(protocol, SCFProtocol):
        from rhoprop.dft.enumerate import enumerate_scf_candidates

        return list(itertools.islice(enumerate_scf_candidates(max_atoms=max_atoms), limit or None))
    enumerated = list(itertools.islice(enumerate_prototypes(), limit or None))
    return ready_first(enumerated, finished_ids(out_dir, enumerated, protocol, stored))


def select_ids(candidates: Iterable[Candidate], ids: Sequence[str]) -> list[Candidate]:
    """The candidates named in ``ids``, in that order (e.g. to retry a few materials first).

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
        raise RhopropError(
            f"{len(unknown)} of the ids given are not among the {len(by_id)} candidates: "
            + "; ".join(hints)
        )
    return [by_id[i] for i in dict.fromkeys(ids)]


def load_failures(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """The failures file of an output folder (id → record), empty when there is none."""
    path = Path(out_dir) / "failures.json"
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def failure_record(res: dict[str, Any], protocol_hash: str) -> dict[str, Any]:
    """The ``failures.json`` entry of a failed material from its worker's result (``reason``,
    ``seconds``, optional ``traceback``)."""
    return {
        "reason": res["reason"],
        "protocol_hash": protocol_hash,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "seconds": res["seconds"],
        "traceback": res.get("traceback", ""),
    }


class _Timeout(Exception):
    """Raised inside a material's process when it exceeds its CPU-time limit."""


def _alarm(signum: int, frame: Any) -> None:
    raise _Timeout("material exceeded its CPU-time limit")


def run_limited(
    material_id: str, task: Callable[[], dict[str, Any]], max_seconds: int
) -> dict[str, Any]:
    """Run one material's ``task`` in this process's main thread, one thread per library, under a
    CPU-time limit of ``max_seconds``; never raises. ``task`` returns its status dict (``status``
    "done", "screened", ...); any exception becomes ``status`` "failed" with its reason and the end
    of its traceback. ``id`` and wall ``seconds`` are added."""
    for var in THREAD_VARIABLES:
        os.environ[var] = "1"
    t = time.perf_counter()
    # The limit counts the process's CPU time (ITIMER_PROF), not the clock: a batch that is
    # suspended (Ctrl-Z, SIGSTOP, a sleeping laptop) must not fail the materials it was running.
    signal.signal(signal.SIGPROF, _alarm)
    signal.setitimer(signal.ITIMER_PROF, max(1.0, float(max_seconds)))
    try:
        status = task()
    except BaseException as exc:  # every failure is recorded, never fatal
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
    status.update(id=material_id, seconds=time.perf_counter() - t)
    return status


def _work(
    candidate: Candidate,
    out_dir: str,
    protocol: dict[str, Any],
    max_seconds: int,
    screen: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Compute one candidate in this process's main thread with the protocol of that dict (its
    ``name`` picks the tier) and, for the fast tier, these screen settings, under a CPU-time limit
    of ``max_seconds`` (:func:`run_limited`); never raises, returns status, reason, timing."""

    def task() -> dict[str, Any]:
        from rhoprop.dft.scf import ScreenedOut, ScreenSettings

        settings = None if screen is None else ScreenSettings.from_dict(screen)
        try:
            record = compute(candidate, out_dir, load_protocol(protocol), settings)
        except ScreenedOut as exc:
            return {"status": "screened", "reason": str(exc), "record": exc.record}
        return {
            "status": "done",
            "natoms": record["natoms"],
            "spin_polarized": record["spin_polarized"],
        }

    return run_limited(candidate.id, task, max_seconds)


def _warm_up(protocol: dict[str, Any]) -> None:
    """Helper-process warm-up of the fast tier: one thread per library, CHGNet loaded once, so
    that every material's process starts with it (see :mod:`rhoprop.isolate`)."""
    for var in THREAD_VARIABLES:
        os.environ[var] = "1"
    from rhoprop.dft.scf import chgnet_calculator

    chgnet_calculator(load_protocol(protocol).chgnet_model)  # type: ignore[attr-defined]


#: Modules every material's process starts with (imported once per worker's helper process).
PRELOAD = ("rhoprop.dft.material", "rhoprop.dft.scf", "gpaw", "gpaw.setup", "gpaw.xc")
#: CPU seconds granted beyond ``--max-minutes`` before the kernel stops a material that did not
#: stop itself (SIGXCPU: e.g. stuck in native code, where Python's timer cannot interrupt it).
HARD_LIMIT_GRACE_S = 60


class MaterialProcessDied(RhopropError):
    """A material's process died without a result (killed, crashed, out of memory): retried."""


def _material_task(
    candidate: Candidate,
    out_dir: str,
    protocol: dict[str, Any],
    max_seconds: int,
    screen: dict[str, Any] | None,
) -> dict[str, Any]:
    """Dask task: one material in a fresh child process of the worker
    (:func:`rhoprop.isolate.run_isolated`),
    under its CPU-time limit; a status dict like :func:`_work`'s. Raises
    :class:`MaterialProcessDied` when the process died another way (Dask retries the task once)."""
    from rhoprop.isolate import ChildDied, run_isolated

    warm = (
        ("rhoprop.dft.generate:_warm_up", (protocol,))
        if protocol.get("name") == SCFProtocol.name
        else None
    )
    try:
        status: dict[str, Any] = run_isolated(
            "rhoprop.dft.generate:_work",
            (candidate, out_dir, protocol, max_seconds, screen),
            cpu_limit_s=max_seconds + HARD_LIMIT_GRACE_S,
            preload=PRELOAD,
            warm=warm,
        )
    except ChildDied as exc:
        if exc.cpu_limit:
            return {
                "id": candidate.id,
                "status": "failed",
                "seconds": 0.0,
                "reason": f"Timeout: exceeded {max_seconds} s of CPU time (stopped by the kernel "
                f"{HARD_LIMIT_GRACE_S} s later, in native code)",
            }
        raise MaterialProcessDied(f"{exc} (crash, out of memory, or killed)") from None
    return status


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
    """SIGTERM in the main process: stop like Ctrl-C (nothing half-done is marked done)."""
    raise KeyboardInterrupt("terminated")


def _kill_workers(pool: cf.ProcessPoolExecutor) -> None:
    """Terminate a process pool's worker processes (the phonon runner's pool)."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()


@dataclasses.dataclass
class GenerationPlan:
    """What one ``rhoprop generate`` run computes: the candidates in order, the protocol, the fast
    tier's screen settings (None: no screening) and the ids a dataset store already holds."""

    candidates: list[Candidate]
    protocol: GPAWProtocol
    screen: Any = None
    stored: set[str] = dataclasses.field(default_factory=set)


def plan_generation(
    out_dir: str | Path,
    structures: Sequence[str | os.PathLike[str]] | None = None,
    prototypes: bool = False,
    *,
    limit: int = 0,
    protocol_name: str = "gpaw-v1",
    max_chgnet_ef: float = 1.0,
    max_atoms: int | None = None,
    only: Sequence[str] | None = None,
    densities_in: str | None = None,
) -> GenerationPlan:
    """The candidates of a ``generate`` run: the structure files given, or the protocol's prototype
    enumeration (exactly one of them), filtered to ``only`` (in that order); the protocol by name;
    the fast tier's CHGNet screening (prototypes only, compounds above ``max_chgnet_ef`` eV/atom);
    and the ids of the dataset ``densities_in`` (path or built-in name), done without a CHGCAR."""
    from rhoprop.dft.protocol import protocol_by_name

    if prototypes == bool(structures):
        raise RhopropError("give structure files/folders or --prototypes (exactly one of them)")
    stored: set[str] = set()
    if densities_in:
        from rhoprop.datasets import load

        store = load(densities_in)
        stored = set(store.ids)
        store.close()
    protocol = protocol_by_name(protocol_name)
    screen = None
    if prototypes and isinstance(protocol, SCFProtocol):
        from rhoprop.dft.scf import ScreenSettings

        screen = ScreenSettings(max_chgnet_formation_energy_ev=max_chgnet_ef)
    if prototypes:
        candidates = prototype_candidates(out_dir, limit, protocol, stored, max_atoms or 8, screen)
    else:
        candidates = read_structures(structures or [])
    if only:
        candidates = select_ids(candidates, only)
    return GenerationPlan(candidates, protocol, screen, stored)


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
    scheduler: str | None = None,
) -> GenerateReport:
    """Compute every candidate not yet done with this protocol, one Dask task per material.

    The tasks run on a local cluster of ``workers`` single-threaded processes (started and closed
    here), or on the workers of the running Dask scheduler at ``scheduler`` (``tcp://HOST:PORT``;
    ``out_dir`` must then be on a filesystem they share). Each material runs in a fresh child
    process of its worker under a CPU-time limit of ``max_minutes``; a material whose process or
    worker dies is retried once by Dask, then recorded as failed.

    Writes ``DIR/protocol.json`` (a folder holds one tier: RhopropError if it was generated with a
    protocol of another name); skips done materials (and recorded failures unless ``retry_failed``);
    records failures with their reason in ``DIR/failures.json``. ``stored``: ids whose density a
    dataset store already holds, done without their CHGCAR (see :func:`is_done`). ``screen``: the
    fast tier's :class:`~rhoprop.dft.scf.ScreenSettings` (saved as ``DIR/screen.json``), whose
    skipped candidates go to ``DIR/skipped.json``.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rhoprop.cluster import check_scheduler_address, dask_client, killed_reason, run_bounded

    if workers < 1:
        raise RhopropError(f"workers must be at least 1, got {workers}")
    if scheduler is not None:  # before anything is written
        check_scheduler_address(scheduler)
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
    if not todo:
        return report
    columns = (
        TextColumn("[bold]generate"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[last]}"),
    )

    def write_failures() -> None:
        atomic_write_text(out / "failures.json", json.dumps(failures, indent=1, sort_keys=True))

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
                write_failures()
            return f"{mid} screened out: {res['reason']}"
        if res["status"] == "done":
            report.computed.append(mid)
            if failures.pop(mid, None) is not None:
                write_failures()
            return f"{mid} {res['seconds']:.0f} s ({res.get('natoms', '?')} atoms)"
        report.failed[mid] = res["reason"]
        failures[mid] = failure_record(res, phash)
        write_failures()
        return f"[red]{mid} failed[/red]: {res['reason'][:120]}"

    screen_dict = None if screen is None else screen.to_dict()
    args = (str(out.resolve()), protocol.to_dict(), int(max_minutes * 60), screen_dict)
    batch = uuid.uuid4().hex[:8]
    previous_term = signal.signal(signal.SIGTERM, _terminate)
    try:
        with (
            dask_client(workers, scheduler) as client,
            Progress(*columns, disable=not progress) as bar,
        ):
            task = bar.add_task("generate", total=len(todo), last="")

            def submit(c: Candidate) -> Any:
                return client.submit(
                    _material_task,
                    c,
                    *args,
                    key=f"rhoprop-material-{c.id}-{batch}",
                    retries=1,
                    pure=False,
                )

            # One material per worker thread at a time: a dying worker takes no bystander along.
            for c, res, exc in run_bounded(client, submit, todo, per_thread=1):
                if exc is not None:
                    reason = killed_reason(exc, "material") or (
                        f"{exc} twice (Dask retried it once)"
                        if isinstance(exc, MaterialProcessDied)
                        else f"{type(exc).__name__}: {exc}"
                    )
                    res = {"id": c.id, "status": "failed", "seconds": 0.0, "reason": reason[:2000]}
                line = record(res)
                bar.update(task, advance=1, last=line.split(" ")[0])
                bar.console.print(f"{time.strftime('%H:%M:%S')} {line}")
    finally:
        signal.signal(signal.SIGTERM, previous_term)
    return report
