"""The SBS's bootstrap resource on the raw socket (keystrap.coap.datagram, .fast_path):
RFC 7252 framing and deduplication, and that everything else still reaches aiocoap."""

from __future__ import annotations

import asyncio
import socket
from functools import partial
from pathlib import Path
from typing import Any

import aiocoap
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keystrap.coap.client import SbsClient
from keystrap.coap.codes import BOOTSTRAP_PATH, MAX_PAYLOAD
from keystrap.coap.datagram import CON, EXCHANGE_LIFETIME, NON, Allowance, Exchanges, parse_post
from keystrap.coap.fast_path import AIOCOAP_BURST, AIOCOAP_RATE, install
from keystrap.coap.server import open_server_context, serve_core
from keystrap.protocol import Reply
from keystrap.services.server import answer_batch
from keystrap.store.worker import StoreThread
from keystrap_lab.processes import free_udp_port

from .test_thin_shells import flight2, sqlite_server

SENDER = ("::ffff:127.0.0.1", 5683, 0, 0)


def datagram(
    payload: bytes, mid: int, mtype: aiocoap.numbers.types.Type = aiocoap.CON, **options: object
) -> bytes:
    message = aiocoap.Message(code=aiocoap.POST, payload=payload, **options)
    message.mid, message.token, message.mtype = mid, mid.to_bytes(2, "big"), mtype
    return bytes(message.encode())


def test_parse_post_takes_the_root_and_bs_and_leaves_the_rest_to_aiocoap() -> None:
    payload = bytes(range(40))
    root = parse_post(datagram(payload, 7))
    assert root is not None and (root.kind, root.mid, root.payload) == (CON, b"\x00\x07", payload)
    alias = parse_post(datagram(payload, 8, aiocoap.NON, uri_path=BOOTSTRAP_PATH))
    assert alias is not None and (alias.kind, alias.payload) == (NON, payload)
    # An elective option with an extended (13 + n) length is skipped over, as RFC 7252 §3.1 says.
    long_etag = parse_post(datagram(payload, 9, etag=b"x" * 8, size1=300))
    assert long_etag is not None and long_etag.payload == payload
    assert parse_post(datagram(payload, 9, uri_path=("health",))) is None
    assert parse_post(datagram(b"", 9)) is None  # no payload: aiocoap answers
    get = aiocoap.Message(code=aiocoap.GET, payload=payload)
    get.mid, get.token, get.mtype = 1, b"", aiocoap.CON
    assert parse_post(bytes(get.encode())) is None
    assert parse_post(b"\x40\x02") is None
    assert parse_post(bytes([0x44, 0x02, 0, 1]) + b"ab") is None  # token cut short


def test_exchanges_answer_a_copy_once_and_tell_a_reused_message_id_apart() -> None:
    exchanges = Exchanges(capacity=3)
    first = datagram(b"one", 1)
    assert exchanges.begin(SENDER, first, 0.0) is None  # new: process it
    assert exchanges.begin(SENDER, first, 0.1) == b""  # a copy while it is processed: drop
    exchanges.end(SENDER, first, b"answer-1")
    assert exchanges.begin(SENDER, first, 1.0) == b"answer-1"  # a copy: the same bytes
    assert exchanges.begin(("::1", 9, 0, 0), first, 1.0) is None  # another sender
    reused = datagram(b"two", 1)  # Message ID 1 again, another request
    assert exchanges.begin(SENDER, reused, 2.0) is None
    exchanges.forget(SENDER, reused)  # answered 5.03: a copy is processed anew
    assert exchanges.begin(SENDER, reused, 2.5) is None
    assert exchanges.begin(SENDER, first, EXCHANGE_LIFETIME + 3) is None  # expired
    for mid in range(2, 10):
        exchanges.begin(SENDER, datagram(b"x", mid), 3.0)
    assert len(exchanges) == 3  # bounded: the oldest went first


