"""The SBR's CoAP client to the SBS: confirmable POSTs, so CoAP retransmits on loss."""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import urlsplit

import aiocoap

from keystrap.coap.codes import FROM_COAP
from keystrap.protocol import Reply, Status


class ServerUnreachable(Exception):
    """No CoAP answer at all (after CoAP's own retransmissions)."""


class ServerUnresolvable(Exception):
    """The server's host name does not resolve: nothing could ever reach it."""


class SbsClient:
    """Posts to the server through a small pool of CoAP endpoints.

    CoAP allows one outstanding confirmable exchange per endpoint pair (NSTART=1,
    which aiocoap enforces), so on a lossy link one lost datagram would hold up
    every other node's bootstrap for a whole retransmission back-off. A controller
    serving many nodes therefore speaks from a few endpoints, like a few clients.
    """

    def __init__(self, contexts: list[aiocoap.Context], base_uri: str) -> None:
        self._contexts = contexts
        self._uri = base_uri.rstrip("/") + "/"  # the root: no Uri-Path (coap/codes.py)

    @classmethod
    async def create(cls, base_uri: str, endpoints: int = 4) -> SbsClient:
        """Fails at once if the server's host does not resolve (aiocoap would only
        say so at the first request, each time, while the service looked alive)."""
        host = urlsplit(base_uri).hostname or ""
        try:
            await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_DGRAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise ServerUnresolvable(f"server {base_uri}: cannot resolve {host!r}: {exc}") from None
        contexts = [await aiocoap.Context.create_client_context() for _ in range(endpoints)]
        return cls(contexts, base_uri)

    async def shutdown(self) -> None:
        for context in self._contexts:
            await context.shutdown()

    async def post(self, data: bytes, lane: int = 0) -> Reply:
        """``lane`` picks the endpoint (the TID keeps one transaction on one)."""
        message = aiocoap.Message(code=aiocoap.POST, payload=data, uri=self._uri)
        try:
            context = self._contexts[lane % len(self._contexts)]
            response = await context.request(message).response
        except aiocoap.error.Error as exc:
            raise ServerUnreachable(str(exc)) from exc
        status = FROM_COAP.get(response.code)
        if status is None:
            # An answer we did not expect (e.g. 5.00 from a crashing server): retry later.
            return Reply(Status.UNAVAILABLE, reason=f"unexpected CoAP code {response.code}")
        if status is Status.OK:
            return Reply(status, response.payload)
        return Reply(status, reason=response.payload.decode("utf-8", "replace"))
