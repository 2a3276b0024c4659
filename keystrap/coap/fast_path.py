"""The bootstrap resource served on aiocoap's socket, ahead of aiocoap.

Why: at thousands of bootstraps a second, or under a flood of forged flight 2s,
aiocoap's per-message work and its one datagram per selector wake-up cost many
times what keystrap's own work does (docs/performance.md §3). So the SBS reads
its UDP socket itself, draining every queued datagram per wake-up, and answers
the bootstrap requests (:mod:`keystrap.coap.datagram`) without building a
message object:

- a flight that fails the core's stateless checks (``screen``: format, known
  controller, the CCM tag under ``SK_cs``) is refused at once: its answer is a
  function of the datagram alone, so nothing is held for it;
- an authentic one is deduplicated (:class:`~keystrap.coap.datagram.Exchanges`),
  handed to the store's thread (``submit``) and answered when the batch that
  holds its state is committed -- the no-brick rule is the store's, unchanged;
- every other datagram (another resource, an option aiocoap must judge, a
  response, garbage) goes to aiocoap exactly as it would have arrived, at most
  :data:`AIOCOAP_RATE` a second (:class:`~keystrap.coap.datagram.Allowance`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import aiocoap
from aiocoap.util import socknumbers

from keystrap.coap.codes import MAX_REASON, TO_COAP
from keystrap.coap.datagram import Allowance, Exchanges, Post, parse_post
from keystrap.protocol import Reply, Status

log = logging.getLogger("keystrap.server")

Screen = Callable[[bytes], Reply | None]
"""The refusal a request gets before any store work, or None to go on."""
Submit = Callable[[bytes, float, Callable[[Reply], None]], None]
"""Hands a request and the wall-clock time it arrived to the store; the callback
gets the reply, on the loop, once it is durable."""
Report = Callable[[bytes, Reply, float, str], None]
"""Told of each reply sent: the request, the reply, its seconds, the sender."""

BURST = 256
"""Datagrams read per wake-up at most, so other work on the loop still gets turns."""
RECEIVE_BUFFER = 32 << 20
"""Bytes of socket queue asked for: a burst waits here instead of being dropped."""
AIOCOAP_RATE = 100.0
"""Datagrams a second passed on to aiocoap, :data:`AIOCOAP_BURST` at once: far
above what health checks and ``/stats`` scrapes send, and at most some 25,000
requests (about 15 MB) held in aiocoap's 247 s of duplicate detection."""
AIOCOAP_BURST = 200
DROPS_LOGGED_EVERY = 10.0  # seconds between lines about datagrams over the allowance
_SO_RCVBUFFORCE = 33  # Linux's socket(7) option, absent from Python's socket module
_ANCILLARY = 1024
_MAX_DATAGRAM = 4096


class AiocoapAllowance:
    """:class:`~keystrap.coap.datagram.Allowance` at :data:`AIOCOAP_RATE` for what
    one service's UDP ports hand aiocoap, and the warning, at most every
    :data:`DROPS_LOGGED_EVERY` seconds, of how many it dropped (a line per
    dropped datagram would be a flood of its own)."""

    def __init__(self, what: str, logger: logging.Logger = log) -> None:
        self._allowance = Allowance(AIOCOAP_RATE, AIOCOAP_BURST)
        self._what = what
        self._log = logger
        self._dropped = 0
        self._logged = float("-inf")

    def allows(self) -> bool:
        now = time.monotonic()
        if self._allowance.take(now):
            return True
        self._dropped += 1
        if now - self._logged >= DROPS_LOGGED_EVERY:
            self._log.warning(
                "more than %g %s a second: %d dropped so far",
                AIOCOAP_RATE,
                self._what,
                self._dropped,
            )
            self._logged = now
        return False


