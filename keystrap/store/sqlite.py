"""What the server's repository and the controller's state file share: how a
database file is opened, how a write is made atomic, and how a live database is
copied and checked."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from keystrap.store.atomic import make_private_dirs
from keystrap.store.errors import StoreError

SIDECARS = ("-wal", "-shm", "-journal")

# Python's sqlite3 binds int, float, str and bytearray directly, but sends every
# bytes parameter through its adapter registry first, which, finding nothing,
# asks the protocol and the object for __adapt__ / __conform__ and formats and
# discards an AttributeError for each. IDs, keys and flights are all bytes (about
# 14 parameters a bootstrap), and this was 3.5 % of the SBS's instructions per
# bootstrap (docs/performance.md §3). An adapter for bytes ends the search at the
# first lookup; b.__bytes__() returns b itself, bound as a BLOB as before. The
# registry is the sqlite3 module's, so this holds process-wide.
sqlite3.register_adapter(bytes, bytes.__bytes__)


@dataclass(frozen=True)
class StoreKind:
    """Which keystrap store a database file is, told by its tables, so that a
    path given by mistake (the controller's state as the server's store, an
    application's database) is refused before the schema is added to it."""

    name: str
    has: str  # a table every store of this kind holds
    lacks: str | None = None  # a table only another kind holds

    def recognises(self, tables: set[str]) -> bool:
        return self.has in tables and self.lacks not in tables


@contextmanager
def private_files() -> Iterator[None]:
    """Files created inside are 0600 whatever the caller's umask.

    SQLite creates its ``-wal`` and ``-shm`` files itself, with the database's
    mode but after the umask; only the umask reaches that code.
    """
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def make_private(path: Path) -> None:
    """chmod 0600 the database and whichever of its sidecar files exist."""
    for name in ("", *SIDECARS):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{name}").chmod(0o600)


def files_of_new_database(path: Path) -> tuple[Path, ...]:
    """The files a database at ``path`` would be made of, if none is there yet
    (for :func:`keystrap.store.atomic.taken_back_on_failure`); nothing of an
    existing database, whose ``-wal`` may hold its last commits."""
    if path.exists() or path.is_symlink():
        return ()
    return tuple(Path(f"{path}{name}") for name in ("", *SIDECARS))


def writable(path: Path) -> bool:
    """Whether this process may write ``path``, and its mode lets anyone at all:
    root may write a file of mode 0444, but an operator who made it read-only
    meant it."""
    return bool(path.stat().st_mode & 0o222) and os.access(path, os.W_OK)


def refuse_read_only(path: Path) -> None:
    """One line for a command that would change an existing database it may not
    write, before anything is done: it used to be chmodded 0600 and written."""
    if path.exists() and not writable(path):
        mode = stat.S_IMODE(path.stat().st_mode)
        raise StoreError(
            f"{path} is read-only (mode {mode:04o}) and is left as it is; this command "
            f"changes it: make it writable first (chmod 600 {path})"
        )


def busy(exc: sqlite3.Error) -> bool:
    """SQLite waited its busy timeout (10 s) for another connection's write
    lock: the database is sound, only taken."""
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY


BUSY_HINT = (
    "another process has held its write lock for over 10 s (a server's batch, a large "
    "order, another keystrap command); nothing was changed: try again"
)


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode, every file it creates 0600; a file that is
    not a database, or cannot be opened, is a :class:`StoreError` naming it, and
    so is one that may not be written (:func:`refuse_read_only`)."""
    refuse_read_only(path)
    try:
        with private_files():
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout=10000")
            db.execute("SELECT COUNT(*) FROM sqlite_schema").fetchone()
    except (sqlite3.Error, UnicodeDecodeError) as exc:  # a damaged file's message may not decode
        raise StoreError(f"cannot open database {path}: {exc}") from None
    make_private(path)
    return db


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection for a command that only reads the database at ``path``, which
    must exist: nothing is created, migrated or chmodded, and every write is
    refused (``query_only``).

    A file this process may write is opened read-write all the same, so that
    SQLite removes the ``-wal`` and ``-shm`` it makes when the last connection
    closes; a read-only connection leaves them behind. One it may not write is
    opened read-only, and as immutable while no ``-wal`` shows a connection
    that writes: SQLite would make its sidecars read-only too, and a writer
    could not use them once the file is made writable again. No keystrap
    command writes such a file (:func:`refuse_read_only`)."""
    try:
        if writable(path):
            query = "mode=rw"
        else:
            wal = Path(f"{path}{SIDECARS[0]}")
            query = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
        with private_files():
            db = sqlite3.connect(
                f"{path.resolve().as_uri()}?{query}",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
            db.execute("PRAGMA query_only=ON")
            db.execute("PRAGMA busy_timeout=10000")
            db.execute("SELECT COUNT(*) FROM sqlite_schema").fetchone()
    except (OSError, sqlite3.Error, UnicodeDecodeError) as exc:
        raise StoreError(f"cannot open database {path}: {exc}") from None
    return db


def refuse_tableless(path: Path, kind: StoreKind) -> None:
    """Refuse the existing database file ``path`` if it holds no table (0 bytes:
    truncated, or made by hand). keystrap writes the tables as it makes such a
    file, so this is not a new one of ``kind``: a service that took it for one
    would start over where the site's was, and say nothing. Whether a backup
    goes there or a new one starts is the operator's decision."""
    db = connect_read_only(path)
    try:
        empty = not table_names(db, path)
    finally:
        db.close()
    if empty:
        raise StoreError(
            f"{path} refused: it is not {kind.name} (it holds no table); left untouched: "
            "restore it from a backup, or remove the file to start a new one"
        )


def table_names(db: sqlite3.Connection, path: Path) -> set[str]:
    """The tables of the database ``db`` has open (at ``path``, for the error)."""
    try:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_schema WHERE type='table'")}
    except (sqlite3.Error, UnicodeDecodeError) as exc:
        db.close()
        raise StoreError(f"cannot read database {path}: {exc}") from None


def open_database(
    path: Path, schema: str, *, kind: StoreKind | None = None, foreign_keys: bool = False
) -> sqlite3.Connection:
    """Open (or create) a private database file (of this ``kind``, if given).

    WAL with ``synchronous=FULL``: a commit is on disk before anything that
    depends on it is sent, which the no-brick rule needs. Autocommit mode, so that
    :func:`write_transaction` alone decides where a transaction starts and ends.
    """
    make_private_dirs(path.parent)
    db = connect(path)
    tables = table_names(db, path)
    if kind is not None and tables and not kind.recognises(tables):
        db.close()
        raise StoreError(f"{path} is a SQLite database, but not {kind.name}; left untouched")
    try:
        with private_files():
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            if foreign_keys:
                db.execute("PRAGMA foreign_keys=ON")
            db.executescript(schema)
    except sqlite3.Error as exc:
        db.close()
        raise StoreError(f"cannot use database {path}: {exc}") from None
    make_private(path)
    return db


@contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One atomic write transaction (taken immediately, so writers queue up).

    Whatever the body does before the commit -- such as writing and fsyncing the
    file that hands a new key out -- is undone with it if the commit fails.

    Inside a transaction already open (a store thread's batch, see
    :mod:`keystrap.store.worker`) it is a savepoint instead: atomic on its own,
    made durable by the outer commit together with the rest of the batch."""
    if db.in_transaction:
        db.execute("SAVEPOINT inner")
        try:
            yield db
            db.execute("RELEASE inner")
        except BaseException:
            db.execute("ROLLBACK TO inner")
            db.execute("RELEASE inner")
            raise
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def integrity_problems(db: sqlite3.Connection) -> list[str]:
    """SQLite's own check of every page and index; empty when all is well."""
    try:
        rows = db.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.Error as exc:
        return [str(exc)]
    lines = [line for row in rows for line in str(row[0]).splitlines()]
    return [line for line in lines if line != "ok" and not line.startswith("*** in database")]


def copy_database(source: sqlite3.Connection, target: Path, *, standalone: bool = True) -> None:
    """A consistent copy of ``source`` into ``target`` (SQLite's online backup
    API: one read snapshot, writers carry on), 0600 and fsynced; ``standalone``:
    one self-contained file without a WAL. An existing ``target`` (a store being
    restored) is replaced in one transaction."""
    try:
        with private_files():
            copy = sqlite3.connect(target, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot write {target}: {exc}") from None
    try:
        source.backup(copy)
        if standalone:
            copy.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot copy the database into {target}: {exc}") from None
    finally:
        copy.close()
    make_private(target)
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
