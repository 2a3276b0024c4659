"""One service instance per state: a lock file next to the store.

Two servers on one database would each hold the controllers' keys and the
pending bootstraps in memory and overwrite each other's decisions; two
controllers on one state file would hand out the same TID twice. The lock is an
``flock`` on ``<store>.lock``, so the kernel drops it when the process dies
however it dies: a stale lock file never blocks a restart. The file holds the
owner's pid, only to tell the second instance whom it collided with.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import IO

from keystrap.store.atomic import make_private_dirs


class AlreadyRunning(Exception):
    """Another process holds the lock on this state."""


class InstanceLock:
    def __init__(self, handle: IO[bytes], path: Path) -> None:
        self._handle = handle
        self.path = path

    @classmethod
    def acquire(cls, store: Path, what: str) -> InstanceLock:
        """Lock ``store`` for this process, or raise :class:`AlreadyRunning` naming
        the pid that holds it. ``what`` names the service in the message.

        The lock sits beside the store's real file, symbolic links resolved: a
        second name for the same store (a link to it, or to its directory) finds
        the same lock rather than one of its own."""
        real = store.resolve()
        path = real.with_name(real.name + ".lock")
        make_private_dirs(path.parent)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        handle = os.fdopen(fd, "r+b")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = handle.read(32).decode("ascii", "replace").strip() or "unknown"
            handle.close()
            raise AlreadyRunning(
                f"another {what} (pid {owner}) is running on {store} (lock {path})"
            ) from None
        except BaseException:
            handle.close()
            raise
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n".encode())
        handle.flush()
        return cls(handle, path)

    def release(self) -> None:
        """Empty the pid and unlock; the file stays (removing it would race with a
        newcomer that already opened it)."""
        with contextlib.suppress(OSError):
            self._handle.truncate(0)
        self._handle.close()
