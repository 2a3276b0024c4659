"""What the server saw, for the operator's console: each bootstrap step it took or
refused, and when each controller was last heard from.

It lives in the server's database, next to the keys, but holds no key and is no
part of the no-brick rule: the server buffers rows in memory and writes them in
one transaction twice a second, so the log costs two unsynced commits a second
however busy the server is (a crash loses at most that second of
history, never a key). Only authenticated requests are logged, so a flood of
forged packets cannot fill it.

The server only appends, and nothing deletes a row, so ``seq`` (SQLite's rowid:
the largest so far plus one) never repeats and only grows, which the console's
live feed relies on. ``AUTOINCREMENT`` would promise that even after deletions,
at the cost of updating ``sqlite_sequence`` on every insert (1.6 % of the
server's instructions); logs made before this keep it, and behave alike.

The indexes that read it by node and by time belong to its reader, the console,
which adds them (:data:`keystrap.console.queries.INDEXES`): on the server they
cost 3.6 % of its instructions per bootstrap (docs/performance.md §3), which a
site without the console need not pay.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from keystrap.protocol import BootstrapGranted, BootstrapRefused, Event, NodeActivated
from keystrap.store.sqlite import open_database, write_transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS bootstrap_log (
    seq INTEGER PRIMARY KEY, at REAL NOT NULL, node_id BLOB NOT NULL,
    controller_id BLOB NOT NULL, tid INTEGER NOT NULL, flight INTEGER NOT NULL,
    outcome TEXT NOT NULL, cause TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS controller_seen (id BLOB PRIMARY KEY, at REAL NOT NULL);
"""

GRANTED = "granted"
ACTIVATED = "activated"
REFUSED = "refused"


class LogEntry(NamedTuple):
    """One row of ``bootstrap_log``, its columns in order (a tuple: two are made
    per bootstrap, and the log is written as they are)."""

    at: float
    node_id: bytes
    controller_id: bytes
    tid: int
    flight: int  # the request: 2 (asking for the node's key) or 6 (confirming)
    outcome: str  # granted, activated or refused
    cause: str  # the server's reason for a refusal, else ""


@dataclass(frozen=True)
class Batch:
    entries: list[LogEntry]
    seen: dict[bytes, float]  # ID_c -> when last heard from


def entry_for(event: Event, now: float) -> LogEntry | None:
    """The log row for a server event, or None for events the log does not keep."""
    if isinstance(event, BootstrapGranted):
        return LogEntry(now, event.node_id, event.controller_id, event.tid, 2, GRANTED, "")
    if isinstance(event, NodeActivated):
        return LogEntry(now, event.node_id, event.controller_id, event.tid, 6, ACTIVATED, "")
    if isinstance(event, BootstrapRefused):
        return LogEntry(
            now, event.node_id, event.controller_id, event.tid, event.flight, REFUSED, event.reason
        )
    return None


class ActivityLog:
    def __init__(self, path: Path) -> None:
        self._db = open_database(Path(path), SCHEMA)
        self._db.execute("PRAGMA synchronous=NORMAL")  # history, not keys: no fsync per commit
        self._pending: list[LogEntry] = []
        self._seen: dict[bytes, float] = {}

    def record(self, event: Event, now: float) -> None:
        entry = entry_for(event, now)
        if entry is not None:
            self._pending.append(entry)
            self._seen[entry.controller_id] = now

    def heard_from(self, controller_id: bytes, now: float) -> None:
        self._seen[controller_id] = now

    def take(self) -> Batch:
        """What was recorded since the last take (called where records are made)."""
        taken = Batch(self._pending, self._seen)
        self._pending, self._seen = [], {}
        return taken

    def write(self, batch: Batch) -> None:
        """Store a batch (called on the store's thread, see keystrap.store.worker)."""
        if not batch.entries and not batch.seen:
            return
        with write_transaction(self._db) as db:
            db.executemany(
                "INSERT INTO bootstrap_log (at, node_id, controller_id, tid, flight, outcome, "
                "cause) VALUES (?,?,?,?,?,?,?)",
                batch.entries,
            )
            db.executemany(
                "INSERT INTO controller_seen VALUES (?, ?) "
                "ON CONFLICT(id) DO UPDATE SET at=MAX(at, excluded.at)",
                batch.seen.items(),
            )

    def flush(self) -> None:
        self.write(self.take())

    def close(self) -> None:
        self.flush()
        self._db.close()
