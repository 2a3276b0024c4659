"""The controller's CoAP requests to the server keep the in-band pace under loss.

A lost flight 2 or 6 (or its answer) must be tried again within
:data:`~keystrap.protocol.timers.IN_BAND`'s 3 s, every time: with CoAP's
exponential back-off the third try came 6-9 s after the first and the fifth
30-45 s after it, and one node in a 20 %-loss run of five waited out its whole
minute for flight 4 (tests/test_faults_processes.py).
"""

import asyncio
import socket
import time
from collections.abc import Awaitable
from itertools import pairwise
from typing import cast

from keystrap.coap.client import SbsClient
from keystrap.coap.datagram import parse_post
from keystrap.protocol import Reply, Status
from keystrap.protocol.timers import IN_BAND

from .services_helpers import run

CHANGED = 0x44  # 2.04
SLACK = 0.5  # seconds of scheduling noise on a shared machine


class LossyServer(asyncio.DatagramProtocol):
    """Loses the first ``lost`` copies of the request carrying ``victim``, answers
    every other bootstrap request at once, as the SBS would."""

    def __init__(self, victim: bytes, lost: int) -> None:
        self.victim, self.lost = victim, lost
        self.arrivals: dict[bytes, list[float]] = {}
        self.senders: set[tuple[str, int]] = set()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        post = parse_post(data)
        if post is None:
            return
        self.senders.add(addr)
        seen = self.arrivals.setdefault(post.payload, [])
        seen.append(time.monotonic())
        if post.payload != self.victim or len(seen) > self.lost:
            assert self.transport is not None
            self.transport.sendto(post.answer(CHANGED, b"grant:" + post.payload), addr)


async def post_through_loss(
    victim: bytes, lost: int, payloads: list[bytes]
) -> dict[bytes, list[float]]:
    """Posts ``payloads`` at once on one endpoint (one lane); the arrivals of each."""
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(
        lambda: LossyServer(victim, lost), local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    client = await SbsClient.create(f"coap://127.0.0.1:{port}", endpoints=1)
    try:
        posts = [client.post(payload) for payload in payloads]
        replies = await asyncio.gather(posts[0], *(_later(post) for post in posts[1:]))
    finally:
        await client.shutdown()
        transport.close()
    assert [(r.status, r.payload) for r in replies] == [
        (Status.OK, b"grant:" + payload) for payload in payloads
    ]
    return server.arrivals


async def _later(post: Awaitable[Reply]) -> Reply:
    await asyncio.sleep(0.1)  # the first request is on the wire by then
    return await post


def test_a_lost_request_is_tried_again_at_the_in_band_pace() -> None:
    arrivals = run(post_through_loss(b"flight 2", 2, [b"flight 2"]))[b"flight 2"]
    assert len(arrivals) == 3
    gaps = [b - a for a, b in pairwise(arrivals)]
    assert all(IN_BAND.initial - SLACK < gap < IN_BAND.maximum + SLACK for gap in gaps), gaps


def test_a_silent_request_does_not_starve_the_next_one_on_its_lane() -> None:
    """aiocoap fails every request queued behind an unanswered one, unsent: the
    second transaction on a lane must go out after the first one's try, not after
    the first one is answered."""
    arrivals = run(post_through_loss(b"flight 2", 2, [b"flight 2", b"flight 6"]))
    waited = arrivals[b"flight 6"][0] - arrivals[b"flight 2"][0]
    assert waited < IN_BAND.maximum + SLACK, waited
    assert len(arrivals[b"flight 6"]) == 1


def test_a_datagram_aiocoap_cannot_parse_is_dropped_without_a_traceback() -> None:
    """The controller's endpoints are UDP ports anyone can reach: a request whose
    Uri-Path is not UTF-8 made aiocoap's parser raise into the event loop, which
    logged a traceback per datagram. It is dropped, and the endpoint still works."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        escaped: list[dict[str, object]] = []
        loop.set_exception_handler(lambda _loop, context: escaped.append(context))
        transport, server = await loop.create_datagram_endpoint(
            lambda: LossyServer(b"", 0), local_addr=("127.0.0.1", 0)
        )
        port = transport.get_extra_info("sockname")[1]
        client = await SbsClient.create(f"coap://127.0.0.1:{port}", endpoints=1)
        try:
            await client.post(b"flight 2")  # the server now knows the endpoint's port
            garbage = bytes((0x40, 0x01, 0, 1)) + b"\xb2\xff\xfe"  # GET, Uri-Path not UTF-8
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                for endpoint in server.senders:
                    sender.sendto(garbage, endpoint)
            await asyncio.sleep(0.3)
            assert await client.post(b"flight 6") == Reply(Status.OK, b"grant:flight 6")
        finally:
            await client.shutdown()
            transport.close()
        assert escaped == []

    run(scenario())
