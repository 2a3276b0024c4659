"""The SBR's CoAP client to the SBS: confirmable POSTs, so CoAP retransmits on loss."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import aiocoap

from keystrap.coap.codes import FROM_COAP
from keystrap.coap.fast_path import AiocoapAllowance
from keystrap.protocol import Reply, Status
from keystrap.protocol.timers import IN_BAND
from keystrap.shown import escaped

log = logging.getLogger("keystrap.controller")


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


TRIES = 8
"""Transmissions of a request to one server, :class:`Paced` apart, before it counts
as silent: at 20 % loss each way a try fails about a third of the time, so eight
silent tries (0.36**8, about 3 in 10**4) mean a server that is down, after
16-24 s rather than CoAP's 93 s."""


class Paced(aiocoap.TransportTuning):  # type: ignore[misc]  # aiocoap is untyped
    """One transmission per CoAP exchange, answered within IN_BAND's pace (2-3 s).

    Why: CoAP's own retransmissions back off exponentially (2, 4, 8, 16 s, then
    32 s of waiting), and the controller lets them carry a request it has sent
    (NSTART=1: a second copy would only queue behind the first). Under 20 % loss a
    round trip fails a third of the time, so one exchange in twenty waited 14-21 s,
    one in sixty 30-45 s (and held its lane's other requests as long), past the
    node's minute with a queue -- while the protocol paces flights 2 and 6 at
    2 s then every 3 s (:data:`~keystrap.protocol.timers.IN_BAND`). Each try is a
    new message (a new Message ID), so the server processes it again: its core
    answers a repeated flight 2 or 6 with the very same flight 3 or 7."""

    ACK_TIMEOUT = IN_BAND.initial
    ACK_RANDOM_FACTOR = IN_BAND.maximum / IN_BAND.initial
    MAX_RETRANSMIT = 0


PACED = Paced()
REASON_MAX = 200  # characters of a refusal's text kept: the server's own are short


class SbsClient:
    """Posts to the servers through a small pool of CoAP endpoints, failing over
    from one server to the next.

    CoAP allows one outstanding confirmable exchange per endpoint pair (NSTART=1,
    which aiocoap enforces), so on a lossy link one lost datagram would hold up
    every other node's bootstrap for a whole retransmission back-off. A controller
    serving many nodes therefore speaks from a few endpoints, like a few clients.

    Several servers share one database (docs/deployment.md), so any of them can
    carry on any bootstrap: a server that answers none of :data:`TRIES`
    tries is skipped, the same request goes to the next one (an
    identical flight 2 gets the identical flight 3 from whichever server), and
    later requests stay with the server that answered.
    """

    def __init__(self, contexts: list[aiocoap.Context], servers: str) -> None:
        self._contexts = contexts
        # One try at a time per endpoint, queued here rather than in aiocoap's
        # NSTART backlog: when a try there goes unanswered, aiocoap fails every
        # request queued behind it, unsent, and under loss two transactions on
        # one lane used up each other's tries without a datagram leaving.
        self._turns = [asyncio.Lock() for _ in contexts]
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
        guard = _Guard()
        for context in contexts:
            guard.install(context)
        return cls(contexts, servers)

    async def shutdown(self) -> None:
        for context in self._contexts:
            await context.shutdown()

    async def post(self, data: bytes, lane: int = 0) -> Reply:
        """``lane`` picks the endpoint (the TID keeps one transaction on one).
        Raises :class:`ServerUnreachable` only when no server answered."""
        endpoint = lane % len(self._contexts)
        failures = []
        for _ in range(ROUNDS * len(self._uris)):
            current = self._current
            uri = self._uris[current]
            try:
                response = await self._paced_request(endpoint, data, uri)
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
        return Reply(status, reason=_reason(response.payload))

    async def _paced_request(self, endpoint: int, data: bytes, uri: str) -> aiocoap.Message:
        """The answer to the first of up to :data:`TRIES` transmissions of ``data``
        that gets one; aiocoap's error at once for anything but silence (an ICMP
        error: the caller fails over)."""
        turn, context = self._turns[endpoint], self._contexts[endpoint]
        for _ in range(TRIES - 1):
            async with turn:
                with contextlib.suppress(aiocoap.error.ConRetransmitsExceeded):
                    return await context.request(_post(data, uri)).response
        async with turn:
            return await context.request(_post(data, uri)).response


class _Guard:
    """What the UDP endpoints of one client hand aiocoap.

    Why: the endpoints are UDP ports anyone can send to (on every interface).
    aiocoap's parser lets some garbage escape as an exception (a Uri-Path or
    Uri-Host that is not UTF-8: UnicodeDecodeError) into the event loop's
    callback, which logs a traceback for every such datagram -- a flood of them
    was a flood of tracebacks; such a datagram is dropped. And a request (none
    is ever due here: the controller serves nothing on these ports) aiocoap
    answers and keeps for RFC 7252's EXCHANGE_LIFETIME, 247 s, however many: a
    flood of 300,000 from changing ports grew the controller by 86 MB. Requests
    pass at the server's allowance (:data:`~keystrap.coap.fast_path.AIOCOAP_RATE`,
    all endpoints together); the server's answers, responses, always.
    The server's socket has the same guards (:mod:`keystrap.coap.fast_path`).
    """

    def __init__(self) -> None:
        self._requests = AiocoapAllowance(
            "requests on the ports towards the server (the controller serves none there)", log
        )

    def install(self, context: aiocoap.Context) -> None:
        for tokens in context.request_interfaces:
            interface: Any = getattr(
                getattr(tokens, "token_interface", None), "message_interface", None
            )
            received = getattr(interface, "datagram_msg_received", None)
            if received is not None:
                interface.datagram_msg_received = partial(self._received, received)

    def _received(
        self,
        received: Callable[[bytes, Any, int, Any], None],
        data: bytes,
        ancdata: Any,
        flags: int,
        address: Any,
    ) -> None:
        if len(data) > 1 and 0 < data[1] < 32 and not self._requests.allows():
            return  # a request (code 0.01 to 0.31) over the allowance
        try:
            received(data, ancdata, flags, address)
        except Exception as exc:
            log.debug("ignored a datagram from %s aiocoap could not parse: %r", address, exc)


def _reason(payload: bytes) -> str:
    """A refusal's text, as it may be logged and stored: what answered need not be
    our server (a plain CoAP answer can come from anyone on the path, or from
    another program on that port), and a newline or an escape sequence in its
    text faked log lines and recoloured the terminal."""
    text = escaped(payload.decode("utf-8", "replace"))
    return text if len(text) <= REASON_MAX else f"{text[:REASON_MAX]}..."


def _post(data: bytes, uri: str) -> aiocoap.Message:
    return aiocoap.Message(code=aiocoap.POST, payload=data, uri=uri, transport_tuning=PACED)
