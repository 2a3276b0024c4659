"""The SBS key repository in one SQLite file.

Every key (node keys, candidate PSKs, ``RN_c``, controllers' ``SK_cs``) is stored
wrapped with AES-KW under the master key; the file alone reveals none of them.
Each change that matters for the no-brick rule is one SQLite transaction in WAL
mode with ``synchronous=FULL``, so a SIGKILL or power cut never leaves a node
half re-keyed. Several server processes may share the file (SQLite serialises
writers; ``(controller_id, tid)`` is the primary key, so a TID is accepted once
even across processes).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from keystrap.crypto import KeyUnwrapError, unwrap_key, wrap_key
from keystrap.protocol.repository import (
    NodeRecord,
    NodeStatus,
    TransactionExists,
    TransactionRecord,
    TransactionStatus,
    UnknownTransaction,
)
from keystrap.store.errors import StoreError
from keystrap.store.sqlite import open_database, write_transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS controllers (
    id BLOB PRIMARY KEY, name TEXT NOT NULL, host TEXT NOT NULL, port INTEGER NOT NULL,
    sk_wrapped BLOB NOT NULL, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS installers (name TEXT PRIMARY KEY, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    installer TEXT NOT NULL REFERENCES installers(name),
    controller_id BLOB NOT NULL REFERENCES controllers(id),
    key_mode TEXT NOT NULL, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
    id BLOB PRIMARY KEY, order_id INTEGER NOT NULL REFERENCES orders(id),
    key_wrapped BLOB NOT NULL, status TEXT NOT NULL, updated INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS nodes_by_order ON nodes(order_id);
CREATE TABLE IF NOT EXISTS transactions (
    controller_id BLOB NOT NULL, tid INTEGER NOT NULL, node_id BLOB NOT NULL,
    request BLOB NOT NULL, grant_flight BLOB, rn_c_wrapped BLOB NOT NULL, psk_wrapped BLOB,
    status TEXT NOT NULL, created INTEGER NOT NULL,
    PRIMARY KEY (controller_id, tid));
CREATE INDEX IF NOT EXISTS transactions_by_node ON transactions(node_id, status);
CREATE TABLE IF NOT EXISTS revocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, node_id BLOB NOT NULL, at INTEGER NOT NULL);
"""

SCHEMA_VERSION = "1"


@dataclass(frozen=True)
class ControllerInfo:
    controller_id: bytes
    name: str
    host: str
    port: int


@dataclass(frozen=True)
class OrderInfo:
    order_id: int
    installer: str
    controller_id: bytes
    key_mode: str
    nodes: int
    created: int


@dataclass(frozen=True)
class NodeInfo:
    node_id: bytes
    order_id: int
    status: str  # enrolled, bootstrapping, active, revoked


