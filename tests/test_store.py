"""Storage: the SQLite repository, key files, the controller store, node files."""

import argparse
import json
import os
import re
import secrets
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from keystrap.cli.admin_actions import _controller_rotate_key
from keystrap.ids import eui64
from keystrap.protocol import (
    ControllerState,
    NodeStage,
    NodeState,
    NodeStatus,
    TransactionExists,
    TransactionRecord,
    TransactionStage,
    TransactionStatus,
)
from keystrap.store.controller_store import ControllerStore
from keystrap.store.errors import StoreError
from keystrap.store.keyfile import load_or_create_key_file, read_key_file, write_key_file
from keystrap.store.node_file import NodeFile, encode_node_file, load_node_file, save_node_file
from keystrap.store.open import Repository
from keystrap.store.sqlite_repository import ControllerInfo, SqliteRepository
from keystrap_lab.simulation import Fault, Simulation

from .conftest import CONTROLLER_ID, node_id

PENDING = TransactionStatus.PENDING


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def make_repo(tmp_path: Path, nodes: int = 1, ik: bytes | None = None) -> SqliteRepository:
    repo = SqliteRepository(tmp_path / "sbs.sqlite", secrets.token_bytes(16))
    repo.add_controller(
        ControllerInfo(CONTROLLER_ID, "c", "127.0.0.1", 5684), secrets.token_bytes(16)
    )
    key = ik or secrets.token_bytes(16)
    repo.create_order(
        "acme", CONTROLLER_ID, [(node_id(n), key) for n in range(1, nodes + 1)], "shared"
    )
    return repo


def test_keys_are_wrapped_at_rest(tmp_path: Path) -> None:
    ik = secrets.token_bytes(16)
    repo = make_repo(tmp_path, ik=ik)
    sk = repo.controller_keys()[CONTROLLER_ID]
    repo.close()
    raw = (tmp_path / "sbs.sqlite").read_bytes()
    assert ik not in raw and sk not in raw
    assert mode(tmp_path / "sbs.sqlite") == 0o600


def test_wrong_master_key_is_refused_at_open(tmp_path: Path) -> None:
    make_repo(tmp_path).close()
    with pytest.raises(StoreError, match="master key"):
        SqliteRepository(tmp_path / "sbs.sqlite", secrets.token_bytes(16))


def test_tid_is_accepted_once_even_across_connections(tmp_path: Path) -> None:
    master = secrets.token_bytes(16)
    a = SqliteRepository(tmp_path / "db", master)
    b = SqliteRepository(tmp_path / "db", master)
    record = TransactionRecord(
        CONTROLLER_ID,
        7,
        node_id(1),
        b"req",
        b"grant",
        bytes(16),
        bytes(16),
        TransactionStatus.PENDING,
        0,
    )
    a.add_transaction(record)
    with pytest.raises(TransactionExists):
        b.add_transaction(record)


