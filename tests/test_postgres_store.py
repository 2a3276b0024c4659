"""The PostgreSQL store against a real private cluster: the repository contract,
and the invariants of docs/protocol.md when several connections (as several
servers) race on one node."""

import asyncio
import logging
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest

from keystrap.cli.main import main
from keystrap.ids import eui64
from keystrap.protocol import (
    ControllerState,
    NodeState,
    NodeStatus,
    Reply,
    RevocationUnsendable,
    Server,
    ServerPolicy,
    Status,
    TransactionExists,
    TransactionRecord,
    TransactionStatus,
)
from keystrap.protocol.repository import NodeBusy, UnknownTransaction
from keystrap.protocol.revocation_feed import Page, RevocationFeed
from keystrap.services.server import LiveControllers, _flush_loop
from keystrap.store import postgres_repository
from keystrap.store.activity import ActivityLog
from keystrap.store.errors import StoreError, StoreInterrupted
from keystrap.store.keyfile import write_key_file
from keystrap.store.migrations import LATEST, SchemaMismatch
from keystrap.store.postgres_repository import PostgresRepository
from keystrap.store.sqlite_repository import ControllerInfo
from keystrap.store.worker import StoreThread
from keystrap.wire import Flight1, Flight2
from keystrap_lab.pg_cluster import PrivateCluster
from keystrap_lab.simulation import Fault, Message, Simulation

from .conftest import CONTROLLER_ID, node_id
from .test_force_safety import revoked_twice
from .test_store import a_bootstrap_just_after_the_count, rotate_key

MASTER = secrets.token_bytes(16)


@pytest.fixture
def repo(pg_url: str) -> Iterator[PostgresRepository]:
    repository = PostgresRepository(pg_url, MASTER, max_pending=3)
    repository.add_controller(ControllerInfo(CONTROLLER_ID, "c", "h", 1), secrets.token_bytes(16))
    yield repository
    repository.close()


def enrol(repo: PostgresRepository, nodes: int = 1, ik: bytes | None = None) -> bytes:
    key = ik or secrets.token_bytes(16)
    repo.create_order(
        "acme", CONTROLLER_ID, [(node_id(n), key) for n in range(1, nodes + 1)], "shared"
    )
    return key


def pending(tid: int, psk: bytes | None = None, request: bytes = b"r") -> TransactionRecord:
    return TransactionRecord(
        CONTROLLER_ID,
        tid,
        node_id(1),
        request,
        b"grant-%d" % tid,
        bytes(16),
        psk or secrets.token_bytes(16),
        TransactionStatus.PENDING,
        0,
    )


