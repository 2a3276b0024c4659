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


def server_uris(servers: str) -> list[str]:
    """``coap://a:5683,coap://b:5683`` (the configuration's form) as a list."""
    return [uri.strip() for uri in servers.split(",") if uri.strip()]


ROUNDS = 2
"""Times each server is tried before it counts as unreachable. A dead server's ICMP
"port unreachable" can surface on the shared socket while the next datagram goes to
another server, and aiocoap then fails that other server's request: a second round
keeps one lost ICMP race from failing a request a live server would answer."""


class SbsClient:
    """Posts to the servers through a small pool of CoAP endpoints, failing over
    from one server to the next.

    CoAP allows one outstanding confirmable exchange per endpoint pair (NSTART=1,
    which aiocoap enforces), so on a lossy link one lost datagram would hold up
    every other node's bootstrap for a whole retransmission back-off. A controller
    serving many nodes therefore speaks from a few endpoints, like a few clients.

    Several servers share one database (docs/deployment.md), so any of them can
    carry on any bootstrap: a server that does not answer within CoAP's own
    retransmission budget is skipped, the same request goes to the next one (an
    identical flight 2 gets the identical flight 3 from whichever server), and
    later requests stay with the server that answered.
    """

    def __init__(self, contexts: list[aiocoap.Context], servers: str) -> None:
        self._contexts = contexts
        self._uris = [uri.rstrip("/") + "/" for uri in server_uris(servers)]  # the root (codes.py)
        self._current = 0

    @classmethod
    async def create(cls, servers: str, endpoints: int = 4) -> SbsClient:
        """Fails at once if a server's host does not resolve (aiocoap would only
        say so at the first request, each time, while the service looked alive)."""
        for uri in server_uris(servers):
            host = urlsplit(uri).hostname or ""
            try:
                await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_DGRAM)
            except (socket.gaierror, UnicodeError) as exc:
                raise ServerUnresolvable(f"server {uri}: cannot resolve {host!r}: {exc}") from None
        contexts = [await aiocoap.Context.create_client_context() for _ in range(endpoints)]
        return cls(contexts, servers)

    async def shutdown(self) -> None:
        for context in self._contexts:
            await context.shutdown()

    async def post(self, data: bytes, lane: int = 0) -> Reply:
        """``lane`` picks the endpoint (the TID keeps one transaction on one).
        Raises :class:`ServerUnreachable` only when no server answered."""
        context = self._contexts[lane % len(self._contexts)]
        failures = []
        for _ in range(ROUNDS * len(self._uris)):
            current = self._current
            uri = self._uris[current]
            message = aiocoap.Message(code=aiocoap.POST, payload=data, uri=uri)
            try:
                response = await context.request(message).response
                break
            except aiocoap.error.Error as exc:
                failures.append(f"{uri}: {exc}")
                if self._current == current:  # another request may have moved on already
                    self._current = (current + 1) % len(self._uris)
        else:
            raise ServerUnreachable("; ".join(failures))
        status = FROM_COAP.get(response.code)
        if status is None:
            # An answer we did not expect (e.g. 5.00 from a crashing server): retry later.
            return Reply(Status.UNAVAILABLE, reason=f"unexpected CoAP code {response.code}")
        if status is Status.OK:
            return Reply(status, response.payload)
        return Reply(status, reason=response.payload.decode("utf-8", "replace"))
