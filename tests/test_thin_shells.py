"""The execution model around the cores: group commit on the store's thread, the
controller core's out-of-band sessions, the revocation feed core, two clocks."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import aiocoap
import pytest

import keystrap.protocol.server as server_module
from keystrap.coap.datagram import parse_post
from keystrap.coap.fast_path import response
from keystrap.oob.link import travels_raw
from keystrap.protocol import (
    Controller,
    ControllerState,
    InMemoryRepository,
    Node,
    NodeState,
    Reply,
    Server,
    Status,
    ToNode,
    ToServer,
)
from keystrap.protocol.controller import EndSession
from keystrap.protocol.revocation_feed import FeedRefused, Page, RevocationFeed
from keystrap.services.server import answer_batch
from keystrap.store.sqlite_repository import ControllerInfo, SqliteRepository
from keystrap.store.worker import StoreThread
from keystrap.wire import (
    COMPACT,
    CompactFlight11,
    Flight4,
    Flight9,
    Flight10,
    Flight12,
    FlightType,
    RefusalReason,
    peek_type,
)
from keystrap.wire.revocation import MAX_ENTRIES

from .conftest import CONTROLLER_ID, node_id
from .stepper import NOW, Parties

WALL = 1_700_000_000.0


def sqlite_server(tmp_path: Path, nodes: int) -> tuple[Server, SqliteRepository, bytes, bytes]:
    repo = SqliteRepository(tmp_path / "sbs.sqlite", secrets.token_bytes(16))
    sk_cs, ik = secrets.token_bytes(16), secrets.token_bytes(16)
    repo.add_controller(ControllerInfo(CONTROLLER_ID, "c", "127.0.0.1", 5684), sk_cs)
    repo.create_order("acme", CONTROLLER_ID, [(node_id(n), ik) for n in range(nodes)], "shared")
    return Server(repo, repo.controller_keys()), repo, sk_cs, ik


def flight2(sk_cs: bytes, ik: bytes, n: int, tid: int) -> bytes:
    controller = Controller(
        ControllerState(CONTROLLER_ID, sk_cs, next_tid=tid), secrets.token_bytes
    )
    node = Node(NodeState(node_id(n), CONTROLLER_ID, ik), secrets.token_bytes)
    node.start(time.time())
    controller.receive_from_node(node.data_to_send()[0], time.monotonic(), time.time())
    (out,) = controller.data_to_send()
    assert isinstance(out, ToServer)
    return out.data


def test_a_batch_is_one_commit_and_retransmissions_in_it_get_the_same_grant(
    tmp_path: Path,
) -> None:
    server, repo, sk_cs, ik = sqlite_server(tmp_path, 3)
    try:
        requests = [flight2(sk_cs, ik, n, 10 + n) for n in range(3)]
        batch = [(r, time.time()) for r in [requests[0], requests[0], *requests[1:]]]
        replies = answer_batch(server, batch)
        assert [r.status for r in replies] == [Status.OK] * 4
        assert replies[0].payload == replies[1].payload  # the one TID recorded once
        assert replies[1].event is None  # a retransmission, not a new grant
        # Committed: another connection sees all three transactions.
        other = sqlite3.connect(tmp_path / "sbs.sqlite")
        assert other.execute("SELECT COUNT(*) FROM transactions").fetchone()[0] == 3
        other.close()
    finally:
        repo.close()


def confirmations(server: Server, sk_cs: bytes, ik: bytes, tid: int, nodes: int) -> list[bytes]:
    """Flight 6 of nodes ``0 .. nodes-1`` (TIDs from ``tid`` on), each flight 2
    answered by ``server``."""
    controller = Controller(
        ControllerState(CONTROLLER_ID, sk_cs, next_tid=tid), secrets.token_bytes
    )
    flights = []
    for n in range(nodes):
        node = Node(NodeState(node_id(n), CONTROLLER_ID, ik), secrets.token_bytes)
        node.start(time.time())
        controller.receive_from_node(node.data_to_send()[0], time.monotonic(), time.time())
        (request,) = controller.data_to_send()
        assert isinstance(request, ToServer)
        reply = server.handle(request.data, time.time())
        controller.receive_from_server(request.tid, reply, time.time())
        (challenge,) = controller.data_to_send()
        assert isinstance(challenge, ToNode)
        node.receive(challenge.data, time.time())
        controller.receive_from_node(node.data_to_send()[0], time.monotonic(), time.time())
        (confirm,) = controller.data_to_send()
        assert isinstance(confirm, ToServer)
        flights.append(confirm.data)
    return flights


def test_a_request_whose_write_fails_halfway_is_undone_alone(tmp_path: Path) -> None:
    """One confirmation of a batch fails after the node took its new key: that
    confirmation is answered 5.03 and undone whole (the node keeps its old key),
    the batch's other confirmation is committed."""
    server, repo, sk_cs, ik = sqlite_server(tmp_path, 2)
    try:
        flights = confirmations(server, sk_cs, ik, 20, 2)
        other = sqlite3.connect(tmp_path / "sbs.sqlite")
        other.execute(
            "CREATE TRIGGER fail_21 BEFORE UPDATE ON transactions WHEN OLD.tid=21 "
            "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
        other.close()
        replies = answer_batch(server, [(f, time.time()) for f in flights])
        assert [r.status for r in replies] == [Status.OK, Status.UNAVAILABLE]
        done, undone = repo.get_node(node_id(0)), repo.get_node(node_id(1))
        assert done is not None and done.status.value == "active" and done.key != ik
        assert undone is not None and undone.status.value == "enrolled" and undone.key == ik
        still = repo.get_transaction(CONTROLLER_ID, 21)
        assert still is not None and still.status.value == "pending"
    finally:
        repo.close()


def test_a_failed_batch_answers_nothing_and_keeps_nothing(tmp_path: Path) -> None:
    server, repo, sk_cs, ik = sqlite_server(tmp_path, 1)
    request = flight2(sk_cs, ik, 0, 5)

    def failing(requests: Sequence[tuple[bytes, float]]) -> list[Reply]:
        with repo.batch():
            for data, now in requests:
                server.handle(data, now)
            raise sqlite3.OperationalError("disk I/O error")

    async def scenario() -> None:
        store: StoreThread[tuple[bytes, float], Reply] = StoreThread(failing, "test-store")
        try:
            outcome = await asyncio.gather(
                store.ask((request, time.time())), return_exceptions=True
            )
            assert isinstance(outcome[0], sqlite3.OperationalError)
            assert store.batches == 0
        finally:
            await store.close(lambda: None)

    try:
        asyncio.run(scenario())
        assert repo.get_transaction(CONTROLLER_ID, 5) is None  # rolled back whole
    finally:
        repo.close()


def test_requests_queued_while_the_store_works_share_one_commit(tmp_path: Path) -> None:
    server, repo, sk_cs, ik = sqlite_server(tmp_path, 40)
    requests = [flight2(sk_cs, ik, n, 100 + n) for n in range(40)]

    async def scenario() -> list[Reply]:
        store: StoreThread[tuple[bytes, float], Reply] = StoreThread(
            lambda batch: answer_batch(server, batch), "test-store"
        )
        try:
            replies = await asyncio.gather(*(store.ask((r, time.time())) for r in requests))
            assert store.requests == 40
            assert store.batches < 40  # the thread took what queued up meanwhile
            return list(replies)
        finally:
            await store.close(lambda: None)

    try:
        replies = asyncio.run(scenario())
        assert all(r.status is Status.OK for r in replies)
        assert all(repo.get_transaction(CONTROLLER_ID, 100 + n) for n in range(40))
    finally:
        repo.close()


def test_a_wall_clock_step_backwards_does_not_stall_retransmission() -> None:
    parties = Parties()
    parties.node.start(WALL)
    controller = Controller(ControllerState(CONTROLLER_ID, parties.sk_cs), secrets.token_bytes)
    controller.receive_from_node(parties.node.data_to_send()[0], 50.0, WALL)
    (first,) = controller.data_to_send()
    assert isinstance(first, ToServer)
    due = controller.get_timer()
    assert due is not None and due < 60  # on the monotonic clock, not the wall's
    controller.handle_timer(due, WALL - 3600)  # the wall clock went back an hour
    (again,) = controller.data_to_send()
    assert again == first
    assert controller.state.transactions[first.tid].ts == int(WALL)  # TS from the wall


def test_answers_go_to_the_nodes_session_which_ends_with_flight_11() -> None:
    parties = Parties()
    controller, server, node = parties.controller, parties.server, parties.node
    node.start(NOW)
    controller.receive_from_node(node.data_to_send()[0], NOW, session="a")
    (request,) = controller.data_to_send()
    assert isinstance(request, ToServer)
    controller.receive_from_server(request.tid, server.handle(request.data, NOW), NOW)
    (challenge,) = controller.data_to_send()
    assert isinstance(challenge, ToNode)
    assert challenge == ToNode(parties.nid, challenge.data, "a")
    node.receive(challenge.data, NOW)
    controller.receive_from_node(node.data_to_send()[0], NOW, session="b")  # a new session
    (confirm,) = controller.data_to_send()
    assert isinstance(confirm, ToServer)
    controller.receive_from_server(confirm.tid, server.handle(confirm.data, NOW), NOW)
    confirmed, end = controller.data_to_send()
    assert isinstance(confirmed, ToNode) and confirmed.session == "b"
    assert peek_type(confirmed.data) is FlightType.F11_NODE_CONFIRMED
    assert end == EndSession("b")
    node.receive(confirmed.data, NOW)
    assert any(type(e).__name__ == "NodeConfirmed" for e in iter(node.next_event, None))


def test_a_compact_bootstrap_ends_with_a_compact_flight_11_the_node_takes() -> None:
    parties = Parties()
    controller, server = parties.controller, parties.server
    node = Node(
        NodeState(parties.nid, CONTROLLER_ID, parties.ik, version=COMPACT), secrets.token_bytes
    )
    node.start(NOW)
    controller.receive_from_node(node.data_to_send()[0], NOW, session="s")
    (request,) = controller.data_to_send()
    assert isinstance(request, ToServer)
    controller.receive_from_server(request.tid, server.handle(request.data, NOW), NOW)
    (challenge,) = controller.data_to_send()
    assert isinstance(challenge, ToNode)
    node.receive(challenge.data, NOW)
    controller.receive_from_node(node.data_to_send()[0], NOW, session="s")
    (confirm,) = controller.data_to_send()
    assert isinstance(confirm, ToServer)
    controller.receive_from_server(confirm.tid, server.handle(confirm.data, NOW), NOW)
    confirmed, end = controller.data_to_send()
    assert isinstance(confirmed, ToNode) and end == EndSession("s")
    assert confirmed.data[:1] == CompactFlight11.header()
    assert travels_raw(confirmed.data)  # on the session as it is, past the medium
    node.receive(confirmed.data, NOW)
    assert any(type(e).__name__ == "NodeConfirmed" for e in iter(node.next_event, None))


def test_flight_12_goes_to_the_nodes_session() -> None:
    parties = Parties()
    controller = parties.controller
    parties.node.start(NOW)
    controller.receive_from_node(parties.node.data_to_send()[0], NOW, session="a")
    (request,) = controller.data_to_send()
    assert isinstance(request, ToServer)
    controller.server_unreachable(request.tid)
    assert controller.data_to_send() == [
        ToNode(parties.nid, Flight12(parties.nid, RefusalReason.SERVER_UNREACHABLE).encode(), "a")
    ]
    controller.receive_from_server(request.tid, Reply(Status.FORBIDDEN, reason="node revoked"), NOW)
    assert controller.data_to_send() == [
        ToNode(parties.nid, Flight12(parties.nid, RefusalReason.REVOKED).encode(), "a")
    ]


def test_revocation_feed_pages_and_refuses_a_replayed_answer() -> None:
    sk_cs = secrets.token_bytes(16)
    feed = RevocationFeed(CONTROLLER_ID, sk_cs, 0, secrets.token_bytes)
    entries = tuple((n, node_id(n)) for n in range(1, MAX_ENTRIES + 1))
    query = Flight9.open(feed.query(), sk_cs)
    answer = Flight10(query.challenge, MAX_ENTRIES, entries).seal(sk_cs, CONTROLLER_ID)
    page = feed.receive(Reply(Status.OK, answer))
    assert page == Page(tuple(n for _, n in entries), MAX_ENTRIES, more=True)
    second = Flight9.open(feed.query(), sk_cs)
    assert second.after == MAX_ENTRIES
    assert isinstance(feed.receive(Reply(Status.OK, answer)), FeedRefused)  # old challenge
    assert feed.cursor == MAX_ENTRIES
    feed.query()
    refused = feed.receive(Reply(Status.UNAUTHORIZED, reason="unknown controller"))
    assert isinstance(refused, FeedRefused) and "unknown controller" in refused.reason


def coap_post(payload: bytes, mtype: object, **options: object) -> bytes:
    message = aiocoap.Message(code=aiocoap.POST, payload=payload, uri_path=("bs",), **options)
    message.mid, message.token, message.mtype = 4242, b"\x01\x02\x03", mtype
    return bytes(message.encode())


def test_prefilter_answers_a_forged_flight2_as_aiocoap_would_and_passes_the_rest() -> None:
    sk_cs, ik = secrets.token_bytes(16), secrets.token_bytes(16)
    genuine = flight2(sk_cs, ik, 1, 7)
    forged = flight2(secrets.token_bytes(16), ik, 1, 7)  # the real ID_c, another key
    controllers = {CONTROLLER_ID: sk_cs}
    screen = Server(InMemoryRepository(), controllers).screen
    for mtype, answer_type in ((aiocoap.CON, aiocoap.ACK), (aiocoap.NON, aiocoap.NON)):
        post = parse_post(coap_post(forged, mtype))
        assert post is not None and post.payload == forged
        reply = screen(post.payload, controllers)
        assert reply is not None and reply.status is Status.UNAUTHORIZED
        answer = aiocoap.Message.decode(response(post, reply))
        assert answer.code == aiocoap.UNAUTHORIZED and answer.mtype == answer_type
        assert answer.token == b"\x01\x02\x03"
        assert answer.payload == b"flight 2 failed authentication"
        if mtype == aiocoap.CON:
            assert answer.mid == 4242  # the piggybacked ACK
    assert screen(genuine, controllers) is None  # authentic: on to aiocoap and the core
    assert parse_post(coap_post(forged, aiocoap.CON, content_format=50)) is None  # 4.15
    assert parse_post(coap_post(forged, aiocoap.CON, uri_host="x")) is None  # critical
    assert parse_post(coap_post(bytes(300), aiocoap.CON)) is None  # 4.13 is aiocoap's
    assert parse_post(coap_post(forged, aiocoap.CON)[: -len(forged) - 1]) is None


def count_opens(monkeypatch: pytest.MonkeyPatch, name: str) -> list[bytes]:
    """The flights the core's ``name`` (open_request, open_confirm) authenticates
    from now on."""
    opened: list[bytes] = []
    real_open = getattr(server_module, name)

    def counting_open(data: bytes, controllers: Mapping[bytes, bytes]) -> object:
        opened.append(data)
        return real_open(data, controllers)

    monkeypatch.setattr(server_module, name, counting_open)
    return opened


def test_a_flight2_screened_on_the_loop_is_not_authenticated_again_unless_its_key_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = count_opens(monkeypatch, "open_request")
    _, repo, sk_cs, ik = sqlite_server(tmp_path, 3)
    controllers = dict(repo.controller_keys())
    core = Server(repo, controllers)
    now = time.time()
    genuine, forged = flight2(sk_cs, ik, 0, 1), flight2(secrets.token_bytes(16), ik, 1, 2)
    refused = core.screen(forged, controllers)
    assert refused is not None and refused.status is Status.UNAUTHORIZED
    assert core.screen(genuine, controllers) is None
    assert core.handle(forged, now) == refused  # the very reply, and nothing remembered
    opened.clear()
    assert core.handle(genuine, now).status is Status.OK
    assert opened == []  # authenticated once, by the screen
    assert core.handle(genuine, now).status is Status.OK  # a retransmission, opened again
    assert opened == [genuine]

    rekeyed = flight2(sk_cs, ik, 2, 3)
    assert core.screen(rekeyed, controllers) is None
    controllers[CONTROLLER_ID] = secrets.token_bytes(16)  # rotated between screen and handle
    late = core.handle(rekeyed, now)
    assert late.status is Status.UNAUTHORIZED and "authentication" in late.reason


def test_a_flight6_screened_on_the_loop_is_not_authenticated_again_unless_its_key_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, repo, sk_cs, ik = sqlite_server(tmp_path, 2)
    genuine, rekeyed = confirmations(server, sk_cs, ik, 1, 2)
    opened = count_opens(monkeypatch, "open_confirm")
    controllers = dict(repo.controller_keys())
    core = Server(repo, controllers)
    assert core.screen(genuine, controllers) is None
    opened.clear()
    activated = core.handle(genuine, time.time())
    assert activated.status is Status.OK and activated.event is not None
    assert opened == []  # authenticated once, by the screen
    assert core.handle(genuine, time.time()).payload == activated.payload  # a copy: opened
    assert opened == [genuine]

    assert core.screen(rekeyed, controllers) is None
    controllers[CONTROLLER_ID] = secrets.token_bytes(16)  # rotated between screen and handle
    late = core.handle(rekeyed, time.time())
    assert late.status is Status.UNAUTHORIZED and "authentication" in late.reason


def test_the_screen_refuses_whatever_handle_refuses_before_the_store(tmp_path: Path) -> None:
    server, repo, sk_cs, ik = sqlite_server(tmp_path, 2)
    controllers = dict(repo.controller_keys())
    (genuine6,) = confirmations(server, sk_cs, ik, 1, 1)
    forged6 = genuine6[:-1] + bytes([genuine6[-1] ^ 1])  # one bit of the tag
    stranger = dict(controllers)
    stranger.pop(CONTROLLER_ID)
    core = Server(repo, controllers)
    for data, known in (
        (forged6, controllers),
        (genuine6, stranger),  # unknown controller
        (b"\x00garbage", controllers),  # not a flight of this protocol
        (Flight4.header() + bytes(40), controllers),  # not a request
    ):
        refused = core.screen(data, known)
        assert refused is not None and refused.status is not Status.OK
        assert Server(repo, known).handle(data, time.time()) == refused
    assert core.screen(genuine6, controllers) is None  # authentic: on to the store
    assert core.handle(genuine6, time.time()).status is Status.OK