def race(workers: list[Callable[[], object]]) -> list[object]:
    """Run each worker in its own thread, released together; their results or exceptions."""
    start = threading.Barrier(len(workers))
    results: list[object] = [None] * len(workers)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = workers[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_keys_are_wrapped_and_schema_versioned(repo: PostgresRepository, pg_url: str) -> None:
    ik = enrol(repo)
    sk = repo.controller_keys()[CONTROLLER_ID]
    with psycopg.connect(pg_url) as db:
        blobs = [bytes(r[0]) for r in db.execute("SELECT key_wrapped FROM nodes")]
        blobs += [bytes(r[0]) for r in db.execute("SELECT sk_wrapped FROM controllers")]
        version = db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
    assert blobs and all(ik not in b and sk not in b for b in blobs)
    assert version == (str(LATEST),)


def test_wrong_master_key_is_refused(repo: PostgresRepository, pg_url: str) -> None:
    with pytest.raises(StoreError, match="master key"):
        PostgresRepository(pg_url, secrets.token_bytes(16))


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open database"):
        PostgresRepository(f"postgresql://x:secret@/none?host={tmp_path}", MASTER)


def test_older_schema_is_refused_until_migrated(repo: PostgresRepository, pg_url: str) -> None:
    with psycopg.connect(pg_url) as db:
        db.execute("DROP INDEX transactions_open")  # what steps 2 and 3 added
        db.execute("ALTER TABLE orders DROP COLUMN version")
        db.execute("UPDATE meta SET value='1' WHERE name='schema_version'")
    with pytest.raises(SchemaMismatch, match="admin migrate"):
        PostgresRepository(pg_url, MASTER)
    migrated = PostgresRepository(pg_url, MASTER, migrate=True)
    assert [step.version for step in migrated.applied] == [2, 3]
    migrated.close()
    PostgresRepository(pg_url, MASTER).close()


def fault_at(point: int, fault: Fault, index: int, _message: Message) -> Fault:
    return fault if index == point else Fault.NONE


def revoke_five(repository: PostgresRepository, k: int) -> None:
    for n in range(1 + 5 * k, 6 + 5 * k):
        repository.revoke(node_id(n))


def test_protocol_over_postgres_survives_faults(repo: PostgresRepository) -> None:
    """The state machines end to end on the real store, with a duplicate and a
    restart at every other point."""
    ik = enrol(repo)
    sk = repo.controller_keys()[CONTROLLER_ID]
    for point, fault in enumerate([Fault.DUPLICATE, Fault.RESTART_RECIPIENT] * 4):
        sim = Simulation(
            repo,
            {CONTROLLER_ID: sk},
            ControllerState(CONTROLLER_ID, sk, next_tid=100 * (point + 1)),
            [NodeState(node_id(1), CONTROLLER_ID, repo.get_node(node_id(1)).key)],  # type: ignore[union-attr]
            secrets.token_bytes,
        )
        sim.start(node_id(1))
        sim.run(partial(fault_at, point, fault))
        record = repo.get_node(node_id(1))
        assert record is not None and record.status is NodeStatus.ACTIVE
        assert record.key == sim.node_states[node_id(1)].key != ik
        assert repo.count_pending(node_id(1)) == 0


def test_one_transaction_per_tid_across_connections(repo: PostgresRepository, pg_url: str) -> None:
    enrol(repo)
    others = [PostgresRepository(pg_url, MASTER, max_pending=3) for _ in range(4)]
    record = pending(7)
    results = race([partial(r.add_transaction, record) for r in others])
    assert sum(r is None for r in results) == 1
    assert sum(isinstance(r, TransactionExists) for r in results) == 3
    for other in others:
        other.close()


def test_a_batch_commits_once_and_keeps_the_writes_that_did_not_fail(
    repo: PostgresRepository, pg_url: str
) -> None:
    enrol(repo)
    other = PostgresRepository(pg_url, MASTER, max_pending=3)
    with repo.batch():
        repo.add_transaction(pending(1))
        with pytest.raises(TransactionExists):
            repo.add_transaction(pending(1))  # its savepoint undone, the batch goes on
        repo.add_transaction(pending(2))
        assert other.get_transaction(CONTROLLER_ID, 2) is None  # nothing before the commit
    assert other.get_transaction(CONTROLLER_ID, 1) is not None
    assert other.get_transaction(CONTROLLER_ID, 2) is not None
    other.close()


def test_a_batch_cut_from_the_database_is_interrupted_and_undone(
    repo: PostgresRepository, pg_url: str
) -> None:
    enrol(repo)
    with pytest.raises(StoreInterrupted), repo.batch():
        repo.add_transaction(pending(1))
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        repo.add_transaction(pending(2))
    assert repo.get_transaction(CONTROLLER_ID, 1) is None  # reconnected; nothing kept


def test_max_pending_holds_across_connections(repo: PostgresRepository, pg_url: str) -> None:
    """Eight servers each add a candidate for one node at once: the node row's
    lock lets exactly max_pending (3) in."""
    enrol(repo)
    others = [PostgresRepository(pg_url, MASTER, max_pending=3) for _ in range(8)]
    results = race([partial(r.add_transaction, pending(t)) for t, r in enumerate(others)])
    assert sum(r is None for r in results) == 3
    assert sum(isinstance(r, NodeBusy) for r in results) == 5
    assert repo.count_pending(node_id(1)) == 3
    for other in others:
        other.close()


def test_two_confirmations_of_one_node_race_safely(repo: PostgresRepository, pg_url: str) -> None:
    """Two candidates confirmed at once on two servers: exactly one becomes the
    node's key, the other is superseded (never two 'confirmed', never a key
    the node does not hold)."""
    enrol(repo)
    psks = [secrets.token_bytes(16) for _ in range(2)]
    for tid, psk in enumerate(psks, 1):
        repo.add_transaction(pending(tid, psk))
    a, b = (PostgresRepository(pg_url, MASTER) for _ in range(2))
    results = race([lambda: a.confirm(CONTROLLER_ID, 1), lambda: b.confirm(CONTROLLER_ID, 2)])
    assert sum(r is None for r in results) == 1
    assert sum(isinstance(r, UnknownTransaction) for r in results) == 1
    winner = results.index(None) + 1
    node = repo.get_node(node_id(1))
    assert node is not None and node.key == psks[winner - 1]
    statuses = {t: repo.get_transaction(CONTROLLER_ID, t).status for t in (1, 2)}  # type: ignore[union-attr]
    assert statuses[winner] is TransactionStatus.CONFIRMED
    assert statuses[3 - winner] is TransactionStatus.SUPERSEDED
    a.confirm(CONTROLLER_ID, winner)  # a retry after a lost commit acknowledgement
    a.close()
    b.close()


class Spied:
    """A connection whose statements a hook sees first."""

    def __init__(self, db: psycopg.Connection[Any], hook: Callable[[str], None]) -> None:
        self._db, self._hook = db, hook

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    def execute(self, sql: str, params: Any = None) -> Any:
        self._hook(sql)
        return self._db.execute(sql, params)


def test_no_bootstrap_starts_between_rotate_keys_count_and_its_new_key(
    repo: PostgresRepository, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As tests/test_store.py's test of this name: another server records a
    bootstrap the moment the pending ones have been counted. Counted outside the
    rotation's transaction, it went unnoticed; now it waits for the new key."""
    enrol(repo)
    server = PostgresRepository(pg_url, MASTER)
    server._connect().execute("SET lock_timeout = '200ms'")  # not wait for the test itself
    hook, said = a_bootstrap_just_after_the_count(server)
    connect = repo._connect
    monkeypatch.setattr(repo, "_connect", lambda: Spied(connect(), hook))
    rotated = rotate_key(repo, tmp_path / "sk.new")
    monkeypatch.undo()
    assert said == ["locked"] and rotated  # not "recorded" and rotated all the same
    server.add_transaction(pending(2))
    assert not rotate_key(repo, tmp_path / "sk.newer")
    server.close()


def test_revocations_are_numbered_in_commit_order(repo: PostgresRepository, pg_url: str) -> None:
    enrol(repo, nodes=20)
    revokers = [PostgresRepository(pg_url, MASTER) for _ in range(4)]
    results = race([partial(revoke_five, r, k) for k, r in enumerate(revokers)])
    assert not [r for r in results if isinstance(r, Exception)]
    feed = repo.revocations_after(0, 100)
    assert [seq for seq, _ in feed] == list(range(1, 21))
    assert {nid for _, nid in feed} == {node_id(n) for n in range(1, 21)}
    assert repo.revocation_marks() == (20, 0)
    for revoker in revokers:
        revoker.close()


def test_same_flight2_on_two_servers_gets_one_flight3(
    repo: PostgresRepository, pg_url: str
) -> None:
    """The server core over two connections, as two servers: the retransmission
    of one flight 2 lands on both at once; both answer the identical flight 3."""
    enrol(repo)
    sk = repo.controller_keys()[CONTROLLER_ID]
    now = 1_700_000_000
    hello = Flight1(node_id(1), secrets.token_bytes(16))
    flight2 = Flight2(CONTROLLER_ID, 9, now, secrets.token_bytes(16), hello).seal(sk)
    servers = [
        Server(PostgresRepository(pg_url, MASTER), {CONTROLLER_ID: sk}, ServerPolicy())
        for _ in range(2)
    ]
    replies = race([partial(s.handle, flight2, now) for s in servers])
    assert all(getattr(r, "status", None) is Status.OK for r in replies), replies
    assert isinstance(replies[0], Reply) and isinstance(replies[1], Reply)
    assert replies[0].payload == replies[1].payload
    assert repo.count_pending(node_id(1)) == 1


def test_revoking_a_revoked_node_again_says_so_and_adds_no_row(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """As on SQLite: a second revocations row would be one more for every server
    and controller to fetch, and the node's history would show two revocations."""
    admin = ["admin", "--database", pg_url, "--master-key", str(tmp_path / "mk.key")]
    controller = eui64(CONTROLLER_ID)
    assert main([*admin, "controller", "add", controller, "--key-out", str(tmp_path / "sk")]) == 0
    order = ["order", "create", "--installer", "acme", "--controller", controller]
    assert main([*admin, *order, "--count", "2", "--out", str(tmp_path / "b.json")]) == 0
    revoked_twice(admin, capsys)
    assert main([*admin, "revoke", "--order", "1"]) == 0
    assert capsys.readouterr().out == "order 1: 1 node(s) revoked\n"
    with psycopg.connect(pg_url) as db:
        rows = db.execute("SELECT node_id FROM revocations ORDER BY seq").fetchall()
    assert len(rows) == 2 and len(set(rows)) == 2


def test_commands_that_only_read_give_an_empty_database_no_table(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """As for a 0-byte SQLite file: ``admin nodes`` had made the database a store."""
    write_key_file(tmp_path / "mk.key", MASTER)
    admin = ["admin", "--database", pg_url, "--master-key", str(tmp_path / "mk.key")]
    for words in (["nodes"], ["controller", "list"], ["check"], ["order", "list"]):
        assert main([*admin, *words]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "refused: it is not a keystrap server store" in err, err
    with psycopg.connect(pg_url) as db:
        tables = db.execute("SELECT tablename FROM pg_tables WHERE schemaname=current_schema()")
        assert tables.fetchall() == []


def test_a_read_only_database_is_one_line_and_a_batch_goes_on(
    repo: PostgresRepository, pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A standby, or ``default_transaction_read_only=on``: PostgreSQL's refusal
    (not an OperationalError) went out as a traceback from every command and at
    server start, and out of a server's batch whole; now it is one line, and a
    batch's other requests are still answered."""
    enrol(repo)
    with psycopg.connect(pg_url, autocommit=True) as admin:
        name = admin.execute("SELECT current_database()").fetchone()
        assert name is not None
        admin.execute(f'ALTER DATABASE "{name[0]}" SET default_transaction_read_only = on')
        admin.execute(  # every session, the repository's too, starts again read-only
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    with pytest.raises(StoreError, match="read-only"):
        PostgresRepository(pg_url, MASTER)
    with repo.batch():
        with pytest.raises(StoreError, match="read-only") as refused:
            repo.add_transaction(pending(1))
        assert not isinstance(refused.value, StoreInterrupted)
        assert repo.get_node(node_id(1)) is not None  # the batch goes on
    write_key_file(tmp_path / "mk.key", MASTER)
    admin_args = ["admin", "--database", pg_url, "--master-key", str(tmp_path / "mk.key")]
    key_out = tmp_path / "c1.key"
    words = ["controller", "add", "02:00:00:00:00:00:00:c1", "--key-out", str(key_out)]
    assert main([*admin_args, *words]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "read-only" in err and "Traceback" not in err, err
    assert not key_out.exists()


def allow_connections(cluster: PrivateCluster, url: str, allow: bool) -> None:
    """The database refuses new connections (and loses its current ones) as if
    PostgreSQL were away, without stopping the session's cluster."""
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(cluster.url(), autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allow).lower()}')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )


def test_the_servers_flush_loop_outlives_a_database_outage(
    repo: PostgresRepository,
    pg_url: str,
    pg_cluster: PrivateCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The database away longer than the reconnection time: the server's loop
    that writes its activity log and re-reads the controller table ended at the
    first failure, silently, and the log then grew in memory until the server
    stopped; now each failure is a log line and the loop goes on."""
    monkeypatch.setattr(postgres_repository, "RECONNECT_SECONDS", 0.2)

    async def scenario() -> bool:
        activity = ActivityLog(tmp_path / "local.sqlite")
        controllers = LiveControllers(repo, interval=0.0)
        store: StoreThread[tuple[bytes, float], Reply] = StoreThread(lambda _: [], "test-store")
        flusher = asyncio.create_task(_flush_loop(activity, controllers, store))
        allow_connections(pg_cluster, pg_url, False)
        await asyncio.sleep(1.5)
        allow_connections(pg_cluster, pg_url, True)
        activity.heard_from(CONTROLLER_ID, 1.0)
        await asyncio.sleep(1.5)
        alive = not flusher.done()
        flusher.cancel()
        await store.close(activity.close)
        return alive

    with caplog.at_level(logging.WARNING, "keystrap.server"):
        assert asyncio.run(scenario())
    assert "store unavailable" in caplog.text and "Traceback" not in caplog.text
    db = sqlite3.connect(tmp_path / "local.sqlite")
    try:
        seen = db.execute("SELECT id FROM controller_seen").fetchall()
    finally:
        db.close()
    assert seen == [(CONTROLLER_ID,)]


def test_a_revocation_numbered_beyond_flight_10_is_refused_and_reported(
    repo: PostgresRepository, pg_url: str
) -> None:
    """As on SQLite: a revocation a hand edit numbered 2^33 is refused by its
    number, the ones before it are sent, and ``admin check`` names it."""
    enrol(repo, nodes=2)
    repo.revoke(node_id(1))
    with psycopg.connect(pg_url) as db:
        db.execute("UPDATE nodes SET status='revoked' WHERE id=%s", (node_id(2),))
        db.execute("INSERT INTO revocations VALUES (%s, %s, 0)", (2**33, node_id(2)))
    sk = repo.controller_keys()[CONTROLLER_ID]
    server = Server(repo, {CONTROLLER_ID: sk}, ServerPolicy())
    feed = RevocationFeed(CONTROLLER_ID, sk, 0, secrets.token_bytes)
    assert feed.receive(server.handle(feed.query(), 0)) == Page((node_id(1),), 1, more=False)
    refused = server.handle(feed.query(), 0)
    assert (refused.status, refused.event) == (
        Status.UNAVAILABLE,
        RevocationUnsendable(2**33, node_id(2)),
    )
    (problem,) = repo.check().problems
    assert problem.startswith(f"revocation 8589934592 (node {eui64(node_id(2))}) is numbered")
