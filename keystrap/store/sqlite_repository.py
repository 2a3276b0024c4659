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

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keystrap.ids import eui64
from keystrap.protocol.repository import (
    NodeRecord,
    NodeStatus,
    TransactionExists,
    TransactionRecord,
    UnknownTransaction,
)
from keystrap.store import records
from keystrap.store.errors import StoreError, StoreInterrupted
from keystrap.store.migrations import (
    LATEST,
    META,
    TABLES,
    UNNUMBERED_SQLITE,
    Migration,
    require_latest,
    steps_after,
)
from keystrap.store.sqlite import (
    BUSY_HINT,
    StoreKind,
    busy,
    connect_read_only,
    copy_database,
    integrity_problems,
    open_database,
    table_names,
    write_transaction,
)

SERVER_STORE = StoreKind("a keystrap server store", has="controllers")
RESTORED_AT = "revocations_restored_at"  # meta: the last revocation of the backup restored


def _revocations_numbered(store: Path) -> int:
    """The highest revocation number the store at ``store`` has handed out (0 if
    there is no store, or it cannot be read: a damaged store is why one restores)."""
    if not store.exists():
        return 0
    try:
        db = connect_read_only(store)
    except StoreError:
        return 0
    try:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name='revocations'").fetchone()
    except sqlite3.Error:
        return 0
    finally:
        db.close()
    return int(row[0]) if row is not None and isinstance(row[0], int) else 0


def not_a_server_store(tables: set[str]) -> str:
    """Why a database with ``tables`` is not a server store to be read as it is,
    or "" if it is one. Every table must be there: an empty file reads as a
    database without tables, and a database that lacks some would be given them
    by a writing open (a new site is made that way)."""
    missing = sorted({"meta", *TABLES} - tables)  # the store's own table among them
    if not missing:
        return ""
    lacks = f" (it has no table {', '.join(missing)})" if tables else ""
    return f"it is not {SERVER_STORE.name}{lacks}"


def server_store_read_only(path: Path, *, whole: bool = True) -> sqlite3.Connection:
    """A read-only connection (:func:`connect_read_only`) to the server store at
    ``path``; any other database is refused. Not ``whole``, a store is taken
    whatever it lacks of today's schema -- one from before revocations has no
    such table -- as long as it is one (a backup before ``admin migrate``)."""
    db = connect_read_only(path)
    tables = table_names(db, path)
    why = not_a_server_store(tables)
    if why and (whole or not SERVER_STORE.recognises(tables)):
        db.close()
        raise StoreError(f"{path} refused: {why}; left untouched")
    return db


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
    version: int  # wire profile: 1 paper, 2 compact


@dataclass(frozen=True)
class NodeInfo:
    node_id: bytes
    order_id: int
    status: str  # enrolled, bootstrapping, active, revoked


@dataclass
class CheckReport:
    """What ``keystrap admin check`` found: problems (empty if none) and counts."""

    problems: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def _nothing() -> None:
    pass


_GET_TRANSACTION = (
    f"SELECT {records.TRANSACTION_COLUMNS} FROM transactions t "  # noqa: S608 (constants)
    "WHERE t.controller_id=? AND t.tid=?"
)
_LOOKUP_REQUEST = (
    f"SELECT {records.TRANSACTION_COLUMNS}, n.key_wrapped, n.status, "  # noqa: S608 (constant)
    "(SELECT COUNT(*) FROM transactions p WHERE p.node_id=?3 AND p.status='pending') "
    "FROM (SELECT 1) LEFT JOIN transactions t ON t.controller_id=?1 AND t.tid=?2 "
    "LEFT JOIN nodes n ON n.id=?3"
)
_LOOKUP_CONFIRM = (
    f"SELECT {records.TRANSACTION_COLUMNS}, n.status FROM transactions t "  # noqa: S608
    "LEFT JOIN nodes n ON n.id=t.node_id WHERE t.controller_id=? AND t.tid=?"
)
_TAKE_CANDIDATE = (  # two lookups by primary key: cheaper than SQLite's UPDATE ... FROM
    "UPDATE nodes SET key_wrapped=(SELECT psk_wrapped FROM transactions "
    "WHERE controller_id=?1 AND tid=?2), status='active', updated=?3 "
    "WHERE id=(SELECT node_id FROM transactions WHERE controller_id=?1 AND tid=?2 "
    "AND status='pending' AND psk_wrapped IS NOT NULL)"
)
_END_PENDING = (
    "UPDATE transactions SET psk_wrapped=NULL, grant_flight=NULL, status=CASE "
    "WHEN controller_id=?1 AND tid=?2 THEN 'confirmed' ELSE 'superseded' END "
    "WHERE node_id=(SELECT node_id FROM transactions WHERE controller_id=?1 AND tid=?2) "
    "AND status='pending'"
)


