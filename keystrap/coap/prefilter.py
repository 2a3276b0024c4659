"""A forged flight 2 refused on the raw datagram, before aiocoap builds a request.

aiocoap's per-message work (decoding into objects, option copies, remote
address objects, exchange bookkeeping) costs several hundred microseconds; the
CCM check that tells a forged flight 2 from a real one costs about ten. A
flood of forged flight 2s -- the most expensive packet an attacker without
``SK_cs`` can send -- is therefore answered here: the datagram is parsed just
far enough to see a ``POST /bs`` (RFC 7252 §3), the payload screened by the
protocol core's stateless checks (:func:`keystrap.protocol.server.screen`),
and a refusal answered at once, as aiocoap would: a piggybacked ACK with the
same Message ID and token for a confirmable request, a non-confirmable
response for a non-confirmable one, 4.01 with the reason as payload.
Everything else (and every flight 2 that authenticates) goes on to aiocoap
untouched. The answer is a function of the datagram alone, so a retransmitted
forgery gets the same answer, which is all CoAP's deduplication provides.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

import aiocoap

from keystrap.coap.codes import BOOTSTRAP_PATH, BOOTSTRAP_ROOT, MAX_PAYLOAD, OCTET_STREAM, TO_COAP
from keystrap.protocol import Reply

Screen = Callable[[bytes], Reply | None]
Refused = Callable[[bytes, Reply, float], None]

_CON, _NON, _ACK = 0, 1, 2
_POST = 0x02
_URI_PATH, _CONTENT_FORMAT = 11, 12
_REASON_MAX = 64
_PATHS = [[segment.encode() for segment in path] for path in (BOOTSTRAP_ROOT, BOOTSTRAP_PATH)]


def _options(data: bytes, at: int) -> tuple[list[tuple[int, bytes]], int] | None:
    """The options from ``at`` on and where the payload marker is (RFC 7252 §3.1)."""
    found, number, end = [], 0, len(data)
    while at < end and data[at] != 0xFF:
        nibbles = [data[at] >> 4, data[at] & 0x0F]
        at += 1
        for i, nibble in enumerate(nibbles):
            if nibble == 13 and at < end:
                nibbles[i], at = data[at] + 13, at + 1
            elif nibble == 14 and at + 2 <= end:
                nibbles[i], at = int.from_bytes(data[at : at + 2], "big") + 269, at + 2
            elif nibble >= 13:
                return None
        number += nibbles[0]
        if at + nibbles[1] > end:
            return None
        found.append((number, data[at : at + nibbles[1]]))
        at += nibbles[1]
    return found, at


def parse_post(data: bytes) -> tuple[int, bytes, bytes, bytes] | None:
    """``(type, Message ID, token, payload)`` of a plain ``POST /`` (or ``/bs``) with a
    binary payload, or None for any other message, which aiocoap then handles in
    full (so every refusal of its own -- 4.02, 4.13, 4.15 -- stays its own)."""
    if len(data) < 4 or data[0] >> 6 != 1 or data[1] != _POST:
        return None
    kind, tkl = (data[0] >> 4) & 3, data[0] & 0x0F
    if kind not in (_CON, _NON) or tkl > 8:
        return None
    parsed = _options(data, 4 + tkl)
    if parsed is None:
        return None
    options, at = parsed
    path = [value for number, value in options if number == _URI_PATH]
    for number, value in options:
        if number == _CONTENT_FORMAT and int.from_bytes(value, "big") != OCTET_STREAM:
            return None
        if number & 1 and number != _URI_PATH:
            return None  # a critical option: aiocoap's to understand or refuse
    payload = data[at + 1 :]
    if path not in _PATHS or not payload or len(payload) > MAX_PAYLOAD:
        return None
    return kind, data[2:4], data[4 : 4 + tkl], payload


def refusal(kind: int, mid: bytes, token: bytes, reply: Reply) -> bytes:
    """The CoAP response to a refused request, as aiocoap's resource would send it."""
    answer_kind = _ACK if kind == _CON else _NON
    answer_mid = mid if kind == _CON else secrets.randbits(16).to_bytes(2, "big")
    head = bytes([0x40 | answer_kind << 4 | len(token), int(TO_COAP[reply.status])])
    return head + answer_mid + token + b"\xff" + reply.reason.encode()[:_REASON_MAX]


def install(context: aiocoap.Context, screen: Screen, refused: Refused) -> None:
    """Put the filter in front of each UDP interface of a server context."""
    for tokens in context.request_interfaces:
        interface: Any = getattr(
            getattr(tokens, "token_interface", None), "message_interface", None
        )
        if interface is None or not hasattr(interface, "datagram_msg_received"):
            continue
        interface.datagram_msg_received = _filtered(interface, screen, refused)


def _filtered(interface: Any, screen: Screen, refused: Refused) -> Callable[..., None]:
    passed_on = interface.datagram_msg_received

    def received(data: bytes, ancdata: Any, flags: int, address: Any) -> None:
        begun = time.perf_counter()
        post = parse_post(data)
        reply = None if post is None else screen(post[3])
        if post is None or reply is None:
            passed_on(data, ancdata, flags, address)
            return
        kind, mid, token, payload = post
        pktinfo = [
            a for a in ancdata if a[0] == socket.IPPROTO_IPV6 and a[1] == socket.IPV6_PKTINFO
        ]
        interface.transport.sendmsg(refusal(kind, mid, token, reply), pktinfo, 0, address)
        refused(payload, reply, time.perf_counter() - begun)

    return received
