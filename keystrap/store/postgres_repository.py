"""The SBS key repository in PostgreSQL, shared by several server processes.

Same tables, same columns and the same AES-KW wrapping under the master key as
the SQLite store, so a site moves between the two with its keys still wrapped.
What SQLite gets from serialising every writer, this store gets from
PostgreSQL's own guards, each named where it is used (docs/deployment.md has
the table):

* one transaction per TID: the primary key ``(controller_id, tid)``; the server
  that loses the race re-reads the winner's row and answers with its flight 3;
* at most ``max_pending`` candidates, and one confirmation, per node: the
  node's row is locked (``SELECT ... FOR UPDATE``) before either is decided;
* revocations in one gap-free order: the revocations table is locked for
  writing until the revoking transaction commits, so a sequence number is only
  ever handed out after every smaller one is visible to all servers;
* a new order against a concurrent one: SERIALIZABLE, retried.

One connection per repository object, used from one thread at a time. A lost
connection (a database restart, a failover to the standby) is re-opened and the
statement retried for up to :data:`RECONNECT_SECONDS`; every write is safe to
repeat (a repeated insert meets the primary key, a repeated confirmation finds
itself done).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeAlias, TypeVar

import psycopg
import psycopg.conninfo
import psycopg.errors

from keystrap.ids import eui64
from keystrap.protocol.repository import (
    NodeBusy,
    NodeRecord,
    NodeStatus,
    TransactionExists,
    TransactionRecord,
    TransactionStatus,
    UnknownTransaction,
)
from keystrap.store import records
from keystrap.store.errors import StoreError, StoreInterrupted
from keystrap.store.migrations import LATEST, META, TABLES, Migration, require_latest, steps_after
from keystrap.store.postgres_url import redacted, scrubbed
from keystrap.store.sqlite_repository import (
    CheckReport,
    ControllerInfo,
    NodeInfo,
    OrderInfo,
    _nothing,
    not_a_server_store,
)

T = TypeVar("T")
Connection: TypeAlias = "psycopg.Connection[tuple[Any, ...]]"

RECONNECT_SECONDS = 30.0
SCHEMA_LOCK = 0x6B657973  # pg_advisory_xact_lock id: one migrator at a time
RETRIED = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)

_GET_TRANSACTION = (
    f"SELECT {records.TRANSACTION_COLUMNS} FROM transactions t "  # noqa: S608 (constants)
    "WHERE t.controller_id=%s AND t.tid=%s"
)
_LOOKUP_REQUEST = (
    f"SELECT {records.TRANSACTION_COLUMNS}, n.key_wrapped, n.status, "  # noqa: S608
    "(SELECT COUNT(*) FROM transactions p WHERE p.node_id=%s AND p.status='pending') "
    "FROM (SELECT 1) AS one LEFT JOIN transactions t ON t.controller_id=%s AND t.tid=%s "
    "LEFT JOIN nodes n ON n.id=%s"
)
_LOOKUP_CONFIRM = (
    f"SELECT {records.TRANSACTION_COLUMNS}, n.status FROM transactions t "  # noqa: S608
    "LEFT JOIN nodes n ON n.id=t.node_id WHERE t.controller_id=%s AND t.tid=%s"
)


class PostgresRepository:
    def __init__(
        self,
        url: str,
        master_key: bytes,
        *,
        max_pending: int = 8,
        migrate: bool = False,
        read_only: bool = False,
    ) -> None:
        """``read_only`` (the admin commands that only read): an existing store
        as it is, its tables never created or migrated, every write refused by
        PostgreSQL itself; a database without them is refused."""
        self.url = url
        self._read_only = read_only
        self.path = redacted(url)  # what messages call the store, as the SQLite path
        self.max_pending = max_pending
        self._kek = master_key
        self._wrapping = records.KeyWrapping(master_key, self.path)
        self._conn: Connection | None = None
        self._batch: Connection | None = None  # the connection of the open batch
        self._secrets = _libpq_secrets(url)
        try:
            self._connect()
        except psycopg.ProgrammingError as exc:  # libpq could not parse the URL
            raise StoreError(
                f"cannot open database {self.path}: not a valid PostgreSQL URL ({self._said(exc)})"
            ) from None
        except psycopg.Error as exc:
            raise StoreError(f"cannot open database {self.path}: {self._said(exc)}") from None
        self.applied = self._run(lambda db: self._bring_up_to_date(db, migrate))
        self._run(self._check_master_key)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- connection and retries ----------------------------------------------------

    def _said(self, exc: BaseException) -> str:
        """psycopg's first line without the URL's passwords: libpq quotes what it
        could not parse of the URL, sometimes all of it (docs/deployment.md
        promises a password is never shown)."""
        return scrubbed(_first_line(exc), self.url, self._secrets)

    def _connect(self) -> Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
            if self._read_only:
                self._conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        return self._conn

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group commit (:meth:`KeyRepository.batch`): one transaction; each write in
        it runs in a savepoint (psycopg nests ``transaction()`` as one).

        The transaction is begun as any statement is run, across a lost connection
        (the database restarting between batches). A connection lost inside
        takes the batch's earlier work with it: :class:`StoreInterrupted`, and the
        caller may run the batch again."""
        try:
            with contextlib.ExitStack() as held:
                self._batch = self._run(
                    lambda db: held.enter_context(db.transaction()).connection, atomic=False
                )
                try:
                    yield
                finally:
                    self._batch = None
        except psycopg.OperationalError as exc:
            self.close()
            raise StoreInterrupted(f"{self.path}: connection lost: {self._said(exc)}") from None

    def _run(
        self, work: Callable[[Connection], T], *, serializable: bool = False, atomic: bool = True
    ) -> T:
        """``work`` in one transaction (``atomic=False``: a single statement, which
        needs no BEGIN and COMMIT round trips); retried after a serialization
        failure or deadlock, and across a lost connection for up to
        RECONNECT_SECONDS."""
        if self._batch is not None:
            return self._in_batch(self._batch, work)
        deadline = time.monotonic() + RECONNECT_SECONDS
        pause = 0.05
        while True:
            try:
                db = self._connect()
                if not atomic:
                    return work(db)
                with db.transaction():
                    if serializable:
                        db.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                    return work(db)
            except RETRIED as exc:
                if time.monotonic() > deadline:
                    raise StoreError(f"{self.path}: {self._said(exc)}") from None
            except psycopg.OperationalError as exc:
                if self._conn is not None and not self._conn.closed and not self._conn.broken:
                    raise StoreError(f"{self.path}: {self._said(exc)}") from None
                self.close()
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"{self.path}: database unreachable: {self._said(exc)}"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 1.0)
            except psycopg.errors.IntegrityError:
                raise  # the callers' to judge: a repeated insert meets the primary key
            except psycopg.Error as exc:  # read-only, no privilege, ...: one line, no traceback
                raise self._refused(exc) from None

    def _in_batch(self, db: Connection, work: Callable[[Connection], T]) -> T:
        """``work`` in a savepoint of the open batch, retried after a deadlock with
        another server's batch (the savepoint's locks are given up meanwhile)."""
        deadline = time.monotonic() + RECONNECT_SECONDS
        while True:
            try:
                with db.transaction():
                    return work(db)
            except RETRIED as exc:
                if time.monotonic() > deadline:
                    raise StoreError(f"{self.path}: {self._said(exc)}") from None
            except psycopg.OperationalError as exc:
                raise StoreInterrupted(f"{self.path}: {self._said(exc)}") from None
            except psycopg.errors.IntegrityError:
                raise
            except psycopg.Error as exc:  # the savepoint is undone; the batch's others stand
                raise self._refused(exc) from None

    def _refused(self, exc: psycopg.Error) -> StoreError:
        """What PostgreSQL refused, in one line: a database the server may not
        write (a standby, ``default_transaction_read_only``, a role without the
        privilege) is the operator's to fix, not a bug to show a traceback for."""
        hint = ""
        if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
            hint = " (the database is read-only: a standby, or default_transaction_read_only)"
        return StoreError(f"{self.path}: {self._said(exc)}{hint}")

    def _bring_up_to_date(self, db: Connection, migrate: bool) -> list[Migration]:
        if self._read_only:  # its version is told, never changed
            tables = db.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname=current_schema()"
            ).fetchall()
            why = not_a_server_store({row[0] for row in tables})
            if why:
                raise StoreError(f"{self.path} refused: {why}; left untouched")
            row = db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
            require_latest(0 if row is None else int(row[0]), self.path)
            return []
        db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        db.execute(META)
        row = db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
        version = 0 if row is None else int(row[0])
        if version == 0:
            foreign = db.execute(
                "SELECT COUNT(*) FROM pg_tables WHERE schemaname=current_schema() "
                "AND tablename <> 'meta'"
            ).fetchone()
            if foreign is not None and foreign[0]:
                raise StoreError(
                    f"{self.path} holds tables that are not a keystrap server store; left untouched"
                )
        if version and not migrate:
            require_latest(version, self.path)
            return []
        steps = steps_after(version)
        for step in steps:
            db.execute(step.postgresql)
        db.execute(
            "INSERT INTO meta VALUES ('schema_version', %s) "
            "ON CONFLICT (name) DO UPDATE SET value=excluded.value",
            (str(max(version, LATEST)),),
        )
        require_latest(max(version, LATEST), self.path)
        return steps

    # -- helpers ------------------------------------------------------------------

    def _check_master_key(self, db: Connection) -> None:
        row = db.execute("SELECT value FROM meta WHERE name='kek_check'").fetchone()
        if row is not None:
            if self._wrapping.unwrap(bytes.fromhex(row[0])) != bytes(16):
                raise records.master_key_mismatch(self.path)
        elif not self._read_only:
            db.execute(
                "INSERT INTO meta VALUES ('kek_check', %s) ON CONFLICT DO NOTHING",
                (self._wrapping.wrap(bytes(16)).hex(),),
            )

    def _one(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        def read(db: Connection) -> Any:
            row = db.execute(sql, params).fetchone()
            return None if row is None else row[0]

        return self._run(read, atomic=False)

    def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._run(lambda db: db.execute(sql, params).fetchall(), atomic=False)

    def data_version(self) -> int:
        """Changes whenever a controller is added, re-keyed or removed by anyone."""
        return int(self._one("SELECT value FROM meta WHERE name='controllers_version'") or 0)

    @staticmethod
    def _controllers_changed(db: Connection) -> None:
        db.execute(
            "INSERT INTO meta VALUES ('controllers_version', '1') ON CONFLICT (name) "
            "DO UPDATE SET value=(meta.value::bigint + 1)::text"
        )

    # -- KeyRepository ------------------------------------------------------------

    def lookup_request(
        self, controller_id: bytes, tid: int, node_id: bytes
    ) -> tuple[TransactionRecord | None, NodeRecord | None, int]:
        rows = self._all(_LOOKUP_REQUEST, (node_id, controller_id, tid, node_id))
        return records.request_lookup(controller_id, tid, node_id, rows[0], self._wrapping.unwrap)

    def lookup_confirm(
        self, controller_id: bytes, tid: int
    ) -> tuple[TransactionRecord, NodeStatus | None] | None:
        rows = self._all(_LOOKUP_CONFIRM, (controller_id, tid))
        if not rows:
            return None
        return records.confirm_lookup(controller_id, tid, rows[0], self._wrapping.unwrap)

    def get_node(self, node_id: bytes) -> NodeRecord | None:
        row = self._all("SELECT key_wrapped, status FROM nodes WHERE id=%s", (node_id,))
        if not row:
            return None
        return NodeRecord(node_id, self._wrapping.unwrap(row[0][0]), NodeStatus(row[0][1]))

    def get_transaction(self, controller_id: bytes, tid: int) -> TransactionRecord | None:
        rows = self._all(_GET_TRANSACTION, (controller_id, tid))
        if not rows:
            return None
        return records.transaction_record(controller_id, tid, rows[0], self._wrapping.unwrap)

    def count_pending(self, node_id: bytes) -> int:
        return int(
            self._one(
                "SELECT COUNT(*) FROM transactions WHERE node_id=%s AND status='pending'",
                (node_id,),
            )
        )

    def count_all_pending(self) -> int:
        return int(self._one("SELECT COUNT(*) FROM transactions WHERE status='pending'"))

    def add_transaction(self, record: TransactionRecord) -> None:
        """Under the node's row lock: refused (:class:`NodeBusy`) when the node
        already has ``max_pending`` candidates, whichever servers recorded them."""

        def add(db: Connection) -> None:
            db.execute("SELECT 1 FROM nodes WHERE id=%s FOR UPDATE", (record.node_id,))
            pending = db.execute(
                "SELECT COUNT(*) FROM transactions WHERE node_id=%s AND status='pending'",
                (record.node_id,),
            ).fetchone()
            if pending is not None and pending[0] >= self.max_pending:
                raise NodeBusy(f"node {eui64(record.node_id)} has {pending[0]} open bootstraps")
            db.execute(
                "INSERT INTO transactions VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                records.transaction_row(record, self._wrapping.wrap),
            )

        try:
            self._run(add)
        except psycopg.errors.UniqueViolation:
            raise TransactionExists(f"TID {record.tid} already recorded") from None

    def confirm(self, controller_id: bytes, tid: int) -> None:
        """The node's row is locked first, so two servers confirming two candidates
        of one node take turns: the second finds its candidate superseded."""

        def confirm(db: Connection) -> None:
            row = db.execute(
                "SELECT node_id FROM transactions WHERE controller_id=%s AND tid=%s",
                (controller_id, tid),
            ).fetchone()
            if row is None:
                raise UnknownTransaction(f"no pending transaction for TID {tid}")
            node_id = row[0]
            db.execute("SELECT 1 FROM nodes WHERE id=%s FOR UPDATE", (node_id,))
            row = db.execute(
                "SELECT status, psk_wrapped FROM transactions WHERE controller_id=%s AND tid=%s",
                (controller_id, tid),
            ).fetchone()
            assert row is not None  # transactions are only deleted with their order
            if row[0] == TransactionStatus.CONFIRMED.value:
                return  # a retry after a lost acknowledgement of the commit
            if row[0] != TransactionStatus.PENDING.value or row[1] is None:
                raise UnknownTransaction(f"no pending transaction for TID {tid}")
            db.execute(
                "UPDATE nodes SET key_wrapped=%s, status='active', updated=%s WHERE id=%s",
                (row[1], int(time.time()), node_id),
            )
            db.execute(
                "UPDATE transactions SET status='superseded', psk_wrapped=NULL, "
                "grant_flight=NULL WHERE node_id=%s AND status='pending' "
                "AND NOT (controller_id=%s AND tid=%s)",
                (node_id, controller_id, tid),
            )
            db.execute(
                "UPDATE transactions SET status='confirmed', psk_wrapped=NULL, "
                "grant_flight=NULL WHERE controller_id=%s AND tid=%s",
                (controller_id, tid),
            )

        self._run(confirm)

    # -- controllers --------------------------------------------------------------

    def add_controller(
        self, info: ControllerInfo, sk_cs: bytes, publish: Callable[[], None] = _nothing
    ) -> None:
        def add(db: Connection) -> None:
            db.execute(
                "INSERT INTO controllers VALUES (%s,%s,%s,%s,%s,%s)",
                records.controller_row(info, self._wrapping.wrap(sk_cs)),
            )
            self._controllers_changed(db)
            publish()

        try:
            self._run(add)
        except psycopg.errors.UniqueViolation:
            raise records.already_registered(info.controller_id) from None

    def rotate_controller_key(
        self,
        controller_id: bytes,
        sk_cs: bytes,
        publish: Callable[[], None] = _nothing,
        *,
        abandon_pending: bool = False,
    ) -> None:
        """As :meth:`SqliteRepository.rotate_controller_key`. The count of pending
        bootstraps is taken under a SHARE lock on ``transactions``, which waits for
        the servers' transactions that are recording one and holds off new ones
        until the new key is committed."""

        def rotate(db: Connection) -> None:
            if not abandon_pending:
                db.execute("LOCK TABLE transactions IN SHARE MODE")
                row = db.execute(
                    "SELECT COUNT(*) FROM transactions WHERE controller_id=%s AND status='pending'",
                    (controller_id,),
                ).fetchone()
                if row is not None and row[0]:
                    raise records.unfinished_bootstraps(controller_id, row[0])
            changed = db.execute(
                "UPDATE controllers SET sk_wrapped=%s WHERE id=%s",
                (self._wrapping.wrap(sk_cs), controller_id),
            ).rowcount
            if changed == 0:
                raise StoreError(f"no controller {eui64(controller_id)} is registered")
            self._controllers_changed(db)
            publish()

        self._run(rotate)

    def controller_keys(self) -> dict[bytes, bytes]:
        rows = self._all("SELECT id, sk_wrapped FROM controllers")
        return {row[0]: self._wrapping.unwrap(row[1]) for row in rows}

    def list_controllers(self) -> list[ControllerInfo]:
        rows = self._all("SELECT id, name, host, port FROM controllers ORDER BY name")
        return [ControllerInfo(*row) for row in rows]

    def get_controller(self, controller_id: bytes) -> ControllerInfo | None:
        rows = self._all(
            "SELECT id, name, host, port FROM controllers WHERE id=%s", (controller_id,)
        )
        return ControllerInfo(*rows[0]) if rows else None

    def remove_controller(self, controller_id: bytes) -> None:
        def remove(db: Connection) -> None:
            used = _count(db, "SELECT COUNT(*) FROM orders WHERE controller_id=%s", controller_id)
            if used:
                raise StoreError(f"controller is used by {used} order(s); remove them first")
            if db.execute("DELETE FROM controllers WHERE id=%s", (controller_id,)).rowcount == 0:
                raise StoreError("no such controller")
            self._controllers_changed(db)

        self._run(remove)

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
        """As the SQLite store's; SERIALIZABLE, so two orders naming one new node
        at once cannot both enrol it (the loser is retried and refused)."""
        now = int(time.time())
        keys = list(keys)
        ids = [nid for nid, _ in keys]
        if len(set(ids)) != len(ids):
            raise StoreError("the order lists a node ID twice")
        wrapped = [(nid, self._wrapping.wrap(key)) for nid, key in keys]

        def create(db: Connection) -> int:
            if _count(db, "SELECT COUNT(*) FROM controllers WHERE id=%s", controller_id) == 0:
                raise StoreError(records.UNKNOWN_CONTROLLER)
            self._refuse_known(db, ids, re_enrol)
            db.execute(
                "INSERT INTO installers VALUES (%s, %s) ON CONFLICT DO NOTHING", (installer, now)
            )
            row = db.execute(
                "INSERT INTO orders (installer, controller_id, key_mode, created, version) "
                "VALUES (%s,%s,%s,%s,%s) RETURNING id",
                (installer, controller_id, key_mode, now, version),
            ).fetchone()
            assert row is not None
            order_id = int(row[0])
            with db.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO nodes VALUES (%s,%s,%s,'enrolled',%s) ON CONFLICT (id) DO UPDATE "
                    "SET order_id=excluded.order_id, key_wrapped=excluded.key_wrapped, "
                    "status='enrolled', updated=excluded.updated",
                    [(nid, order_id, w, now) for nid, w in wrapped],
                )
            if publish is not None:
                publish(order_id)
            return order_id

        return self._run(create, serializable=True)

    @staticmethod
    def _refuse_known(db: Connection, node_ids: list[bytes], re_enrol: bool) -> None:
        clash = db.execute(
            "SELECT id, order_id, status FROM nodes WHERE id = ANY(%s) "
            "AND NOT (%s AND status='revoked') LIMIT 1",
            (node_ids, re_enrol),
        ).fetchone()
        if clash is not None:
            raise records.already_enrolled(*clash)

    def list_orders(self) -> list[OrderInfo]:
        rows = self._all(records.LIST_ORDERS)
        return [OrderInfo(*row) for row in rows]

    def remove_order(self, order_id: int) -> int:
        def remove(db: Connection) -> int:
            live = _count(
                db,
                "SELECT COUNT(*) FROM nodes n WHERE n.order_id=%s AND (n.status='active' OR "
                "(n.status='enrolled' AND EXISTS(SELECT 1 FROM transactions t "
                "WHERE t.node_id=n.id AND t.status='pending')))",
                order_id,
            )
            if live:
                raise records.order_in_use(order_id, live)
            nodes = db.execute(
                "DELETE FROM nodes WHERE order_id=%s RETURNING id", (order_id,)
            ).fetchall()
            db.execute("DELETE FROM transactions WHERE node_id = ANY(%s)", ([n[0] for n in nodes],))
            if db.execute("DELETE FROM orders WHERE id=%s", (order_id,)).rowcount == 0:
                raise StoreError(f"no order {order_id}")
            return len(nodes)

        return self._run(remove, serializable=True)

    def list_installers(self) -> list[tuple[str, int]]:
        rows = self._all(
            "SELECT i.name, (SELECT COUNT(*) FROM orders o WHERE o.installer=i.name) "
            "FROM installers i ORDER BY i.name"
        )
        return [(row[0], int(row[1])) for row in rows]

    def remove_installer(self, name: str) -> None:
        def remove(db: Connection) -> None:
            used = _count(db, "SELECT COUNT(*) FROM orders WHERE installer=%s", name)
            if used:
                raise StoreError(f"installer {name!r} has {used} order(s); remove them first")
            if db.execute("DELETE FROM installers WHERE name=%s", (name,)).rowcount == 0:
                raise StoreError(f"no installer {name!r}")

        self._run(remove)

    # -- nodes --------------------------------------------------------------------

    def list_nodes(self) -> list[NodeInfo]:
        rows = self._all(records.LIST_NODES)
        return [
            NodeInfo(node_id, order_id, records.shown_status(status, pending))
            for node_id, order_id, status, pending in rows
        ]

    def revoke(self, node_id: bytes) -> bool:
        """As the SQLite store's: False if the node was revoked already, which
        changes nothing (no second revocations row for every server to fetch)."""

        def revoke(db: Connection) -> bool:
            if self._revoke(db, [node_id]):
                return True
            if _count(db, "SELECT COUNT(*) FROM nodes WHERE id=%s", node_id) == 0:
                raise StoreError(f"no node {eui64(node_id)} is enrolled")
            return False

        return self._run(revoke)

    def revoke_order(self, order_id: int) -> int:
        def revoke(db: Connection) -> int:
            if _count(db, "SELECT COUNT(*) FROM orders WHERE id=%s", order_id) == 0:
                raise StoreError(f"no order {order_id}")
            ids = [
                row[0]
                for row in db.execute(
                    "SELECT id FROM nodes WHERE order_id=%s AND status!='revoked' ORDER BY id",
                    (order_id,),
                )
            ]
            return self._revoke(db, ids)

        return self._run(revoke)

    @staticmethod
    def _revoke(db: Connection, node_ids: list[bytes]) -> int:
        """The table lock (EXCLUSIVE: readers go on, writers queue until this
        commits) keeps sequence numbers in commit order, so a server that has
        answered "up to N" can never later see a revocation numbered below N.
        A node revoked already is left as it is: the UPDATE tests the status
        itself, re-reading a row another server revoked meanwhile, so no node
        gets a second revocations row."""
        now = int(time.time())
        db.execute("LOCK TABLE revocations IN EXCLUSIVE MODE")
        revoked = [
            row[0]
            for row in db.execute(
                "UPDATE nodes SET status='revoked', updated=%s "
                "WHERE id = ANY(%s) AND status<>'revoked' RETURNING id",
                (now, node_ids),
            )
        ]
        for node_id in sorted(revoked):
            db.execute("INSERT INTO revocations (node_id, at) VALUES (%s, %s)", (node_id, now))
        db.execute(
            "UPDATE transactions SET status='superseded', psk_wrapped=NULL, "
            "grant_flight=NULL WHERE node_id = ANY(%s) AND status='pending'",
            (revoked,),
        )
        return len(revoked)

    def revocations_after(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        rows = self._all(
            "SELECT seq, node_id FROM revocations WHERE seq > %s ORDER BY seq LIMIT %s",
            (after, limit),
        )
        return [(int(seq), bytes(node_id)) for seq, node_id in rows]

    def revocation_marks(self) -> tuple[int, int]:
        """No restore is recorded here (``pg_restore`` is not ours)."""
        return int(self._one("SELECT COALESCE(MAX(seq), 0) FROM revocations")), 0

    def unwrapped_node_keys(self) -> Iterator[tuple[bytes, bytes]]:
        for node_id, wrapped in self._all("SELECT id, key_wrapped FROM nodes"):
            yield node_id, self._wrapping.unwrap(wrapped)

    # -- maintenance --------------------------------------------------------------

    def check(self) -> CheckReport:
        """Every wrapped key unwrapped, nodes counted by state (PostgreSQL checks
        its own pages; see docs/deployment.md for amcheck)."""
        problems = records.key_problems(
            self._kek,
            self._all(records.WRAPPED_CONTROLLER_KEYS),
            self._all(records.WRAPPED_NODE_KEYS),
            self._all(records.WRAPPED_TRANSACTION_KEYS),
        )
        problems += records.revocation_problems(self._all(records.REVOCATIONS_OUT_OF_REACH))
        return CheckReport(
            problems, records.count_states(node.status for node in self.list_nodes())
        )

    # -- moving a site (keystrap admin migrate-store) ---------------------------------

    def rows(self, table: str) -> Iterator[tuple[Any, ...]]:
        assert table in TABLES
        yield from self._all(f"SELECT * FROM {table} ORDER BY 1")  # noqa: S608 (a name from TABLES)

    def is_empty(self) -> bool:
        return all(self.count_rows(table) == 0 for table in TABLES)

    def count_rows(self, table: str) -> int:
        assert table in TABLES
        return int(self._one(f"SELECT COUNT(*) FROM {table}"))  # noqa: S608

    def load(self, tables: dict[str, list[tuple[Any, ...]]]) -> None:
        """Insert every row as it is (keys stay wrapped) in one transaction; the
        serial counters then continue after the highest copied number."""

        def load(db: Connection) -> None:
            for table in TABLES:
                rows = tables.get(table, [])
                if not rows:
                    continue
                marks = ",".join(["%s"] * len(rows[0]))
                with db.cursor() as cursor:
                    cursor.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)  # noqa: S608
            for table, column in (("orders", "id"), ("revocations", "seq")):
                db.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "  # noqa: S608
                    f"COALESCE(MAX({column}), 0) + 1, false) FROM {table}"
                )
            self._controllers_changed(db)

        self._run(load)


def _count(db: Connection, sql: str, value: object) -> int:
    row = db.execute(sql, (value,)).fetchone()
    return 0 if row is None else int(row[0])


def _libpq_secrets(url: str) -> list[str]:
    """The passwords as libpq reads ``url``, where that differs from how
    :func:`redacted` reads a URL someone got wrong; none if libpq cannot parse it."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return []
    return [str(params[key]) for key in ("password", "sslpassword") if params.get(key)]


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
