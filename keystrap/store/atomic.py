"""Crash-safe file writing.

``write_atomic`` replaces a file: temp file, fsync, rename, fsync the directory.
A reader (or the same program after a power cut) sees either the old file or the
new one, never a torn mixture -- what the node's "no bricked node" rule needs.

``write_new`` is how a command hands out a file it creates: it never replaces a
file it did not create (unless forced), and :func:`new_output` takes back what it
wrote if the step that follows -- committing the key to a store -- fails.
:func:`taken_back_on_failure` does the same for what a service's start makes.

``make_private_dirs`` is how every directory keystrap makes is made: 0700.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from keystrap.store.errors import StoreError


class ExistingFile(StoreError):
    """The output file exists and was not created by this run."""


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    path = Path(path)
    tmp = _write_temp(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def make_private_dirs(path: Path) -> list[Path]:
    """Make directory ``path`` and whichever of its parents are missing, each of
    them 0700 whatever the umask (``mkdir(parents=True)`` gives only the last one
    its mode, and the umask still applies: under umask 000 the rest are 0777).

    They hold key files, stores, sockets and node files: a directory others may
    write to lets them delete or replace those files. A directory that already
    exists is left exactly as it is -- its mode is its owner's choice.

    Returns the directories made, outermost first, so that a step that fails
    can take them back (:func:`remove_if_empty`)."""
    path = Path(path)
    if path.is_dir():
        return []
    made = make_private_dirs(path.parent) if path.parent != path else []
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:  # made meanwhile by another process, or not a directory
        if not path.is_dir():
            # os.mkdir's "File exists: file" left the operator to guess which.
            raise NotADirectoryError(
                errno.ENOTDIR, "not a directory, so nothing can be made in it", str(path)
            ) from None
        return made
    return [*made, path]


def remove_if_empty(directories: list[Path]) -> None:
    """Remove those of ``directories`` (as :func:`make_private_dirs` returned
    them) that nothing has been put in, innermost first: only an empty one goes,
    so whatever another process or a later step placed there stays."""
    for directory in reversed(directories):
        try:
            directory.rmdir()
        except OSError:
            return  # not empty, so neither is any directory around it


def refuse_existing(path: Path, force: bool) -> None:
    """Fail early, before anything is written, if ``path`` would be overwritten.
    Even ``force`` replaces only a regular file (or a link): never a device such
    as /dev/null, a FIFO or a directory, which a rename would put a file in
    place of."""
    try:
        kind = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):  # nothing there to overwrite
        return
    if not (stat.S_ISREG(kind) or stat.S_ISLNK(kind)):
        raise ExistingFile(f"{path} exists and is not a regular file; nothing replaces it")
    if not force:
        raise ExistingFile(
            f"{path} already exists; keystrap never overwrites a file it did not create "
            "(give --force to replace it)"
        )


def refuse_non_empty_dir(path: Path, option: str) -> None:
    """For commands that write a whole site into a directory: only a new or empty one."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ExistingFile(
            f"{option} {path} exists and is not an empty directory; "
            "give a new or empty one (nothing there is overwritten)"
        )


def write_new(
    path: Path, data: bytes, *, force: bool = False, mode: int = 0o600
) -> tuple[int, int]:
    """Write ``path`` (fsynced, ``mode``), which must not exist unless ``force``;
    returns the file's identity (:func:`identity`).

    Without ``force`` the file appears by ``link(2)``, which fails if the name is
    taken, so even a file created meanwhile by another process is never replaced.
    """
    path = Path(path)
    try:
        make_private_dirs(path.parent)
        tmp = _write_temp(path, data, mode)
        made = os.lstat(tmp)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None
    place_new(tmp, path, force=force)
    return made.st_dev, made.st_ino


def identity(path: Path) -> tuple[int, int] | None:
    """Device and inode of the file (or link) named ``path``, None if there is none."""
    try:
        found = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return found.st_dev, found.st_ino


