"""The revocation feed (flights 9/10) and the controller dropping a revoked node."""

from __future__ import annotations

import secrets
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from keystrap.ids import eui64
from keystrap.protocol import (
    Controller,
    ControllerState,
    Node,
    NodeState,
    RevocationUnsendable,
    Server,
    Status,
    ToNode,
    ToServer,
    TransactionStage,
)
from keystrap.protocol.replies import Reply
from keystrap.protocol.revocation_feed import FeedRefused, Page, RevocationFeed
from keystrap.services.server import answer_batch
from keystrap.store.controller_store import ControllerStore, NodeCredential
from keystrap.wire import DecodeError, Flight9, Flight10, Flight12, FlightType, RefusalReason
from keystrap.wire.errors import AuthenticationError
from keystrap.wire.revocation import MAX_ENTRIES

from .conftest import CONTROLLER_ID, node_id
from .stepper import NOW, Parties
from .test_store import make_repo

SK = bytes(range(16))


def test_query_round_trip_and_size() -> None:
    query = Flight9(CONTROLLER_ID, 7, b"\x01" * 8)
    data = query.seal(SK)
    assert len(data) == Flight9.SIZE == 29
    assert Flight9.open(data, SK) == query


@pytest.mark.parametrize("position", range(Flight9.SIZE))
def test_every_flipped_bit_of_a_query_is_refused(position: int) -> None:
    data = bytearray(Flight9(CONTROLLER_ID, 7, b"\x01" * 8).seal(SK))
    data[position] ^= 0x04
    with pytest.raises(DecodeError):
        Flight9.open(bytes(data), SK)


def test_list_binds_controller_and_challenge() -> None:
    entries = ((3, node_id(1)), (4, node_id(2)))
    data = Flight10(b"\x02" * 8, 4, entries).seal(SK, CONTROLLER_ID)
    assert len(data) == 22 + 12 * 2
    assert (
        Flight10.open(data, SK, controller_id=CONTROLLER_ID, challenge=b"\x02" * 8).entries
        == entries
    )
    with pytest.raises(DecodeError, match="another query"):
        Flight10.open(data, SK, controller_id=CONTROLLER_ID, challenge=b"\x03" * 8)
    with pytest.raises(AuthenticationError):
        Flight10.open(data, SK, controller_id=node_id(9), challenge=b"\x02" * 8)
    with pytest.raises(AuthenticationError):
        Flight10.open(
            data[:-1] + bytes([data[-1] ^ 1]),
            SK,
            controller_id=CONTROLLER_ID,
            challenge=b"\x02" * 8,
        )


@pytest.mark.parametrize(
    "data",
    [b"", bytes([0x1A]), bytes([0x1A]) + b"\x00" * 12, bytes([0x1A]) + b"\x00" * 12 + b"\xff"],
)
def test_malformed_lists_raise_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        Flight10.open(data + b"\x00" * 8, SK, controller_id=CONTROLLER_ID, challenge=b"\x00" * 8)


def test_server_answers_only_known_controllers_with_new_revocations() -> None:
    parties = Parties()
    for n in range(2, 2 + MAX_ENTRIES + 3):
        parties.repository.enroll(node_id(n), secrets.token_bytes(16))
        parties.repository.revoke(node_id(n))
    challenge = secrets.token_bytes(8)
    reply = parties.server.handle(Flight9(CONTROLLER_ID, 0, challenge).seal(parties.sk_cs), NOW)
    assert reply.status is Status.OK
    first = Flight10.open(
        reply.payload, parties.sk_cs, controller_id=CONTROLLER_ID, challenge=challenge
    )
    assert len(first.entries) == MAX_ENTRIES and first.next_after == MAX_ENTRIES
    reply = parties.server.handle(
        Flight9(CONTROLLER_ID, first.next_after, challenge).seal(parties.sk_cs), NOW
    )
    rest = Flight10.open(
        reply.payload, parties.sk_cs, controller_id=CONTROLLER_ID, challenge=challenge
    )
    assert [n for _, n in rest.entries] == [node_id(n) for n in range(18, 21)]

    forged = Flight9(CONTROLLER_ID, 0, challenge).seal(secrets.token_bytes(16))
    assert parties.server.handle(forged, NOW).status is Status.UNAUTHORIZED
    stranger = Flight9(node_id(99), 0, challenge).seal(parties.sk_cs)
    assert parties.server.handle(stranger, NOW).status is Status.UNAUTHORIZED
    assert parties.server.handle(forged[:-1], NOW).status is Status.BAD_REQUEST


