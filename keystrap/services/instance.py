"""One service instance per state: a lock file next to the store.

Two servers on one database would each hold the controllers' keys and the
pending bootstraps in memory and overwrite each other's decisions; two
controllers on one state file would hand out the same TID twice. The lock is an
``flock`` on ``<store>.lock``, so the kernel drops it when the process dies
however it dies: a stale lock file never blocks a restart. The file holds the
owner's pid, only to tell the second instance whom it collided with.

The owner removes the file when it stops, while it still holds the lock, so a
start that is refused (or a service that stops) leaves no lock file behind,
nor the directories made for it. A newcomer that opened the file just before
it was removed then holds a lock on a file no longer there; it sees that (the
path no longer names the inode it locked) and starts over on a new file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import IO

from keystrap.store.atomic import make_private_dirs, remove_if_empty


class AlreadyRunning(Exception):
    """Another process holds the lock on this state."""


class InstanceLock:
    def __init__(self, handle: IO[bytes], path: Path, made: list[Path]) -> None:
        self._handle = handle
        self.path = path
        self._made = made  # the directories acquire() made for the lock

    @classmethod
    def acquire(cls, store: Path, what: str) -> InstanceLock:
        """Lock ``store`` for this process, or raise :class:`AlreadyRunning` naming
        the pid that holds it. ``what`` names the service in the message.

        The lock sits beside the store's real file, symbolic links resolved: a
        second name for the same store (a link to it, or to its directory) finds
        the same lock rather than one of its own."""
        real = store.resolve()
        path = real.with_name(real.name + ".lock")
        made = make_private_dirs(path.parent)
        try:
            while True:
                handle = cls._locked(path, store, what)
                if handle is not None:
                    break
        except BaseException:
            remove_if_empty(made)
            raise
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n".encode())
        handle.flush()
        return cls(handle, path, made)

    @staticmethod
    def _locked(path: Path, store: Path, what: str) -> IO[bytes] | None:
        """``path`` opened and locked, or None if its owner removed it meanwhile."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        handle = os.fdopen(fd, "r+b")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = os.fstat(fd)
            try:
                named = os.stat(path)
            except FileNotFoundError:
                named = None
        except BlockingIOError:
            owner = handle.read(32).decode("ascii", "replace").strip() or "unknown"
            handle.close()
            raise AlreadyRunning(
                f"another {what} (pid {owner}) is running on {store} (lock {path})"
            ) from None
        except BaseException:
            handle.close()
            raise
        if named is None or (named.st_dev, named.st_ino) != (locked.st_dev, locked.st_ino):
            handle.close()  # the previous owner removed it after we opened it
            return None
        return handle

    def release(self) -> None:
        """Remove the lock file while still holding it, then unlock; then the
        directories made for it, if the store was never made there."""
        with contextlib.suppress(OSError):
            self.path.unlink()
        self._handle.close()
        remove_if_empty(self._made)