class _InBatch:
    """:meth:`SqliteRepository._atomic` inside a batch: a class rather than a
    generator, made once, because it wraps two writes of every bootstrap."""

    def __init__(self, repository: SqliteRepository) -> None:
        self._repository = repository

    def __enter__(self) -> sqlite3.Connection:
        return self._repository._db

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _: Any) -> None:
        if not isinstance(exc, sqlite3.Error):
            return
        repository = self._repository
        if repository._db.in_transaction:
            repository._db.execute("ROLLBACK")
        repository._careful = True
        raise StoreInterrupted(
            f"{repository.path}: a write failed ({exc}); the batch is undone, to be run "
            "again with each write undone alone"
        ) from None


class SqliteRepository:
    def __init__(
        self, path: Path, master_key: bytes, *, migrate: bool = False, read_only: bool = False
    ) -> None:
        """Opens (or creates) the store; an older schema is refused unless
        ``migrate``, which applies the missing steps (listed in :attr:`applied`).
        ``read_only`` (the admin commands that only read): an existing store as
        it is, never created, migrated or chmodded; any other file is refused."""
        self.path = Path(path)
        self._kek = master_key
        self._read_only = read_only
        self._wrapping = records.KeyWrapping(master_key, str(self.path))
        self._batching = self._savepoints = self._careful = False
        self._in_batch = _InBatch(self)
        if read_only:
            self._db = server_store_read_only(self.path)
        else:
            self._db = open_database(self.path, "", kind=SERVER_STORE, foreign_keys=True)
        try:
            self.applied = self._bring_up_to_date(migrate)
            self._check_master_key()
        except sqlite3.Error as exc:
            self._db.close()
            # A store another process holds is not damaged: "admin check" would find nothing.
            hint = f": {BUSY_HINT}" if busy(exc) else " (keystrap admin check says more)"
            raise StoreError(f"{self.path}: {exc}{hint}") from None
        except StoreError:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def reader(self) -> SqliteRepository:
        """Another connection to this store, read-only: one a caller can read
        through while this one waits for the write lock (the console's pages)."""
        return SqliteRepository(self.path, self._kek, read_only=True)

    # -- helpers ------------------------------------------------------------------

    @staticmethod
    def _schema_version(db: sqlite3.Connection) -> int:
        rows = dict(db.execute("SELECT name, value FROM meta WHERE name LIKE 'schema%'"))
        # Stores made before versioning recorded 'schema' = '1'.
        return int(rows.get("schema_version", rows.get("schema", 0)))

    @staticmethod
    def _unnumbered(db: sqlite3.Connection) -> bool:
        """The store was made before schemas were numbered (see UNNUMBERED_SQLITE)."""
        names = {name for (name,) in db.execute("SELECT name FROM meta WHERE name LIKE 'schema%'")}
        return names == {"schema"}

    def _bring_up_to_date(self, migrate: bool) -> list[Migration]:
        if self._read_only:  # its version is told, never changed
            require_latest(self._schema_version(self._db), str(self.path))
            return []
        with write_transaction(self._db) as db:
            db.execute(META)
            version = self._schema_version(db)
            if version and not migrate:
                require_latest(version, str(self.path))
                return []
            if self._unnumbered(db):
                db.execute(UNNUMBERED_SQLITE)
            steps = steps_after(version)
            for step in steps:
                for statement in step.sqlite.split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute("DELETE FROM meta WHERE name='schema'")
            db.execute(
                "INSERT INTO meta VALUES ('schema_version', ?) "
                "ON CONFLICT(name) DO UPDATE SET value=excluded.value",
                (str(max(version, LATEST)),),
            )
            require_latest(max(version, LATEST), str(self.path))
        return steps

    def _check_master_key(self) -> None:
        """Store a wrapped check value once, so a wrong master key fails at start
        (a store opened read-only without one is left without one)."""
        row = self._db.execute("SELECT value FROM meta WHERE name='kek_check'").fetchone()
        if row is not None:
            if self._wrapping.unwrap(bytes.fromhex(row[0])) != bytes(16):
                raise records.master_key_mismatch(str(self.path))
        elif not self._read_only:
            self._db.execute(
                "INSERT INTO meta VALUES ('kek_check', ?)", (self._wrapping.wrap(bytes(16)).hex(),)
            )

    def data_version(self) -> int:
        """Changes whenever another connection commits (used to reload controllers)."""
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    # -- KeyRepository ------------------------------------------------------------

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction, one commit (:meth:`KeyRepository.batch`), its writes
        without a savepoint each: see :meth:`_atomic`."""
        self._batching, self._savepoints, self._careful = True, self._careful, False
        try:
            with write_transaction(self._db):
                yield
        finally:
            self._batching = self._savepoints = False

    def _atomic(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """The statements of one write, all or none.

        Outside a batch, a transaction of their own. Inside one, no savepoint (two
        more statements per write, on every request): SQLite undoes a failed
        statement by itself, and a write that fails after one of its statements
        succeeded undoes the whole batch, none of whose answers has left, and asks
        for it to be run again (:class:`StoreInterrupted`). That next batch gives
        each write a savepoint, so there the failing write alone is undone."""
        if not self._batching or self._savepoints:
            return write_transaction(self._db)
        return self._in_batch

    def lookup_request(
        self, controller_id: bytes, tid: int, node_id: bytes
    ) -> tuple[TransactionRecord | None, NodeRecord | None, int]:
        row = self._db.execute(_LOOKUP_REQUEST, (controller_id, tid, node_id)).fetchone()
        return records.request_lookup(controller_id, tid, node_id, row, self._wrapping.unwrap)

    def lookup_confirm(
        self, controller_id: bytes, tid: int
    ) -> tuple[TransactionRecord, NodeStatus | None] | None:
        row = self._db.execute(_LOOKUP_CONFIRM, (controller_id, tid)).fetchone()
        if row is None:
            return None
        return records.confirm_lookup(controller_id, tid, row, self._wrapping.unwrap)

    def get_node(self, node_id: bytes) -> NodeRecord | None:
        row = self._db.execute(
            "SELECT key_wrapped, status FROM nodes WHERE id=?", (node_id,)
        ).fetchone()
        if row is None:
            return None
        return NodeRecord(node_id, self._wrapping.unwrap(row[0]), NodeStatus(row[1]))

    def get_transaction(self, controller_id: bytes, tid: int) -> TransactionRecord | None:
        row = self._db.execute(_GET_TRANSACTION, (controller_id, tid)).fetchone()
        if row is None:
            return None
        return records.transaction_record(controller_id, tid, row, self._wrapping.unwrap)

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
        with self._atomic() as db:
            try:
                db.execute(
                    "INSERT INTO transactions VALUES (?,?,?,?,?,?,?,?,?)",
                    records.transaction_row(record, self._wrapping.wrap),
                )
            except sqlite3.IntegrityError:
                raise TransactionExists(f"TID {record.tid} already recorded") from None

    def confirm(self, controller_id: bytes, tid: int) -> None:
        """The node takes the candidate's key straight from its row (the key stays
        wrapped); then the node's pending transactions end, this one confirmed."""
        with self._atomic() as db:
            taken = db.execute(_TAKE_CANDIDATE, (controller_id, tid, int(time.time()))).rowcount
            if taken == 0:
                raise UnknownTransaction(f"no pending transaction for TID {tid}")
            db.execute(_END_PENDING, (controller_id, tid))

    # -- controllers --------------------------------------------------------------

    def add_controller(
        self, info: ControllerInfo, sk_cs: bytes, publish: Callable[[], None] = _nothing
    ) -> None:
        """Register a controller; ``publish`` (which writes its key file) runs inside
        the transaction, so the key is committed only once the file is on disk."""
        try:
            with write_transaction(self._db) as db:
                db.execute(
                    "INSERT INTO controllers VALUES (?,?,?,?,?,?)",
                    records.controller_row(info, self._wrapping.wrap(sk_cs)),
                )
                publish()
        except sqlite3.IntegrityError:
            raise records.already_registered(info.controller_id) from None

    def rotate_controller_key(
        self,
        controller_id: bytes,
        sk_cs: bytes,
        publish: Callable[[], None] = _nothing,
        *,
        abandon_pending: bool = False,
    ) -> None:
        """Replace a controller's ``SK_cs``; its orders, nodes and transactions stay.
        ``publish`` writes the new key file inside the transaction, as in
        :meth:`add_controller`.

        Refused (:class:`~keystrap.store.records.UnfinishedBootstraps`) while the
        controller has pending bootstraps, unless ``abandon_pending``. They are
        counted inside the rotation's transaction, which holds the write lock: a
        bootstrap recorded between a count before it and the new key had its
        confirmation sealed with the old key."""
        with write_transaction(self._db) as db:
            if not abandon_pending:
                (pending,) = db.execute(
                    "SELECT COUNT(*) FROM transactions WHERE controller_id=? AND status='pending'",
                    (controller_id,),
                ).fetchone()
                if pending:
                    raise records.unfinished_bootstraps(controller_id, pending)
            changed = db.execute(
                "UPDATE controllers SET sk_wrapped=? WHERE id=?",
                (self._wrapping.wrap(sk_cs), controller_id),
            ).rowcount
            if changed == 0:
                raise StoreError(f"no controller {eui64(controller_id)} is registered")
            publish()

    def controller_keys(self) -> dict[bytes, bytes]:
        rows = self._db.execute("SELECT id, sk_wrapped FROM controllers").fetchall()
        return {row[0]: self._wrapping.unwrap(row[1]) for row in rows}

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
        *,
        version: int = 1,
        re_enrol: bool = False,
        publish: Callable[[int], None] | None = None,
    ) -> int:
        """Enrol nodes ``(node_id, initial_key)`` for one installer in one transaction.

        A node already known is refused, except with ``re_enrol`` a revoked one,
        which then joins this order with its new initial key. ``publish(order_id)``
        (writing the installer's bundle) runs before the commit.
        """
        now = int(time.time())
        keys = list(keys)
        with write_transaction(self._db) as db:
            if (
                db.execute("SELECT 1 FROM controllers WHERE id=?", (controller_id,)).fetchone()
                is None
            ):
                raise StoreError(records.UNKNOWN_CONTROLLER)
            self._refuse_known(db, [nid for nid, _ in keys], re_enrol)
            db.execute("INSERT OR IGNORE INTO installers VALUES (?, ?)", (installer, now))
            cursor = db.execute(
                "INSERT INTO orders (installer, controller_id, key_mode, created, version) "
                "VALUES (?,?,?,?,?)",
                (installer, controller_id, key_mode, now, version),
            )
            order_id = cursor.lastrowid
            assert order_id is not None
            db.executemany(
                "INSERT INTO nodes VALUES (?,?,?,'enrolled',?) ON CONFLICT(id) DO UPDATE SET "
                "order_id=excluded.order_id, key_wrapped=excluded.key_wrapped, "
                "status='enrolled', updated=excluded.updated",
                ((nid, order_id, self._wrapping.wrap(key), now) for nid, key in keys),
            )
            if publish is not None:
                publish(order_id)
        return order_id

    @staticmethod
    def _refuse_known(db: sqlite3.Connection, node_ids: list[bytes], re_enrol: bool) -> None:
        db.execute("CREATE TEMP TABLE IF NOT EXISTS new_ids (id BLOB PRIMARY KEY)")
        db.execute("DELETE FROM new_ids")
        try:
            db.executemany("INSERT INTO new_ids VALUES (?)", ((nid,) for nid in node_ids))
        except sqlite3.IntegrityError:
            raise StoreError("the order lists a node ID twice") from None
        clash = db.execute(
            "SELECT n.id, n.order_id, n.status FROM nodes n JOIN new_ids USING (id) "
            "WHERE NOT (? AND n.status='revoked') LIMIT 1",
            (re_enrol,),
        ).fetchone()
        db.execute("DELETE FROM new_ids")
        if clash is not None:
            raise records.already_enrolled(*clash)

    def list_orders(self) -> list[OrderInfo]:
        rows = self._db.execute(records.LIST_ORDERS)
        return [OrderInfo(*row) for row in rows]

    def remove_order(self, order_id: int) -> int:
        """Remove an order and its nodes; returns how many nodes went with it.

        Refused while a node of the order is bootstrapping or active: removing it
        would make the server forget a key a device in the field relies on."""
        with write_transaction(self._db) as db:
            live = db.execute(
                "SELECT COUNT(*) FROM nodes n WHERE n.order_id=? AND (n.status='active' OR "
                "(n.status='enrolled' AND EXISTS(SELECT 1 FROM transactions t "
                "WHERE t.node_id=n.id AND t.status='pending')))",
                (order_id,),
            ).fetchone()[0]
            if live:
                raise records.order_in_use(order_id, live)
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
        rows = self._db.execute(records.LIST_NODES)
        return [
            NodeInfo(node_id, order_id, records.shown_status(status, pending))
            for node_id, order_id, status, pending in rows
        ]

    def revoke(self, node_id: bytes) -> bool:
        """Revoke an enrolled node; False if it was revoked already, which changes
        nothing: another revocations row would be one more for every server and
        controller to fetch, and the node's history would show two revocations."""
        with write_transaction(self._db) as db:
            row = db.execute("SELECT status FROM nodes WHERE id=?", (node_id,)).fetchone()
            if row is None:
                raise StoreError(f"no node {eui64(node_id)} is enrolled")
            return row[0] != "revoked" and self._revoke(db, node_id)

    def revoke_order(self, order_id: int) -> int:
        """Revoke every node of an order that is not revoked yet; returns how many."""
        with write_transaction(self._db) as db:
            if db.execute("SELECT 1 FROM orders WHERE id=?", (order_id,)).fetchone() is None:
                raise StoreError(f"no order {order_id}")
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM nodes WHERE order_id=? AND status!='revoked'", (order_id,)
                )
            ]
            for node_id in ids:
                self._revoke(db, node_id)
        return len(ids)

    @staticmethod
    def _revoke(db: sqlite3.Connection, node_id: bytes) -> bool:
        now = int(time.time())
        updated = db.execute(
            "UPDATE nodes SET status='revoked', updated=? WHERE id=?", (now, node_id)
        ).rowcount
        if updated == 0:
            return False
        db.execute("INSERT INTO revocations (node_id, at) VALUES (?, ?)", (node_id, now))
        db.execute(
            "UPDATE transactions SET status='superseded', psk_wrapped=NULL, "
            "grant_flight=NULL WHERE node_id=? AND status='pending'",
            (node_id,),
        )
        return True

    def revocations_after(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        rows = self._db.execute(
            "SELECT seq, node_id FROM revocations WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        )
        return [(int(seq), bytes(node_id)) for seq, node_id in rows]

    def revocation_marks(self) -> tuple[int, int]:
        last, restored = self._db.execute(
            "SELECT COALESCE(MAX(seq), 0), (SELECT CAST(value AS INTEGER) FROM meta "
            "WHERE name=?) FROM revocations",
            (RESTORED_AT,),
        ).fetchone()
        return int(last), int(restored or 0)

    def unwrapped_node_keys(self) -> Iterator[tuple[bytes, bytes]]:
        """For audits such as "no IK left": yields ``(node_id, key)``; never log the key."""
        for node_id, wrapped in self._db.execute("SELECT id, key_wrapped FROM nodes"):
            yield node_id, self._wrapping.unwrap(wrapped)

    # -- maintenance --------------------------------------------------------------

    def check(self) -> CheckReport:
        """SQLite's integrity check, every wrapped key unwrapped, nodes counted by state."""
        report = CheckReport(problems=integrity_problems(self._db))
        try:
            self._check_keys(report)
        except sqlite3.Error as exc:
            report.problems.append(f"reading the store failed: {exc}")
        return report

    def _check_keys(self, report: CheckReport) -> None:
        report.problems += records.key_problems(
            self._kek,
            self._db.execute(records.WRAPPED_CONTROLLER_KEYS),
            self._db.execute(records.WRAPPED_NODE_KEYS),
            self._db.execute(records.WRAPPED_TRANSACTION_KEYS),
        )
        report.problems += records.revocation_problems(
            self._db.execute(records.REVOCATIONS_OUT_OF_REACH)
        )
        report.counts = records.count_states(node.status for node in self.list_nodes())

    def restore_into(self, store: Path) -> None:
        """Make ``store`` (a server's database, possibly existing) a copy of this one,
        marked with its last revocation: the restored store numbers new ones from
        there again, and the controllers that applied the lost ones must be told to
        ask from there (:meth:`revocation_marks`). Over an existing store, new
        revocations are numbered after every one it had numbered: a controller
        that applied some of those is past the backup's last, and would skip as
        many new ones as it is past."""
        numbered = _revocations_numbered(store)
        with write_transaction(self._db) as db:
            db.execute(
                "INSERT INTO meta VALUES (?, (SELECT COALESCE(MAX(seq), 0) FROM revocations)) "
                "ON CONFLICT(name) DO UPDATE SET value=excluded.value",
                (RESTORED_AT,),
            )
            if (
                db.execute(
                    "UPDATE sqlite_sequence SET seq=MAX(seq, ?) WHERE name='revocations'",
                    (numbered,),
                ).rowcount
                == 0
            ):
                db.execute("INSERT INTO sqlite_sequence VALUES ('revocations', ?)", (numbered,))
        copy_database(self._db, store, standalone=False)

    # -- moving a site (keystrap admin migrate-store) ---------------------------------

    def rows(self, table: str) -> Iterator[tuple[Any, ...]]:
        assert table in TABLES
        yield from self._db.execute(f"SELECT * FROM {table} ORDER BY 1")  # noqa: S608 (a name from TABLES)

    def count_rows(self, table: str) -> int:
        assert table in TABLES
        return int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608

    def is_empty(self) -> bool:
        return all(self.count_rows(table) == 0 for table in TABLES)

    def load(self, tables: dict[str, list[tuple[Any, ...]]]) -> None:
        """Insert every row as it is (keys stay wrapped) in one transaction."""
        with write_transaction(self._db) as db:
            for table in TABLES:
                rows = tables.get(table, [])
                if rows:
                    marks = ",".join("?" * len(rows[0]))
                    db.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)  # noqa: S608