class SqliteRepository:
    def __init__(self, path: Path, master_key: bytes) -> None:
        self.path = Path(path)
        self._kek = master_key
        self._db = open_database(self.path, SCHEMA, foreign_keys=True)
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        self._check_master_key()

    def close(self) -> None:
        self._db.close()

    # -- helpers ------------------------------------------------------------------

    def _wrap(self, key: bytes) -> bytes:
        return wrap_key(self._kek, key)

    def _unwrap(self, wrapped: bytes) -> bytes:
        try:
            return unwrap_key(self._kek, wrapped)
        except KeyUnwrapError:
            raise StoreError(
                f"{self.path}: a stored key does not unwrap -- wrong master key file?"
            ) from None

    def _check_master_key(self) -> None:
        """Store a wrapped check value once, so a wrong master key fails at start."""
        row = self._db.execute("SELECT value FROM meta WHERE name='kek_check'").fetchone()
        if row is None:
            self._db.execute(
                "INSERT INTO meta VALUES ('kek_check', ?)", (self._wrap(bytes(16)).hex(),)
            )
        elif self._unwrap(bytes.fromhex(row[0])) != bytes(16):
            raise StoreError(f"{self.path}: master key check failed")

    def data_version(self) -> int:
        """Changes whenever another connection commits (used to reload controllers)."""
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    # -- KeyRepository ------------------------------------------------------------

    def get_node(self, node_id: bytes) -> NodeRecord | None:
        row = self._db.execute(
            "SELECT key_wrapped, status FROM nodes WHERE id=?", (node_id,)
        ).fetchone()
        if row is None:
            return None
        return NodeRecord(node_id, self._unwrap(row[0]), NodeStatus(row[1]))

    def get_transaction(self, controller_id: bytes, tid: int) -> TransactionRecord | None:
        row = self._db.execute(
            "SELECT node_id, request, grant_flight, rn_c_wrapped, psk_wrapped, status, created "
            "FROM transactions WHERE controller_id=? AND tid=?",
            (controller_id, tid),
        ).fetchone()
        if row is None:
            return None
        return TransactionRecord(
            controller_id=controller_id,
            tid=tid,
            node_id=row[0],
            request=row[1],
            grant=row[2],
            rn_c=self._unwrap(row[3]),
            psk=None if row[4] is None else self._unwrap(row[4]),
            status=TransactionStatus(row[5]),
            created=row[6],
        )

    def count_pending(self, node_id: bytes) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM transactions WHERE node_id=? AND status='pending'", (node_id,)
        ).fetchone()
        return int(row[0])

    def count_all_pending(self) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM transactions WHERE status='pending'"
        ).fetchone()
        return int(row[0])

    def add_transaction(self, record: TransactionRecord) -> None:
        try:
            with write_transaction(self._db) as db:
                db.execute(
                    "INSERT INTO transactions VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        record.controller_id,
                        record.tid,
                        record.node_id,
                        record.request,
                        record.grant,
                        self._wrap(record.rn_c),
                        None if record.psk is None else self._wrap(record.psk),
                        record.status.value,
                        record.created,
                    ),
                )
        except sqlite3.IntegrityError:
            raise TransactionExists(f"TID {record.tid} already recorded") from None

    def confirm(self, controller_id: bytes, tid: int) -> None:
        with write_transaction(self._db) as db:
            row = db.execute(
                "SELECT node_id, psk_wrapped FROM transactions "
                "WHERE controller_id=? AND tid=? AND status='pending'",
                (controller_id, tid),
            ).fetchone()
            if row is None or row[1] is None:
                raise UnknownTransaction(f"no pending transaction for TID {tid}")
            node_id, psk_wrapped = row
            db.execute(
                "UPDATE nodes SET key_wrapped=?, status='active', updated=? WHERE id=?",
                (psk_wrapped, int(time.time()), node_id),
            )
            db.execute(
                "UPDATE transactions SET status='superseded', psk_wrapped=NULL, grant_flight=NULL "
                "WHERE node_id=? AND status='pending' AND NOT (controller_id=? AND tid=?)",
                (node_id, controller_id, tid),
            )
            db.execute(
                "UPDATE transactions SET status='confirmed', psk_wrapped=NULL, grant_flight=NULL "
                "WHERE controller_id=? AND tid=?",
                (controller_id, tid),
            )

    # -- controllers --------------------------------------------------------------

    def add_controller(self, info: ControllerInfo, sk_cs: bytes) -> None:
        try:
            with write_transaction(self._db) as db:
                db.execute(
                    "INSERT INTO controllers VALUES (?,?,?,?,?,?)",
                    (
                        info.controller_id,
                        info.name,
                        info.host,
                        info.port,
                        self._wrap(sk_cs),
                        int(time.time()),
                    ),
                )
        except sqlite3.IntegrityError:
            raise StoreError("a controller with this ID is already registered") from None

    def controller_keys(self) -> dict[bytes, bytes]:
        rows = self._db.execute("SELECT id, sk_wrapped FROM controllers").fetchall()
        return {row[0]: self._unwrap(row[1]) for row in rows}

    def list_controllers(self) -> list[ControllerInfo]:
        rows = self._db.execute("SELECT id, name, host, port FROM controllers ORDER BY name")
        return [ControllerInfo(*row) for row in rows]

    def get_controller(self, controller_id: bytes) -> ControllerInfo | None:
        row = self._db.execute(
            "SELECT id, name, host, port FROM controllers WHERE id=?", (controller_id,)
        ).fetchone()
        return None if row is None else ControllerInfo(*row)

    def remove_controller(self, controller_id: bytes) -> None:
        with write_transaction(self._db) as db:
            used = db.execute(
                "SELECT COUNT(*) FROM orders WHERE controller_id=?", (controller_id,)
            ).fetchone()[0]
            if used:
                raise StoreError(f"controller is used by {used} order(s); remove them first")
            if db.execute("DELETE FROM controllers WHERE id=?", (controller_id,)).rowcount == 0:
                raise StoreError("no such controller")

    # -- installers and orders ----------------------------------------------------

    def create_order(
        self,
        installer: str,
        controller_id: bytes,
        keys: Iterable[tuple[bytes, bytes]],
        key_mode: str,
    ) -> int:
        """Enrol nodes ``(node_id, initial_key)`` for one installer in one transaction."""
        now = int(time.time())
        with write_transaction(self._db) as db:
            if (
                db.execute("SELECT 1 FROM controllers WHERE id=?", (controller_id,)).fetchone()
                is None
            ):
                raise StoreError("unknown controller; add it with: keystrap admin controller add")
            db.execute("INSERT OR IGNORE INTO installers VALUES (?, ?)", (installer, now))
            cursor = db.execute(
                "INSERT INTO orders (installer, controller_id, key_mode, created) VALUES (?,?,?,?)",
                (installer, controller_id, key_mode, now),
            )
            order_id = cursor.lastrowid
            assert order_id is not None
            try:
                db.executemany(
                    "INSERT INTO nodes VALUES (?,?,?,'enrolled',?)",
                    ((nid, order_id, self._wrap(key), now) for nid, key in keys),
                )
            except sqlite3.IntegrityError:
                raise StoreError("a node of this order is already enrolled") from None
        return order_id

    def list_orders(self) -> list[OrderInfo]:
        rows = self._db.execute(
            "SELECT o.id, o.installer, o.controller_id, o.key_mode, "
            "(SELECT COUNT(*) FROM nodes n WHERE n.order_id=o.id), o.created "
            "FROM orders o ORDER BY o.id"
        )
        return [OrderInfo(*row) for row in rows]

    def remove_order(self, order_id: int) -> int:
        """Remove an order and its nodes; returns how many nodes went with it."""
        with write_transaction(self._db) as db:
            nodes = [r[0] for r in db.execute("SELECT id FROM nodes WHERE order_id=?", (order_id,))]
            db.executemany("DELETE FROM transactions WHERE node_id=?", ((n,) for n in nodes))
            db.execute("DELETE FROM nodes WHERE order_id=?", (order_id,))
            if db.execute("DELETE FROM orders WHERE id=?", (order_id,)).rowcount == 0:
                raise StoreError(f"no order {order_id}")
        return len(nodes)

    def list_installers(self) -> list[tuple[str, int]]:
        rows = self._db.execute(
            "SELECT i.name, (SELECT COUNT(*) FROM orders o WHERE o.installer=i.name) "
            "FROM installers i ORDER BY i.name"
        )
        return [(row[0], row[1]) for row in rows]

    def remove_installer(self, name: str) -> None:
        with write_transaction(self._db) as db:
            used = db.execute("SELECT COUNT(*) FROM orders WHERE installer=?", (name,)).fetchone()[
                0
            ]
            if used:
                raise StoreError(f"installer {name!r} has {used} order(s); remove them first")
            if db.execute("DELETE FROM installers WHERE name=?", (name,)).rowcount == 0:
                raise StoreError(f"no installer {name!r}")

    # -- nodes --------------------------------------------------------------------

    def list_nodes(self) -> list[NodeInfo]:
        rows = self._db.execute(
            "SELECT n.id, n.order_id, n.status, EXISTS(SELECT 1 FROM transactions t "
            "WHERE t.node_id=n.id AND t.status='pending') FROM nodes n ORDER BY n.id"
        )
        out = []
        for node_id, order_id, status, pending in rows:
            shown = "bootstrapping" if pending and status != "revoked" else status
            out.append(NodeInfo(node_id, order_id, shown))
        return out

    def revoke(self, node_id: bytes) -> None:
        with write_transaction(self._db) as db:
            updated = db.execute(
                "UPDATE nodes SET status='revoked', updated=? WHERE id=?",
                (int(time.time()), node_id),
            ).rowcount
            if updated == 0:
                raise StoreError("no such node")
            db.execute(
                "INSERT INTO revocations (node_id, at) VALUES (?, ?)", (node_id, int(time.time()))
            )
            db.execute(
                "UPDATE transactions SET status='superseded', psk_wrapped=NULL, "
                "grant_flight=NULL WHERE node_id=? AND status='pending'",
                (node_id,),
            )

    def revocations_after(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        rows = self._db.execute(
            "SELECT seq, node_id FROM revocations WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        )
        return [(int(seq), bytes(node_id)) for seq, node_id in rows]

    def unwrapped_node_keys(self) -> Iterator[tuple[bytes, bytes]]:
        """For audits such as "no IK left": yields ``(node_id, key)``; never log the key."""
        for node_id, wrapped in self._db.execute("SELECT id, key_wrapped FROM nodes"):
            yield node_id, self._unwrap(wrapped)