def place_new(tmp: Path, path: Path, *, force: bool = False) -> None:
    """Give the complete, fsynced file ``tmp`` its name ``path`` -- by ``link(2)``,
    which fails if the name is taken, unless ``force``; ``tmp`` is gone afterwards."""
    try:
        if force:
            try:
                refuse_existing(path, force=True)
                os.replace(tmp, path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        else:
            try:
                os.link(tmp, path)
            finally:
                os.unlink(tmp)
        _fsync_dir(path.parent)
    except FileExistsError:
        refuse_existing(path, force=False)
        raise
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None


@contextmanager
def new_output(path: Path, force: bool) -> Iterator[Callable[[bytes], None]]:
    """Yield a writer for ``path``; if the block fails after the file was written,
    it is taken back, so a key never exists outside an uncommitted store: removed,
    or, where it replaced a file (``force``), that file is put back -- it may be
    another run's committed key. Only while the name still holds the file this
    run wrote: a file another run has put there since is that run's.

    The writer may be called again: PostgreSQL runs a transaction again after a
    serialization failure or a deadlock. Then it replaces the file it wrote; it
    refused it as one it did not create, and the order failed."""
    written: tuple[int, int] | None = None
    replaced: Path | None = None

    def write(data: bytes) -> None:
        nonlocal written, replaced
        again = written is not None and identity(Path(path)) == written
        if force and written is None:
            replaced = _second_name(Path(path))
        written = write_new(path, data, force=force or again)

    try:
        yield write
    except BaseException:
        if written is not None and identity(Path(path)) == written:
            with contextlib.suppress(OSError):
                if replaced is None:
                    Path(path).unlink()
                else:  # if this fails, the file stays under its second name
                    kept, replaced = replaced, None
                    os.replace(kept, path)
                _fsync_dir(Path(path).parent)
        raise
    finally:
        if replaced is not None:
            with contextlib.suppress(OSError):
                replaced.unlink()


def _second_name(path: Path) -> Path | None:
    """A hard link to the file (or link) ``path`` names, beside it, so that it can
    be put back; None if there is none (or the file system has no hard links).
    Nothing else is replaced (:func:`refuse_existing`), nor linked here."""
    second = path.parent / f".{path.name}.{secrets.token_hex(8)}.replaced"
    try:
        kind = os.lstat(path).st_mode
        if not (stat.S_ISREG(kind) or stat.S_ISLNK(kind)):
            return None
        os.link(path, second, follow_symlinks=False)
    except OSError:
        return None
    return second


@contextmanager
def taken_back_on_failure(
    *paths: Path,
    started: Callable[[], bool] = lambda: False,
    removed: Callable[[list[Path]], None] = lambda _: None,
) -> Iterator[None]:
    """If the block fails, remove those of ``paths`` that it created, unless it
    had ``started`` (a service that ran: what it made then holds its work).

    A start that fails (a store that cannot be opened, a wrong master key) then
    leaves the site as it found it: no new master key without a store, which the
    next start would take for the key of a store it cannot open, and no new
    store without its key, which the next start would refuse to open.

    ``removed`` is told which were removed: a block that announced a file it
    made (a new master key is logged) can say that the file is gone again. The
    directories made for them go too, if nothing else was put in them: a failed
    ``admin controller add`` left an empty ``keystrap-data/`` behind."""
    before = {path for path in paths if path.exists() or path.is_symlink()}
    missing = {d for path in paths for d in _missing_parents(path)}
    try:
        yield
    except BaseException:
        gone = []
        for path in paths:
            if path not in before and not started():
                with contextlib.suppress(OSError):
                    path.unlink()
                    gone.append(path)
        if not started():
            for directory in sorted(missing, key=lambda d: len(d.parts), reverse=True):
                with contextlib.suppress(OSError):  # not made, or not empty: it stays
                    directory.rmdir()
        if gone:
            removed(gone)
        raise


def _missing_parents(path: Path) -> list[Path]:
    """The directories above ``path`` that do not exist yet."""
    missing = []
    for parent in Path(path).absolute().parents:
        if parent.exists():
            break
        missing.append(parent)
    return missing


def _write_temp(path: Path, data: bytes, mode: int) -> Path:
    """A new file beside ``path`` under a name no one can have prepared: made
    exclusively (``O_EXCL``), so a link planted in its place is never followed."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def _fsync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
