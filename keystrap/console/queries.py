"""The console's reads: paged node lists, the dashboard's counts, the live feed.

Every query is bounded by an index, so each answers in milliseconds over 10^6
nodes (bench/console.py measures them): lists are paged by key ("after this
EUI-64"), never by OFFSET, and counts read covering indexes only.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path

from keystrap.store import activity
from keystrap.store.sqlite import open_database, write_transaction

INDEXES = """
CREATE INDEX IF NOT EXISTS nodes_by_status ON nodes(status, id);
CREATE INDEX IF NOT EXISTS nodes_by_order_id ON nodes(order_id, id);
CREATE INDEX IF NOT EXISTS transactions_by_status ON transactions(status, created);
CREATE INDEX IF NOT EXISTS bootstrap_log_by_node ON bootstrap_log(node_id, seq);
CREATE INDEX IF NOT EXISTS bootstrap_log_by_time ON bootstrap_log(at);
CREATE TABLE IF NOT EXISTS node_counts (status TEXT PRIMARY KEY, n INTEGER NOT NULL);
"""
# Counting 10^6 index entries takes longer than a page may; these keep the count
# of nodes per state up to date with every write instead (one row update each).
COUNTERS = (
    """CREATE TRIGGER node_counts_insert AFTER INSERT ON nodes BEGIN
    INSERT INTO node_counts VALUES (NEW.status, 1)
        ON CONFLICT(status) DO UPDATE SET n = n + 1;
    END""",
    """CREATE TRIGGER node_counts_delete AFTER DELETE ON nodes BEGIN
    UPDATE node_counts SET n = n - 1 WHERE status = OLD.status;
    END""",
    """CREATE TRIGGER node_counts_update AFTER UPDATE OF status ON nodes
    WHEN OLD.status != NEW.status BEGIN
    UPDATE node_counts SET n = n - 1 WHERE status = OLD.status;
    INSERT INTO node_counts VALUES (NEW.status, 1)
        ON CONFLICT(status) DO UPDATE SET n = n + 1;
    END""",
)
PAGE = 50
STATES = ("enrolled", "bootstrapping", "active", "revoked")


def open_store(path: Path) -> sqlite3.Connection:
    """The console's own connection to the server's database. Creating the indexes
    takes a few seconds once on a large existing store; the server keeps them."""
    db = open_database(Path(path), activity.SCHEMA + INDEXES, foreign_keys=True)
    with write_transaction(db):
        installed = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='trigger' AND name='node_counts_insert'"
        ).fetchone()
        if installed is None:
            for trigger in COUNTERS:
                db.execute(trigger)
            db.execute("DELETE FROM node_counts")
            db.execute("INSERT INTO node_counts SELECT status, COUNT(*) FROM nodes GROUP BY status")
    return db


def id_range(search: str) -> tuple[bytes, bytes] | None:
    """The IDs an EUI-64 prefix stands for (any separators), as ``[low, high)``."""
    digits = re.sub(r"[^0-9a-fA-F]", "", search)[:16]
    if not digits:
        return None
    low = int(digits.ljust(16, "0"), 16)
    high = low + 16 ** (16 - len(digits))
    # Past the last ID, a 9-byte blob sorts after every 8-byte one.
    return low.to_bytes(8, "big"), high.to_bytes(8 if high < 2**64 else 9, "big")


@dataclass(frozen=True)
class NodeFilter:
    search: str = ""
    state: str = ""
    order: int | None = None
    installer: str = ""
    controller: bytes | None = None


@dataclass(frozen=True)
class NodeRow:
    node_id: bytes
    order_id: int
    installer: str
    controller_id: bytes
    state: str


def page_nodes(
    db: sqlite3.Connection, where: NodeFilter, after: bytes = b"", limit: int = PAGE
) -> list[NodeRow]:
    """One page of nodes in EUI-64 order, starting after ``after``.

    Each query walks one index in key order and stops after ``limit`` rows: the
    primary key, ``nodes(status, id)`` or ``nodes(order_id, id)``. An installer
    or a controller is a set of orders, so its page is merged from one such walk
    per order (a walk over all nodes would read 10^6 rows to find a small
    installer's twenty)."""
    if not where.installer and where.controller is None:
        return _page(db, where, after, limit)
    orders = db.execute(
        "SELECT id FROM orders WHERE (? = '' OR installer = ?) "
        "AND (? IS NULL OR controller_id = ?)",
        (where.installer, where.installer, where.controller, where.controller),
    ).fetchall()
    rows = []
    for (order,) in orders:
        if where.order in (None, order):
            one = replace(where, order=order, installer="", controller=None)
            rows += _page(db, one, after, limit)
    return sorted(rows, key=lambda row: row.node_id)[:limit]


def _page(db: sqlite3.Connection, where: NodeFilter, after: bytes, limit: int) -> list[NodeRow]:
    # One lower and one upper bound, so that SQLite's range on the key is the tight one.
    clauses: list[str] = ["n.id > ?"]
    params: list[object] = [after]
    found = id_range(where.search)
    if found is not None:
        low, high = found
        if after < low:
            clauses, params = ["n.id >= ?"], [low]
        clauses.append("n.id < ?")
        params.append(high)
    pending = "EXISTS(SELECT 1 FROM transactions t WHERE t.node_id=n.id AND t.status='pending')"
    if where.state == "bootstrapping":
        # Few nodes are bootstrapping at a time: start from the pending transactions.
        clauses.append(
            "n.status != 'revoked' AND n.id IN "
            "(SELECT node_id FROM transactions WHERE status = 'pending')"
        )
    elif where.state in STATES:
        clauses.append("n.status = ?")
        params.append(where.state)
        if where.state != "revoked":
            clauses.append(f"NOT {pending}")
    if where.order is not None:
        clauses.append("n.order_id = ?")
        params.append(where.order)
    index = ""
    if where.order is not None and where.state in ("enrolled", "active", "revoked"):
        # Walk whichever of the two is smaller; SQLite cannot know which that is.
        counts = dict(db.execute("SELECT status, n FROM node_counts").fetchall())
        rare = counts.get(where.state, 0) * 10 < sum(counts.values())
        index = f"INDEXED BY {'nodes_by_status' if rare else 'nodes_by_order_id'}"
    rows = db.execute(
        f"SELECT n.id, n.order_id, o.installer, o.controller_id, n.status, {pending} "  # noqa: S608 - fixed fragments
        f"FROM nodes n {index} JOIN orders o ON o.id = n.order_id "
        f"WHERE {' AND '.join(clauses)} ORDER BY n.id LIMIT ?",
        (*params, limit),
    )
    return [
        NodeRow(nid, order, installer, cid, "bootstrapping" if busy and st != "revoked" else st)
        for nid, order, installer, cid, st, busy in rows
    ]


def order_choices(db: sqlite3.Connection) -> list[tuple[int, str]]:
    """``(order, installer)`` for the filter menu (without the node counts, which
    cost a count over each order's nodes)."""
    return db.execute("SELECT id, installer FROM orders ORDER BY id").fetchall()


@dataclass(frozen=True)
class Dashboard:
    states: dict[str, int]
    per_minute: list[tuple[int, int]]  # (minute since the epoch, confirmed bootstraps)
    failures: list[tuple[str, int]]  # (server's reason, count), most frequent first
    stalled: int  # bootstraps granted and never confirmed within the window
    controllers_seen: dict[bytes, float]


def dashboard(db: sqlite3.Connection, now: float, window: int, minutes: int = 30) -> Dashboard:
    states = dict.fromkeys(STATES, 0)
    for status, count in db.execute("SELECT status, n FROM node_counts"):
        states[status] = count
    busy = db.execute(
        "SELECT n.status, COUNT(DISTINCT t.node_id) FROM transactions t "
        "JOIN nodes n ON n.id = t.node_id WHERE t.status='pending' "
        "AND n.status != 'revoked' GROUP BY n.status"
    )
    for status, count in busy:
        states[status] -= count
        states["bootstrapping"] += count
    first = int(now // 60) - minutes + 1
    counted = dict(
        db.execute(
            "SELECT CAST(at / 60 AS INTEGER) AS m, COUNT(*) FROM bootstrap_log "
            "WHERE at >= ? AND outcome = ? GROUP BY m",
            (first * 60, activity.ACTIVATED),
        ).fetchall()
    )
    failures = db.execute(
        "SELECT cause, COUNT(*) AS c FROM bootstrap_log WHERE at >= ? AND outcome = ? "
        "GROUP BY cause ORDER BY c DESC",
        (now - 86_400, activity.REFUSED),
    ).fetchall()
    stalled = db.execute(
        "SELECT COUNT(*) FROM transactions WHERE status='pending' AND created < ?",
        (int(now) - window,),
    ).fetchone()[0]
    seen = dict(db.execute("SELECT id, at FROM controller_seen").fetchall())
    return Dashboard(
        states,
        [(m, counted.get(m, 0)) for m in range(first, first + minutes)],
        [(cause, count) for cause, count in failures],
        stalled,
        seen,
    )


@dataclass(frozen=True)
class LogRow:
    seq: int
    at: float
    node_id: bytes
    controller_id: bytes
    tid: int
    flight: int
    outcome: str
    cause: str


def log_after(db: sqlite3.Connection, seq: int, limit: int = 500) -> list[LogRow]:
    rows = db.execute(
        "SELECT seq, at, node_id, controller_id, tid, flight, outcome, cause "
        "FROM bootstrap_log WHERE seq > ? ORDER BY seq LIMIT ?",
        (seq, limit),
    )
    return [LogRow(*row) for row in rows]


def last_seq(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM bootstrap_log").fetchone()[0])


def node_log(db: sqlite3.Connection, node_id: bytes) -> list[LogRow]:
    rows = db.execute(
        "SELECT seq, at, node_id, controller_id, tid, flight, outcome, cause "
        "FROM bootstrap_log WHERE node_id = ? ORDER BY seq",
        (node_id,),
    )
    return [LogRow(*row) for row in rows]


def node_transactions(db: sqlite3.Connection, node_id: bytes) -> list[tuple[bytes, int, str, int]]:
    """``(controller_id, tid, status, created)`` of every bootstrap the server granted."""
    return db.execute(
        "SELECT controller_id, tid, status, created FROM transactions WHERE node_id = ? "
        "ORDER BY created",
        (node_id,),
    ).fetchall()


def node_summary(db: sqlite3.Connection, node_id: bytes) -> NodeRow | None:
    rows = page_nodes(db, NodeFilter(search=node_id.hex()), b"", 1)
    return rows[0] if rows and rows[0].node_id == node_id else None