def test_confirm_is_atomic_and_supersedes_the_others(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    psks = [secrets.token_bytes(16) for _ in range(3)]
    for tid, psk in enumerate(psks, 1):
        repo.add_transaction(
            TransactionRecord(
                CONTROLLER_ID,
                tid,
                node_id(1),
                b"r",
                b"g",
                bytes(16),
                psk,
                TransactionStatus.PENDING,
                0,
            )
        )
    assert repo.count_pending(node_id(1)) == 3
    repo.confirm(CONTROLLER_ID, 2)
    node = repo.get_node(node_id(1))
    assert node is not None and node.key == psks[1] and node.status is NodeStatus.ACTIVE
    statuses = [repo.get_transaction(CONTROLLER_ID, t) for t in (1, 2, 3)]
    assert [s.status for s in statuses if s] == [
        TransactionStatus.SUPERSEDED,
        TransactionStatus.CONFIRMED,
        TransactionStatus.SUPERSEDED,
    ]
    assert all(s is not None and s.psk is None and s.grant is None for s in statuses)


@pytest.mark.parametrize("fault", [Fault.DROP, Fault.DUPLICATE, Fault.RESTART_RECIPIENT])
@pytest.mark.parametrize("point", range(9))
def test_protocol_over_sqlite_survives_faults(tmp_path: Path, point: int, fault: Fault) -> None:
    """The state-machine fault test, with the real repository underneath."""
    ik, sk = secrets.token_bytes(16), secrets.token_bytes(16)
    repo = SqliteRepository(tmp_path / "db", secrets.token_bytes(16))
    repo.add_controller(ControllerInfo(CONTROLLER_ID, "c", "h", 1), sk)
    repo.create_order("acme", CONTROLLER_ID, [(node_id(1), ik)], "shared")
    sim = Simulation(
        repo,
        {CONTROLLER_ID: sk},
        ControllerState(CONTROLLER_ID, sk),
        [NodeState(node_id(1), CONTROLLER_ID, ik)],
        secrets.token_bytes,
    )
    sim.start(node_id(1))
    sim.run(lambda i, _m: fault if i == point else Fault.NONE)
    record = repo.get_node(node_id(1))
    assert record is not None and record.status is NodeStatus.ACTIVE
    assert record.key == sim.node_states[node_id(1)].key != ik
    assert repo.count_pending(node_id(1)) == 0


def test_revoke_refuses_and_drops_candidates(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    repo.add_transaction(
        TransactionRecord(
            CONTROLLER_ID,
            1,
            node_id(1),
            b"r",
            b"g",
            bytes(16),
            bytes(16),
            TransactionStatus.PENDING,
            0,
        )
    )
    repo.revoke(node_id(1))
    node = repo.get_node(node_id(1))
    assert node is not None and node.status is NodeStatus.REVOKED
    assert repo.count_pending(node_id(1)) == 0
    assert [n.status for n in repo.list_nodes()] == ["revoked"]


def test_orders_installers_controllers_lifecycle(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, nodes=3)
    assert [o.nodes for o in repo.list_orders()] == [3]
    with pytest.raises(StoreError, match="order"):
        repo.remove_installer("acme")
    with pytest.raises(StoreError, match="order"):
        repo.remove_controller(CONTROLLER_ID)
    with pytest.raises(StoreError, match="already enrolled"):
        repo.create_order("acme", CONTROLLER_ID, [(node_id(1), bytes(16))], "shared")
    assert repo.remove_order(1) == 3
    repo.remove_installer("acme")
    repo.remove_controller(CONTROLLER_ID)
    assert repo.list_orders() == [] and repo.list_installers() == []
    assert repo.list_controllers() == []


def test_key_files(tmp_path: Path) -> None:
    path = tmp_path / "k" / "a.key"
    key, created = load_or_create_key_file(path, secrets.token_bytes)
    assert created and mode(path) == 0o600
    assert load_or_create_key_file(path, secrets.token_bytes) == (key, False)
    os.chmod(path, 0o644)
    with pytest.raises(StoreError, match="chmod 600"):
        read_key_file(path)
    os.chmod(path, 0o600)
    path.write_text("zz\n")
    with pytest.raises(StoreError, match="hex"):
        read_key_file(path)
    with pytest.raises(StoreError, match="--force"):
        write_key_file(path, bytes(range(16)))
    write_key_file(path, bytes(range(16)), force=True)
    assert read_key_file(path) == bytes(range(16))
    with pytest.raises(StoreError, match="does not exist"):
        read_key_file(tmp_path / "missing.key")


def test_controller_store_round_trip_and_wrapping(tmp_path: Path) -> None:
    from keystrap.protocol import Controller

    master, sk = secrets.token_bytes(16), secrets.token_bytes(16)
    store = ControllerStore(tmp_path / "sbr.sqlite", master)
    empty = store.load(CONTROLLER_ID, sk)
    assert empty.next_tid == 1 and not empty.transactions
    controller = Controller(empty, secrets.token_bytes)
    controller.receive_from_node(bytes([0x11]) + node_id(1) + bytes(16), 1_700_000_000)
    store.save(controller.state, controller.unsaved())
    store.close()
    again = ControllerStore(tmp_path / "sbr.sqlite", master).load(CONTROLLER_ID, sk)
    assert again == controller.state
    assert again.next_tid == 2 and again.transactions[1].stage is TransactionStage.AWAITING_GRANT
    rn_c = again.transactions[1].rn_c
    assert rn_c not in (tmp_path / "sbr.sqlite").read_bytes()
    assert mode(tmp_path / "sbr.sqlite") == 0o600


def test_controller_store_writes_only_what_changed_and_restart_keeps_the_index(
    tmp_path: Path,
) -> None:
    """Saves are driven by the core's change set; a restarted controller still
    recognises a node repeating its flight 1 (the per-node index is rebuilt)."""
    from keystrap.protocol import Controller, ToServer

    master, sk = secrets.token_bytes(16), secrets.token_bytes(16)
    path = tmp_path / "sbr.sqlite"
    store = ControllerStore(path, master)
    controller = Controller(store.load(CONTROLLER_ID, sk), secrets.token_bytes)
    hellos = [bytes([0x11]) + node_id(n) + secrets.token_bytes(16) for n in (1, 2, 3, 4)]
    for hello in hellos[:3]:
        controller.receive_from_node(hello, 1_700_000_000)
    saving = controller.unsaved()
    assert saving == {1, 2, 3}
    snapshot = controller.state
    store.save(snapshot, saving)
    controller.receive_from_node(hellos[3], 1_700_000_000)  # while the save ran
    controller.mark_saved(saving)
    controller.receive_from_node(hellos[1], 1_700_000_001)  # a repeat: answered, not stored
    assert controller.unsaved() == {4}  # listed until its own save succeeds
    store.close()

    store = ControllerStore(path, master)
    restarted = Controller(store.load(CONTROLLER_ID, sk), secrets.token_bytes)
    restarted.receive_from_node(hellos[1], 1_700_000_002)
    (out,) = restarted.data_to_send()
    assert isinstance(out, ToServer) and out.tid == 2
    assert out.data == snapshot.transactions[2].request
    assert restarted.unsaved() == set() and restarted.state.next_tid == 4
    store.close()


def test_controller_snapshots_are_not_changed_by_later_steps() -> None:
    """The store and the crash tests keep old states; a step must never alter one."""
    from keystrap.protocol import Controller

    controller = Controller(ControllerState(CONTROLLER_ID, bytes(16)), secrets.token_bytes)
    controller.receive_from_node(bytes([0x11]) + node_id(1) + bytes(16), 1_700_000_000)
    before = controller.state
    held = dict(before.transactions)
    controller.receive_from_node(bytes([0x11]) + node_id(2) + bytes(16), 1_700_000_000)
    controller.prune_finished(1_800_000_000)  # nothing finished: nothing pruned
    assert dict(before.transactions) == held and before.next_tid == 2
    assert set(controller.state.transactions) == {1, 2}


def test_node_file_round_trip_atomic_and_private(tmp_path: Path) -> None:
    path = tmp_path / "n.json"
    state = NodeState(
        node_id(1), CONTROLLER_ID, bytes(16), NodeStage.AWAITING_CHALLENGE, rn_i=bytes(range(16))
    )
    node = NodeFile(state, "127.0.0.1", 5684, "unix:/tmp/x")
    save_node_file(path, node)
    assert load_node_file(path) == node
    assert mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["n.json"]  # no temp file left behind


@pytest.mark.parametrize(
    "content",
    [
        "",
        "{}",
        "[1]",
        '{"format": "keystrap-node/1"}',
        '{"format": "keystrap-node/1", "node_id": "zz"}',
    ],
)
def test_node_file_rejects_garbage(tmp_path: Path, content: str) -> None:
    path = tmp_path / "n.json"
    path.write_text(content)
    with pytest.raises(StoreError):
        load_node_file(path)


def node_doc(**members: object) -> dict[str, object]:
    """A new node file's JSON, with ``members`` replaced."""
    state = NodeState(node_id(1), CONTROLLER_ID, bytes(16))
    doc: dict[str, object] = json.loads(encode_node_file(NodeFile(state, "h", 5684, "unix:s")))
    return doc | members


KEYED = {
    "stage": "keyed",
    "tid": 7,
    "session_key": "11" * 16,
    "challenge": "44" * 45,
    "proof": "55" * 29,
}
CONSISTENT = [
    {},
    {"stage": "awaiting-challenge", "rn_i": "00" * 16},
    KEYED,
    {"stage": "keyed", "confirmed": True},  # a key given without a bootstrap (the lab's)
    {"version": 2, **KEYED, "challenge": "44" * 29, "proof": "55" * 13},
]
INCONSISTENT = [
    ({"stage": "awaiting-challenge"}, "stage awaiting-challenge holds none"),
    ({"rn_i": "00" * 16}, "stage provisioned holds rn_i"),
    (KEYED | {"rn_i": "00" * 16}, "stage keyed holds rn_i"),
    ({"stage": "keyed", "tid": 7}, "stage keyed holds tid of"),
    (KEYED | {"tid": "7"}, "tid must be an integer"),
    (KEYED | {"tid": 2**32}, "tid must be an integer"),
    (KEYED | {"challenge": "44" * 29}, "challenge must be 90 hex digits"),  # version 2's
    ({"stage": "awaiting-challenge", "rn_i": "00" * 8}, "rn_i must be 32 hex digits"),
    ({"stage": "bootstrapped"}, "stage must be one of"),
    ({"confirmed": "false"}, "confirmed must be true or false"),
    ({"controller": {"host": "h", "port": -1}}, "controller.port"),
    ({"controller": {"host": "h", "port": 99_999_999}}, "controller.port"),
    ({"channels": {"to_node": "smoke"}}, "channels.to_node"),
    ({"oob": 5}, "oob"),
]


@pytest.mark.parametrize("members", CONSISTENT)
def test_node_file_stages_hold_what_they_need(tmp_path: Path, members: dict[str, object]) -> None:
    path = tmp_path / "n.json"
    path.write_text(json.dumps(node_doc(**members)))
    assert load_node_file(path).state.stage.value == node_doc(**members)["stage"]


@pytest.mark.parametrize(("members", "named"), INCONSISTENT, ids=[n for _, n in INCONSISTENT])
def test_node_file_rejects_inconsistent_state(
    tmp_path: Path, members: dict[str, object], named: str
) -> None:
    """Each stage holds what the node relies on (``rn_i`` to re-send flight 1,
    the TID to take flight 11), every member its type: a file edited by hand
    fails when read, naming the member, instead of an assertion or a
    ``"false"`` taken for true."""
    path = tmp_path / "n.json"
    path.write_text(json.dumps(node_doc(**members)))
    with pytest.raises(StoreError, match=re.escape(named)):
        load_node_file(path)


def pending(tid: int) -> TransactionRecord:
    return TransactionRecord(
        CONTROLLER_ID, tid, node_id(1), b"r", b"g", bytes(16), bytes(16), PENDING, 0
    )


def a_bootstrap_just_after_the_count(server: Repository) -> tuple[Callable[[str], None], list[str]]:
    """A hook for the statements of ``admin controller rotate-key``: once the
    controller's pending bootstraps have been counted, ``server`` records one
    before the rotation's next statement. Says whether it was "recorded", or had
    to wait for the rotation and gave up ("locked")."""
    said: list[str] = []
    counted = False

    def hook(statement: str) -> None:
        nonlocal counted
        if counted and not said:
            try:
                server.add_transaction(pending(1))
                said.append("recorded")
            except (StoreError, sqlite3.OperationalError):
                said.append("locked")
        counted = counted or ("FROM transactions" in statement and "pending" in statement)

    return hook, said


def rotate_key(repo: Repository, key_out: Path) -> bool:
    """``admin controller rotate-key`` without --force; False if it was refused
    for unfinished bootstraps (then no key file is left)."""
    old = repo.controller_keys()[CONTROLLER_ID]
    args = argparse.Namespace(id=eui64(CONTROLLER_ID), key_out=key_out, force=False)
    try:
        _controller_rotate_key(repo, args)
    except StoreError as exc:
        assert "unfinished bootstrap" in str(exc) and not key_out.exists()
        assert repo.controller_keys()[CONTROLLER_ID] == old
        return False
    return True


def test_no_bootstrap_starts_between_rotate_keys_count_and_its_new_key(tmp_path: Path) -> None:
    """rotate-key refuses while the controller has unfinished bootstraps (their
    confirmations are sealed with the old key); it counted them before the
    rotation's transaction, so a bootstrap the server recorded in between went
    unnoticed. Now the count is inside: the server waits for the new key."""
    master = secrets.token_bytes(16)
    repo = SqliteRepository(tmp_path / "sbs.sqlite", master)
    repo.add_controller(ControllerInfo(CONTROLLER_ID, "c", "h", 1), secrets.token_bytes(16))
    repo.create_order("acme", CONTROLLER_ID, [(node_id(1), bytes(16))], "shared")
    server = SqliteRepository(repo.path, master)
    server._db.execute("PRAGMA busy_timeout=100")
    hook, said = a_bootstrap_just_after_the_count(server)
    repo._db.set_trace_callback(hook)
    rotated = rotate_key(repo, tmp_path / "sk.new")
    repo._db.set_trace_callback(None)
    assert said == ["locked"] and rotated  # not "recorded" and rotated all the same
    server.add_transaction(pending(2))
    assert not rotate_key(repo, tmp_path / "sk.newer")
    repo.close()
    server.close()