@pytest.mark.parametrize(("after", "expected"), [(2, 2), (3, 0), (2**32 - 1, 0)])
def test_a_controller_past_the_servers_last_revocation_is_sent_back_to_it(
    after: int, expected: int
) -> None:
    """A store that has numbered fewer revocations than the controller's cursor
    (restored by other means than ``admin restore``, or another site's) may hold
    any of its revocations unseen by the controller: it must ask from the start."""
    parties = Parties()
    for n in (2, 3):
        parties.repository.enroll(node_id(n), secrets.token_bytes(16))
        parties.repository.revoke(node_id(n))
    challenge = secrets.token_bytes(8)
    query = Flight9(CONTROLLER_ID, after, challenge).seal(parties.sk_cs)
    reply = parties.server.handle(query, NOW)
    answer = Flight10.open(
        reply.payload, parties.sk_cs, controller_id=CONTROLLER_ID, challenge=challenge
    )
    assert answer.entries == () and answer.next_after == expected


@pytest.mark.parametrize("revoked_after", [FlightType.F2_REQUEST, FlightType.F6_CONFIRM])
def test_a_node_revoked_mid_bootstrap_is_refused_as_revoked(
    tmp_path: Path, revoked_after: FlightType
) -> None:
    """The SQLite store's revocation supersedes the node's open transactions: the
    controller's next flight 6 was told "another bootstrap of this node completed"
    (4.09) and its repeated flight 2 "transaction already finished", and the node
    got flight 12 with no reason, instead of "revoked"."""
    ik = secrets.token_bytes(16)
    repository = make_repo(tmp_path, ik=ik)
    sk_cs = repository.controller_keys()[CONTROLLER_ID]
    server = Server(repository, {CONTROLLER_ID: sk_cs})
    controller = Controller(ControllerState(CONTROLLER_ID, sk_cs), secrets.token_bytes)
    node = Node(NodeState(node_id(1), CONTROLLER_ID, ik), secrets.token_bytes)
    node.start(NOW)
    controller.receive_from_node(node.data_to_send()[0], NOW, session="s")
    (request,) = controller.data_to_send()
    assert isinstance(request, ToServer)
    with repository.batch():
        grant = server.handle(request.data, NOW)
    if revoked_after is FlightType.F6_CONFIRM:
        controller.receive_from_server(request.tid, grant, NOW)
        (challenge,) = controller.data_to_send()
        assert isinstance(challenge, ToNode)
        node.receive(challenge.data, NOW)
        controller.receive_from_node(node.data_to_send()[0], NOW, session="s")
        (request,) = [out for out in controller.data_to_send() if isinstance(out, ToServer)]
    assert repository.revoke(node_id(1))
    with repository.batch():
        reply = server.handle(request.data, NOW)
    assert (reply.status, reply.reason) == (Status.FORBIDDEN, "node revoked")
    controller.receive_from_server(request.tid, reply, NOW)
    told = Flight12(node_id(1), RefusalReason.REVOKED).encode()
    assert ToNode(node_id(1), told, "s") in controller.data_to_send()
    repository.close()


@pytest.mark.parametrize(
    ("entries", "next_after", "accepted"),
    [
        ((), 5, True),
        ((), 3, True),  # a restored server sends the controller back
        (((6, node_id(1)), (7, node_id(2))), 7, True),
        ((), 9, False),  # forward with nothing to apply
        (((6, node_id(1)),), 9, False),  # past 7..9, never carried
        (((5, node_id(1)),), 5, False),  # applied already
        (((6, node_id(1)), (6, node_id(2))), 6, False),
        (((7, node_id(1)), (6, node_id(2))), 7, False),
        (((6, node_id(1)), (7, node_id(2))), 6, False),
    ],
)
def test_an_authentic_answer_out_of_order_moves_no_cursor(
    entries: tuple[tuple[int, bytes], ...], next_after: int, accepted: bool
) -> None:
    """Only the server can seal flight 10, but a store it reads wrongly (or a
    server of another make) could send ``next`` past what it carries: the cursor
    moved there and those revocations were never fetched again."""
    feed = RevocationFeed(CONTROLLER_ID, SK, 5, secrets.token_bytes)
    query = Flight9.open(feed.query(), SK)
    answer = Flight10(query.challenge, next_after, entries).seal(SK, CONTROLLER_ID)
    page = feed.receive(Reply(Status.OK, answer))
    if accepted:  # sent back, it says from where, and asks again at once
        rewound = 5 if next_after < 5 else None
        assert page == Page(tuple(n for _, n in entries), next_after, rewound is not None, rewound)
    else:
        assert isinstance(page, FeedRefused) and "out of order" in page.reason
        assert feed.cursor == 5