def test_the_sbs_answers_a_repeated_flight2_from_its_exchange_and_still_serves_aiocoap(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        core, repo, sk_cs, ik = sqlite_server(tmp_path, 2)
        store: StoreThread[tuple[bytes, float], Reply] = StoreThread(
            partial(answer_batch, core), "test-store"
        )
        site = aiocoap.resource.Site()
        port = free_udp_port()
        context = await open_server_context(site, "127.0.0.1", port)
        bootstrap = serve_core(site, lambda data, now: store.ask((data, now)))
        controllers = repo.controller_keys()

        def submit(data: bytes, now: float, answered: object) -> None:
            store.submit((data, now), lambda reply, error: answered(reply))  # type: ignore[operator]

        install(context, lambda data: core.screen(data, controllers), submit, bootstrap.report)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(5)
        try:
            request = datagram(flight2(sk_cs, ik, 1, 7), 0x1234)
            sock.sendto(request, ("127.0.0.1", port))
            sock.sendto(request, ("127.0.0.1", port))  # a retransmission, maybe mid-commit
            first = await asyncio.to_thread(sock.recv, 2048)
            sock.sendto(request, ("127.0.0.1", port))  # after the answer: from the exchange
            again = await asyncio.to_thread(sock.recv, 2048)
            assert again == first
            answer = aiocoap.Message.decode(first)
            assert answer.code == aiocoap.CHANGED and answer.mtype == aiocoap.ACK
            assert answer.mid == 0x1234 and answer.token == b"\x12\x34"
            assert store.requests == 1  # processed once
            assert bootstrap.counters == {"OK": 1}

            sock.sendto(b"\x00garbage", ("127.0.0.1", port))  # not CoAP version 1: ignored
            sock.settimeout(0.3)
            with pytest.raises(TimeoutError):
                await asyncio.to_thread(sock.recv, 2048)

            client = await aiocoap.Context.create_client_context()
            try:
                health = aiocoap.Message(code=aiocoap.GET, uri=f"coap://127.0.0.1:{port}/health")
                response = await asyncio.wait_for(client.request(health).response, 10)
                assert response.payload == b"ok"  # every other resource: aiocoap's
            finally:
                await client.shutdown()
        finally:
            sock.close()
            await context.shutdown()
            await store.close(repo.close)

    asyncio.run(scenario())


@given(st.binary(max_size=300))
def test_parse_post_never_raises_on_garbage(data: bytes) -> None:
    post = parse_post(data)
    assert post is None or (post.payload and data.endswith(post.payload))


@given(
    path=st.sampled_from([(), ("bs",), ("health",), ("bs", "x")]),
    etag=st.binary(min_size=1, max_size=8),
    size1=st.integers(min_value=0, max_value=70_000),
    payload=st.binary(min_size=1, max_size=300),
)
def test_parse_post_agrees_with_aiocoap_on_what_is_a_bootstrap_request(
    path: tuple[str, ...], etag: bytes, size1: int, payload: bytes
) -> None:
    encoded = datagram(payload, 5, uri_path=path, etag=etag, size1=size1)
    post = parse_post(encoded)
    ours = path in ((), ("bs",)) and len(payload) <= MAX_PAYLOAD
    assert (post is not None) == ours
    if post is not None:
        assert post.payload == aiocoap.Message.decode(encoded).payload == payload


def test_an_allowance_takes_its_burst_then_its_rate() -> None:
    allowance = Allowance(rate=4.0, burst=3)
    assert [allowance.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert allowance.take(100.125) is False  # half a token back
    assert allowance.take(100.25) is True
    assert [allowance.take(200.0) for _ in range(4)] == [True, True, True, False]  # burst at most


def test_what_aiocoap_is_handed_is_bounded_under_a_flood(tmp_path: Path) -> None:
    """aiocoap keeps each request it answers for 247 s, however many: a flood of
    GET /health grew the server without bound. Past the allowance, such datagrams
    are dropped; the server still answers a health check once the flood stops."""

    async def scenario() -> None:
        site = aiocoap.resource.Site()
        port = free_udp_port()
        context = await open_server_context(site, "127.0.0.1", port)
        serve_core(site, _no_bootstrap)
        install(context, _no_bootstrap, lambda *args: None, lambda *args: None)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        flood = 2_000
        try:
            began = asyncio.get_running_loop().time()
            for mid in range(flood):
                health = aiocoap.Message(code=aiocoap.GET, uri_path=("health",))
                health.mid, health.token, health.mtype = mid, mid.to_bytes(2, "big"), aiocoap.CON
                sock.sendto(bytes(health.encode()), ("127.0.0.1", port))
            answered = await asyncio.to_thread(_count_answers, sock, 1.0)
            elapsed = asyncio.get_running_loop().time() - began
            assert 0 < answered <= AIOCOAP_BURST + AIOCOAP_RATE * elapsed < flood
            await asyncio.sleep(0.1)
            client = await aiocoap.Context.create_client_context()
            try:
                health = aiocoap.Message(code=aiocoap.GET, uri=f"coap://127.0.0.1:{port}/health")
                response = await asyncio.wait_for(client.request(health).response, 10)
                assert response.payload == b"ok"
            finally:
                await client.shutdown()
        finally:
            sock.close()
            await context.shutdown()

    asyncio.run(scenario())


class _Echo(aiocoap.resource.Resource):  # type: ignore[misc]  # aiocoap is untyped
    """A server's root: each POST's payload back, and the port it came from noted."""

    def __init__(self) -> None:
        super().__init__()
        self.ports: set[int] = set()

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        self.ports.add(request.remote.sockaddr[1])
        return aiocoap.Message(code=aiocoap.CHANGED, payload=request.payload)


def test_what_the_controllers_client_hands_aiocoap_is_bounded_under_a_flood(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The controller's port towards the server is a UDP port anyone can send to,
    and aiocoap answered every request there and kept it for 247 s: a flood grew
    the controller without bound. Past the allowance, requests are dropped (said
    by the controller's logger, not the server's); the server's answers, arriving
    in the middle of the flood, all still get through."""

    async def scenario() -> None:
        echo = _Echo()
        site = aiocoap.resource.Site()
        site.add_resource([], echo)
        port = free_udp_port()
        server = await open_server_context(site, "127.0.0.1", port)
        client = await SbsClient.create(f"coap://127.0.0.1:{port}", endpoints=1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        flood = 3_000
        try:
            assert (await client.post(b"first")).payload == b"first"
            (client_port,) = echo.ports
            began = asyncio.get_running_loop().time()
            replies = asyncio.gather(*(client.post(bytes([n])) for n in range(50)))
            for mid in range(flood):
                health = aiocoap.Message(code=aiocoap.GET, uri_path=("health",))
                health.mid, health.token, health.mtype = mid, mid.to_bytes(2, "big"), aiocoap.CON
                sock.sendto(bytes(health.encode()), ("127.0.0.1", client_port))
                if mid % 50 == 0:
                    await asyncio.sleep(0.002)  # no more than the client's socket queue holds
            assert [reply.payload for reply in await replies] == [bytes([n]) for n in range(50)]
            answered = await asyncio.to_thread(_count_answers, sock, 1.0)
            elapsed = asyncio.get_running_loop().time() - began
            assert 0 < answered <= AIOCOAP_BURST + AIOCOAP_RATE * elapsed < flood
            (drops,) = [r for r in caplog.records if "dropped so far" in r.getMessage()]
            assert drops.name == "keystrap.controller" and "towards the server" in drops.message
        finally:
            sock.close()
            await client.shutdown()
            await server.shutdown()

    asyncio.run(scenario())


def _count_answers(sock: socket.socket, quiet: float) -> int:
    """Datagrams received until none came for ``quiet`` seconds."""
    sock.settimeout(quiet)
    count = 0
    try:
        while True:
            sock.recv(2048)
            count += 1
    except TimeoutError:
        return count


def _no_bootstrap(*args: object) -> Any:
    raise AssertionError("no bootstrap request is sent")
