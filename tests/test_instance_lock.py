"""The instance lock leaves nothing behind, and is never held twice.

Its owner removes ``<store>.lock`` when it stops (a refused start left it, and
the directories made for it, behind). Removing a lock file races with a
newcomer that opened it just before: these tests play that race out.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

import pytest

from keystrap.services.instance import AlreadyRunning, InstanceLock


def test_released_it_leaves_neither_the_file_nor_the_directories_it_made(tmp_path: Path) -> None:
    store = tmp_path / "new" / "deeper" / "sbs.sqlite"
    lock = InstanceLock.acquire(store, "server")
    assert lock.path == store.with_name("sbs.sqlite.lock") and lock.path.exists()
    lock.release()
    assert list(tmp_path.iterdir()) == []


def test_released_it_keeps_a_directory_that_holds_the_store(tmp_path: Path) -> None:
    store = tmp_path / "data" / "sbs.sqlite"
    lock = InstanceLock.acquire(store, "server")
    store.write_bytes(b"the store")
    lock.release()
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["sbs.sqlite"]


def test_a_second_is_refused_while_the_first_holds_it(tmp_path: Path) -> None:
    first = InstanceLock.acquire(tmp_path / "sbs.sqlite", "server")
    with pytest.raises(AlreadyRunning, match=rf"another server \(pid {os.getpid()}\)"):
        InstanceLock.acquire(tmp_path / "sbs.sqlite", "server")
    first.release()
    InstanceLock.acquire(tmp_path / "sbs.sqlite", "server").release()


def test_a_newcomer_never_holds_a_lock_file_its_owner_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The newcomer opens the lock file; before it locks it, the owner stops and
    removes it. The newcomer's lock on the removed file would guard nothing (a
    third instance would make and lock a new file), so it starts over."""
    store = tmp_path / "sbs.sqlite"
    owner = InstanceLock.acquire(store, "server")
    real_flock = fcntl.flock
    stopped: list[bool] = []

    def owner_stops_first(handle: Any, operation: int) -> None:
        if not stopped:
            stopped.append(True)
            owner.release()
        real_flock(handle, operation)

    monkeypatch.setattr(fcntl, "flock", owner_stops_first)
    newcomer = InstanceLock.acquire(store, "server")
    monkeypatch.undo()
    held = os.fstat(newcomer._handle.fileno()).st_ino
    assert newcomer.path.exists() and os.stat(newcomer.path).st_ino == held
    with pytest.raises(AlreadyRunning):  # and a third finds it held
        InstanceLock.acquire(store, "server")
    newcomer.release()
