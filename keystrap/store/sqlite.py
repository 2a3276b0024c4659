"""What the server's repository and the controller's state file share: how a
database file is opened, and how a write is made atomic."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def open_database(path: Path, schema: str, *, foreign_keys: bool = False) -> sqlite3.Connection:
    """Open (or create) a private database file.

    WAL with ``synchronous=FULL``: a commit is on disk before anything that
    depends on it is sent, which the no-brick rule needs. Autocommit mode, so that
    :func:`write_transaction` alone decides where a transaction starts and ends.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    if foreign_keys:
        db.execute("PRAGMA foreign_keys=ON")
    db.execute("PRAGMA busy_timeout=10000")
    db.executescript(schema)
    path.chmod(0o600)
    return db


@contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One atomic write transaction (taken immediately, so writers queue up)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
