"""Run a function in a fresh child process with a CPU-time limit, from any thread of any process.

A CPU-time limit needs the process's signals (``ITIMER_PROF`` sends SIGPROF, which Python handles
in the main thread only) and a process of its own (the limit counts the whole process). A Dask
worker runs tasks in a thread of a process that also talks to the scheduler, so each material of
``rhoprop generate`` runs in a child: :func:`run_isolated` forks it from a helper process (one per
calling thread, started on first use, with the slow imports and models already loaded: GPAW,
CHGNet), runs the function there, and returns what it returned. A fresh child per call frees all
of its memory after each material, as a process pool with one task per child did.

Nothing outlives its parent: the helper and each child ask the kernel for SIGKILL when their
parent dies (``PR_SET_PDEATHSIG``), so killing a Dask worker, or the command that started a local
cluster, takes the helper and a running calculation with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import pickle
import resource
import signal
import struct
import subprocess
import sys
import threading
import traceback
from collections.abc import Sequence
from typing import IO, Any

from rhoprop.errors import RhopropError

#: Variables that keep numerical libraries to one thread in the helper and its children (a forked
#: child must not inherit a thread pool; each material is one serial calculation).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_PR_SET_PDEATHSIG = 1
_HEADER = struct.Struct("!Q")


class ChildDied(RhopropError):
    """The child process ended without a result: killed by a signal or exited early."""

    def __init__(self, how: str, signum: int | None, cpu_limit: bool) -> None:
        super().__init__(how)
        self.signum = signum
        self.cpu_limit = cpu_limit


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux; a no-op elsewhere);
    exit at once if the parent is already gone."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:
        os._exit(1)


def _write_frame(stream: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read_frame(stream: IO[bytes]) -> Any:
    """The next object from a pipe between this module's own processes, or None at its end."""
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)  # written by the process at the other end, ours


def _resolve(target: str) -> Any:
    """The function named ``module:function``."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


class _Helper:
    """A warm helper process that forks one child per call (see the module docstring)."""

    def __init__(self, preload: tuple[str, ...], warm: tuple[str, tuple[Any, ...]] | None) -> None:
        self.key = (preload, warm)
        env = {**os.environ, **dict.fromkeys(THREAD_VARIABLES, "1")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rhoprop.isolate", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        _write_frame(self.stdin, {"preload": preload, "warm": warm})
        ready = _read_frame(self.stdout)
        if ready is None or "error" in ready:
            self.close()
            detail = ready["error"] if ready else "it exited (see the log above)"
            raise RhopropError(
                f"the helper process that runs calculations failed to start: {detail}; "
                f"check that `{sys.executable} -c 'import {', '.join(preload) or 'rhoprop'}'` works"
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, target: str, args: tuple[Any, ...], cpu_limit_s: float | None) -> Any:
        _write_frame(self.stdin, (target, args, cpu_limit_s))
        reply = _read_frame(self.stdout)
        if reply is None:
            code = self.proc.wait()
            raise ChildDied(f"the helper process died (exit status {code})", None, False)
        if "value" in reply:
            return reply["value"]
        if "error" in reply:
            raise RhopropError(f"{target} failed in its child process: {reply['error']}")
        signum = reply.get("signal")
        cpu = signum == signal.SIGXCPU
        how = (
            f"killed by signal {signum} ({signal.Signals(signum).name})"
            if signum
            else f"exited with status {reply.get('code')} without a result"
        )
        raise ChildDied(f"the process computing it {how}", signum, cpu)

    def close(self) -> None:
        for stream in (self.stdin, self.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_HELPERS = threading.local()


def run_isolated(
    target: str,
    args: Sequence[Any] = (),
    *,
    cpu_limit_s: float | None = None,
    preload: Sequence[str] = (),
    warm: tuple[str, tuple[Any, ...]] | None = None,
) -> Any:
    """Call the function ``target`` (``"module:function"``) with ``args`` in a fresh child process
    and return its (picklable) result.

    ``cpu_limit_s``: the child is killed by SIGXCPU after that much CPU time (a backstop: the
    function can set a gentler timer of its own). ``preload`` modules are imported and ``warm``
    (``("module:function", args)``) is called once in this thread's helper process, so children
    start with them. Raises :class:`ChildDied` when the child died without a result (a signal: out
    of memory, a crash, the CPU limit) and RhopropError when the function raised.
    """
    key = (tuple(preload), warm)
    helper: _Helper | None = getattr(_HELPERS, "helper", None)
    if helper is not None and (helper.key != key or not helper.alive()):
        helper.close()
        helper = None
    if helper is None:
        helper = _HELPERS.helper = _Helper(*key)
    try:
        return helper.run(target, tuple(args), cpu_limit_s)
    except (ChildDied, BrokenPipeError):
        if not helper.alive():
            helper.close()
            _HELPERS.helper = None
        raise


def _child(target: str, args: tuple[Any, ...], cpu_limit_s: float | None, out: int) -> None:
    """In the forked child: limits, the call, its result on ``out``; never returns."""
    status = 0
    try:
        die_with_parent(os.getppid())
        if cpu_limit_s:
            soft = max(1, int(cpu_limit_s))
            resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 10))
        try:
            result: dict[str, Any] = {"value": _resolve(target)(*args)}
        except BaseException as exc:  # reported to the caller, never lost
            tb = "".join(traceback.format_exc().splitlines(True)[-12:])
            result = {"error": f"{type(exc).__name__}: {exc}\n{tb}"}
        with os.fdopen(out, "wb") as f:
            pickle.dump(result, f, protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException:  # nothing may escape a forked child
        status = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(status)


def _helper_main() -> None:
    """The helper process: preload, then fork a child per request until the caller goes away."""
    die_with_parent(int(sys.argv[1]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller decides; Ctrl-C reaches the group
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever the calculations print goes to stderr, not into the replies
    requests = sys.stdin.buffer
    header = _read_frame(requests)
    if header is None:
        return
    try:
        for module in header["preload"]:
            importlib.import_module(module)
        if header["warm"] is not None:
            _resolve(header["warm"][0])(*header["warm"][1])
    except Exception as exc:  # reported to the caller, which raises it
        _write_frame(replies, {"error": f"{type(exc).__name__}: {exc}"})
        return
    _write_frame(replies, {"ready": True})
    while (request := _read_frame(requests)) is not None:
        target, args, cpu_limit_s = request
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            _child(target, args, cpu_limit_s, write_end)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        if data:
            reply = pickle.loads(data)  # written by our own forked child
        elif os.WIFSIGNALED(status):
            reply = {"signal": os.WTERMSIG(status)}
        else:
            reply = {"code": os.WEXITSTATUS(status)}
        _write_frame(replies, reply)


if __name__ == "__main__":
    _helper_main()
