"""Folder locks (dataset stores, studies): one writer at a time, never kept by forked children."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rhoprop.analysis.study import study_lock
from rhoprop.data.store import store_lock
from rhoprop.errors import FolderLockedError
from rhoprop.locks import folder_lock

LOCKS: dict[str, Callable[[Path], Any]] = {
    "folder": folder_lock,
    "store": store_lock,
    "study": study_lock,
}


def _child(ready: Any, stop: Any) -> None:
    ready.set()
    stop.wait(60)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
@pytest.mark.parametrize("kind", sorted(LOCKS))
def test_a_forked_child_does_not_keep_the_folder_locked_after_its_parent_lets_go(
    tmp_path: Path, kind: str
) -> None:
    ctx = multiprocessing.get_context("fork")
    ready, stop = ctx.Event(), ctx.Event()
    with LOCKS[kind](tmp_path):
        probe = os.open(
            tmp_path / ".lock", os.O_RDWR
        )  # the same lock file, opened without the lock
        child = ctx.Process(target=_child, args=(ready, stop))
        child.start()
        assert ready.wait(60)
        with pytest.raises(BlockingIOError):  # held by this process while inside
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the child's copy would block this
    finally:
        stop.set()
        child.join(60)
        os.close(probe)
    assert not (tmp_path / ".lock").exists()  # a finished holder leaves no lock file


@pytest.mark.parametrize("kind", sorted(LOCKS))
def test_a_second_holder_is_refused_with_one_error_type_naming_the_first(
    tmp_path: Path, kind: str
) -> None:
    refused_while_held = pytest.raises(FolderLockedError, match=f"locked by pid {os.getpid()}")
    with LOCKS[kind](tmp_path), refused_while_held as refused, LOCKS[kind](tmp_path):
        pass
    assert refused.value.folder == tmp_path and refused.value.owner == f"pid {os.getpid()}"
    with LOCKS[kind](tmp_path):  # free again once released
        pass