class BootstrapPath:
    """One UDP interface of the server: its socket read here, bootstrap requests
    answered here, the rest passed to aiocoap's handler for the interface."""

    def __init__(self, interface: Any, screen: Screen, submit: Submit, report: Report) -> None:
        self._sock: socket.socket = interface.transport.get_extra_info("socket")
        self._aiocoap_received = interface.datagram_msg_received
        self._aiocoap_errqueue = interface.datagram_errqueue_received
        self._aiocoap_error = interface.error_received
        self._screen = screen
        self._submit = submit
        self._report = report
        self.exchanges = Exchanges()
        self._to_aiocoap = AiocoapAllowance("datagrams for aiocoap (not bootstrap requests)")
        _enlarge_receive_buffer(self._sock)

    def start(self, loop: Any) -> None:
        """Take over reading from aiocoap's transport (which still sends for aiocoap
        and removes the reader when it closes)."""
        fd = self._sock.fileno()
        loop.remove_reader(fd)
        loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        sock = self._sock
        if socknumbers.HAS_RECVERR:
            self._read_errors()
        for _ in range(BURST):
            try:
                data, ancdata, _flags, address = sock.recvmsg(_MAX_DATAGRAM, _ANCILLARY)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._aiocoap_error(exc)
                return
            try:
                self.received(data, ancdata, address)
            except Exception:  # one datagram's bug must not stop the server reading
                log.exception("unexpected error on a datagram from %s", address)

    def _read_errors(self) -> None:
        """ICMP errors queued on the socket: aiocoap's to interpret, and read here so
        the socket does not stay readable for them."""
        while True:
            try:
                data, ancdata, flags, address = self._sock.recvmsg(
                    _MAX_DATAGRAM, _ANCILLARY, socknumbers.MSG_ERRQUEUE
                )
            except OSError:  # BlockingIOError once the queue is empty
                return
            self._aiocoap_errqueue(data, ancdata, flags, address)

    def received(self, data: bytes, ancdata: list[Any], address: Any) -> None:
        if len(data) < 4 or data[0] >> 6 != 1:
            return  # not CoAP version 1: silently ignored (RFC 7252 §3), even in floods
        post = parse_post(data)
        if post is None:
            self._to_aiocoap_if_allowed(data, ancdata, address)
            return
        begun = time.perf_counter()
        pktinfo = [a for a in ancdata if a[1] == socket.IPV6_PKTINFO]
        refusal = self._screen(post.payload)
        if refusal is not None:
            self._send(response(post, refusal), pktinfo, address)
            self._report(post.payload, refusal, time.perf_counter() - begun, _remote(address))
            return
        copy = self.exchanges.begin(address, data, time.monotonic())
        if copy is not None:
            if copy:  # answered already: the same bytes again (RFC 7252 §4.5)
                self._send(copy, pktinfo, address)
            return
        # A partial, not a closure: it stays alive while the request waits for
        # the store, and the collector walks each of its objects (a closure
        # over six names is eight, this is two).
        answered = partial(self._answered, post, pktinfo, address, data, begun)
        self._submit(post.payload, time.time(), answered)

    def _to_aiocoap_if_allowed(self, data: bytes, ancdata: list[Any], address: Any) -> None:
        if not self._to_aiocoap.allows():
            return
        try:
            self._aiocoap_received(data, ancdata, 0, address)
        except Exception as exc:  # aiocoap lets some garbage escape its parser
            log.debug("ignored a datagram from %s aiocoap could not parse: %r", address, exc)

    def _answered(
        self, post: Post, pktinfo: list[Any], address: Any, data: bytes, begun: float, reply: Reply
    ) -> None:
        answer = response(post, reply)
        if reply.status.transient:  # a copy may find the store back: process it anew
            self.exchanges.forget(address, data)
        else:
            self.exchanges.end(address, data, answer)
        self._send(answer, pktinfo, address)
        self._report(post.payload, reply, time.perf_counter() - begun, _remote(address))

    def _send(self, answer: bytes, pktinfo: list[Any], address: Any) -> None:
        try:
            self._sock.sendmsg((answer,), pktinfo, 0, address)
        except OSError as exc:  # a full send queue or a vanished route: CoAP retransmits
            log.debug("answer to %s not sent: %s", address, exc)


def response(post: Post, reply: Reply) -> bytes:
    """Flight 3 or 7 in a 2.04, or the refusal's reason as text (never key material)."""
    body = reply.payload if reply.status is Status.OK else reply.reason.encode()[:MAX_REASON]
    return post.answer(int(TO_COAP[reply.status]), body)


def _remote(address: Any) -> str:
    return f"[{address[0]}]:{address[1]}"


def _enlarge_receive_buffer(sock: socket.socket) -> None:
    """As root, past ``net.core.rmem_max``; otherwise as far as it allows."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, RECEIVE_BUFFER)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2  # Linux reports twice
    if granted < RECEIVE_BUFFER:
        log.warning(
            "UDP receive queue is %d KiB, not %d: a burst beyond it is dropped "
            "(raise net.core.rmem_max, see docs/deployment.md)",
            granted >> 10,
            RECEIVE_BUFFER >> 10,
        )


def install(
    context: aiocoap.Context, screen: Screen, submit: Submit, report: Report
) -> list[BootstrapPath]:
    """Serve the bootstrap resource ahead of aiocoap on each UDP interface of a
    server context."""
    paths = []
    for tokens in context.request_interfaces:
        interface: Any = getattr(
            getattr(tokens, "token_interface", None), "message_interface", None
        )
        if interface is None or not hasattr(interface, "datagram_msg_received"):
            continue
        path = BootstrapPath(interface, screen, submit, report)
        path.start(asyncio.get_running_loop())
        paths.append(path)
    return paths