def test_controller_forgets_a_revoked_node() -> None:
    parties = Parties()
    flights = parties.run_until()
    assert FlightType.F7_CONFIRMED in flights
    done = parties.controller.state.transactions[parties.tid]
    assert done.stage is TransactionStage.DONE and done.psk is not None

    parties.node.start(NOW)  # a re-installation under way when the revocation arrives
    parties.controller.receive_from_node(parties.node.data_to_send()[0], NOW)
    parties.controller.data_to_send()
    parties.controller.forget_node(parties.nid)
    transactions = parties.controller.state.transactions.values()
    assert all(tx.psk is None for tx in transactions)
    assert {tx.stage for tx in transactions} == {TransactionStage.DONE, TransactionStage.FAILED}


def test_controller_store_forgets_only_what_it_knew(tmp_path: Path) -> None:
    store = ControllerStore(tmp_path / "sbr.sqlite", secrets.token_bytes(16))
    psk = secrets.token_bytes(16)
    try:
        store.record_node(node_id(1), 4, psk)
        assert store.get_node(node_id(1)) == NodeCredential(node_id(1), 4, psk, None, "active")
        assert store.revoke_node(node_id(2)) is False  # another controller's node
        assert store.revoke_node(node_id(1)) is True
        assert store.get_node(node_id(1)) == NodeCredential(node_id(1), 4, None, None, "revoked")
        assert store.list_nodes() == [(node_id(1), "revoked", None)]
        store.record_node(node_id(1), 9, psk)  # re-enrolled and bootstrapped again
        assert store.get_node(node_id(1)).status == "active"  # type: ignore[union-attr]
    finally:
        store.close()
    assert (tmp_path / "sbr.sqlite").stat().st_mode & 0o777 == 0o600
    for stored in tmp_path.glob("sbr.sqlite*"):  # the database and its WAL
        assert psk not in stored.read_bytes()  # wrapped under the master key


def test_finished_transactions_are_pruned_and_deleted_from_the_store(tmp_path: Path) -> None:
    parties = Parties()
    parties.run_until()  # one bootstrap, done at NOW
    done_tid = parties.tid
    parties.node.start(NOW + 50)  # a second one, still open
    parties.controller.receive_from_node(parties.node.data_to_send()[0], NOW + 50)
    open_tid = parties.controller.data_to_send()[0].tid  # type: ignore[union-attr]
    store = ControllerStore(tmp_path / "sbr.sqlite", secrets.token_bytes(16))
    try:
        store.save(parties.controller.state, parties.controller.unsaved())
        assert parties.controller.prune_finished(NOW - 1) == []  # not old enough yet
        assert parties.controller.prune_finished(NOW + 3600) == [done_tid]
        assert set(parties.controller.state.transactions) == {open_tid}  # open ones stay
        store.save(parties.controller.state, parties.controller.unsaved())
        assert set(store.load(CONTROLLER_ID, parties.sk_cs).transactions) == {open_tid}
    finally:
        store.close()


def test_a_revocation_numbered_beyond_flight_10_is_refused_by_name_never_skipped(
    tmp_path: Path,
) -> None:
    """A hand edit numbers a revocation 2^33: flight 10 could not carry it, and
    the exception failed the store thread's whole batch, so every flight 9 and
    every bootstrap that shared its commit got "5.03 store unavailable" at every
    poll. The revocations before it are sent; it is refused by its number, the
    controller's cursor stays before it, and the batch's other requests stand."""
    repo = make_repo(tmp_path, 3)
    try:
        sk_cs = repo.controller_keys()[CONTROLLER_ID]
        repo.revoke(node_id(1))
        with closing(sqlite3.connect(tmp_path / "sbs.sqlite")) as db:
            db.execute("UPDATE nodes SET status='revoked' WHERE id=?", (node_id(2),))
            db.execute("INSERT INTO revocations VALUES (?, ?, 0)", (2**33, node_id(2)))
            db.commit()
        repo.revoke(node_id(3))  # numbered after the highest: out of reach as well
        server = Server(repo, repo.controller_keys())
        feed = RevocationFeed(CONTROLLER_ID, sk_cs, 0, secrets.token_bytes)
        page = feed.receive(server.handle(feed.query(), NOW))
        assert page == Page((node_id(1),), 1, more=False)

        fresh = RevocationFeed(CONTROLLER_ID, sk_cs, 0, secrets.token_bytes)
        refused, answered = answer_batch(server, [(feed.query(), NOW), (fresh.query(), NOW)])
        assert refused.status is Status.UNAVAILABLE
        assert refused.reason == "revocation 8589934592 is above 2^32-1 (store edited?)"
        assert refused.event == RevocationUnsendable(2**33, node_id(2))
        assert isinstance(feed.receive(refused), FeedRefused) and feed.cursor == 1
        assert fresh.receive(answered) == Page((node_id(1),), 1, more=False)

        (problem,) = repo.check().problems
        assert problem.startswith(
            f"revocation 8589934592 (node {eui64(node_id(2))}) and 1 more are numbered above "
            "4294967295, which the revocation feed cannot send"
        )
    finally:
        repo.close()
