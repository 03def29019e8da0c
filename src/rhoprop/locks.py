"""Exclusive locks on folders that one process at a time may write (dataset stores, studies).

A lock is an ``flock`` on ``FOLDER/.lock``, which holds the holder's pid. The kernel releases it
when the holder dies, even by ``kill -9``, so a rerun never meets a stale lock. A flock lives as
long as any copy of its descriptor, so every forked child (a build's pool worker, a DataLoader
worker) closes its copies of the locks its parent holds, by an :func:`os.register_at_fork`
handler: without it, the workers of a killed writer kept the folder locked until they noticed and
exited themselves.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from rhoprop.errors import FolderLockedError

LOCK_NAME = ".lock"
#: Descriptors of the folder locks this process holds (closed in forked children).
_HELD: set[int] = set()


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], hint: str = "") -> Iterator[None]:
    """Hold the exclusive lock of ``folder`` (created if needed); if another process holds it,
    raise :class:`~rhoprop.errors.FolderLockedError` naming the holder (``"pid 123"``) and ending
    with ``hint`` (what to do instead).

    The lock file is removed on release while still held, so a finished writer leaves none behind
    (a killed one leaves an unlocked one: harmless).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock_path = folder / LOCK_NAME
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            try:
                owner = lock_path.read_text().strip() or "another process"
            except FileNotFoundError:
                owner = "another process"
            raise FolderLockedError(folder, owner, hint) from exc
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed this lock file as we took it: take the new one
    _HELD.add(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}".encode())
        try:
            yield
        finally:
            lock_path.unlink(missing_ok=True)
    finally:
        _HELD.discard(fd)
        os.close(fd)


def _release_inherited_locks() -> None:
    """Close, in a forked child, its copies of the parent's lock descriptors."""
    for fd in tuple(_HELD):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_release_inherited_locks)
