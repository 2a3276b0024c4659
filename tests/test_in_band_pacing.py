"""The controller's CoAP requests to the server keep the in-band pace under loss.

A lost flight 2 or 6 (or its answer) must be tried again within
:data:`~keystrap.protocol.timers.IN_BAND`'s 3 s, every time: with CoAP's
exponential back-off the third try came 6-9 s after the first and the fifth
30-45 s after it, and one node in a 20 %-loss run of five waited out its whole
minute for flight 4 (tests/test_faults_processes.py).
"""

import asyncio
import time
from itertools import pairwise
from typing import cast

from keystrap.coap.client import SbsClient
from keystrap.coap.datagram import parse_post
from keystrap.protocol import Status
from keystrap.protocol.timers import IN_BAND

from .services_helpers import run

CHANGED = 0x44  # 2.04
SLACK = 0.5  # seconds of scheduling noise on a shared machine


class LossyServer(asyncio.DatagramProtocol):
    """Loses the first ``lost`` bootstrap requests, answers the next as the SBS would."""

    def __init__(self, lost: int) -> None:
        self.lost = lost
        self.arrivals: list[float] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        post = parse_post(data)
        if post is None:
            return
        self.arrivals.append(time.monotonic())
        if len(self.arrivals) > self.lost:
            assert self.transport is not None
            self.transport.sendto(post.answer(CHANGED, b"grant:" + post.payload), addr)


async def post_through_loss(lost: int) -> tuple[bytes, list[float]]:
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(
        lambda: LossyServer(lost), local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    client = await SbsClient.create(f"coap://127.0.0.1:{port}", endpoints=1)
    try:
        reply = await client.post(b"flight 2")
    finally:
        await client.shutdown()
        transport.close()
    assert reply.status is Status.OK
    return reply.payload, server.arrivals


def test_a_lost_request_is_tried_again_at_the_in_band_pace() -> None:
    payload, arrivals = run(post_through_loss(lost=2))
    assert payload == b"grant:flight 2"
    assert len(arrivals) == 3
    gaps = [b - a for a, b in pairwise(arrivals)]
    assert all(IN_BAND.initial - SLACK < gap < IN_BAND.maximum + SLACK for gap in gaps), gaps
