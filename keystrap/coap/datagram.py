"""The bootstrap exchange as raw CoAP datagrams (RFC 7252 §3, §4.5, §5.2.1), sans I/O.

The SBS answers one kind of request at a rate where aiocoap's per-message work
(decoding into objects, option copies, address objects, exchange bookkeeping,
a task per request) costs more than everything keystrap does. So the bootstrap
resource is served here on the datagram itself: :func:`parse_post` recognises
a plain ``POST /`` (or ``/bs``) with a binary payload; anything else -- another
method or path, any critical option, another Content-Format, an oversized
payload, a malformed header -- is left to aiocoap, so every answer of its own
(4.02, 4.13, 4.15, ...) stays its own. :meth:`Post.answer` builds the response
as aiocoap's resource would: the piggybacked ACK with the request's Message ID
and token for a confirmable request, a non-confirmable response with a fresh
Message ID for a non-confirmable one. :class:`Exchanges` is the deduplication
RFC 7252 §4.5 asks of a server: a repeated request is processed once, and its
copies get the same response.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Hashable
from typing import NamedTuple

from keystrap.coap.codes import MAX_PAYLOAD, OCTET_STREAM

CON, NON, ACK = 0, 1, 2
_POST = 0x02
_URI_PATH, _CONTENT_FORMAT = 11, 12
_PAYLOAD_MARKER = 0xFF
_PATHS: tuple[list[bytes], ...] = ([], [b"bs"])
EXCHANGE_LIFETIME = 247.0
"""Seconds a Message ID may not be reused by its sender (RFC 7252 §4.8.2)."""


class Post(NamedTuple):
    """A bootstrap request: what its response needs, and its payload (a tuple:
    one is made per datagram)."""

    kind: int
    mid: bytes
    token: bytes
    payload: bytes

    def answer(self, code: int, payload: bytes) -> bytes:
        """The response datagram; ``code`` as CoAP's one byte (class << 5 | detail)."""
        kind = ACK if self.kind == CON else NON
        mid = self.mid if self.kind == CON else secrets.token_bytes(2)
        head = bytes((0x40 | kind << 4 | len(self.token), code))
        return head + mid + self.token + (b"\xff" + payload if payload else b"")


def parse_post(data: bytes) -> Post | None:
    """The bootstrap request in ``data``, or None for anything aiocoap should handle."""
    if len(data) < 5 or data[0] >> 6 != 1 or data[1] != _POST:
        return None
    kind, tkl = (data[0] >> 4) & 3, data[0] & 0x0F
    if kind > NON or tkl > 8:
        return None
    at = 4 + tkl
    payload: bytes | None
    if at < len(data) and data[at] == _PAYLOAD_MARKER:  # POST / with no option at all
        payload = data[at + 1 :]
    else:
        payload = _payload_after_options(data, at)
    if not payload or len(payload) > MAX_PAYLOAD:
        return None
    return Post(kind, data[2:4], data[4:at], payload)


def _payload_after_options(data: bytes, at: int) -> bytes | None:
    """The payload if the options name the bootstrap path and nothing critical."""
    number, end, path = 0, len(data), []
    while at < end and data[at] != _PAYLOAD_MARKER:
        head, at = data[at], at + 1
        delta, at = _extended(data, at, head >> 4)
        length, at = _extended(data, at, head & 0x0F)
        if delta < 0 or length < 0:
            return None
        number += delta
        if at + length > end:
            return None
        value = data[at : at + length]
        at += length
        if number == _URI_PATH:
            path.append(value)
        elif number == _CONTENT_FORMAT:
            if int.from_bytes(value, "big") != OCTET_STREAM:
                return None
        elif number & 1:
            return None  # a critical option: aiocoap's to understand or refuse
    if at >= end or path not in _PATHS:
        return None
    return data[at + 1 :]


def _extended(data: bytes, at: int, nibble: int) -> tuple[int, int]:
    """An option's delta or length (RFC 7252 §3.1): the nibble itself, or the one
    or two bytes after the option's first; -1 if malformed (15 is reserved)."""
    if nibble < 13:
        return nibble, at
    if nibble == 13 and at < len(data):
        return data[at] + 13, at + 1
    if nibble == 14 and at + 2 <= len(data):
        return int.from_bytes(data[at : at + 2], "big") + 269, at + 2
    return -1, at


_PENDING = b""


class Exchanges:
    """Requests seen in the last :data:`EXCHANGE_LIFETIME`, by sender and Message ID.

    A request is new, a copy of one still being answered (to drop: its answer
    is on the way), or a copy of one answered (to answer again with the same
    bytes, without processing it again). An entry is the whole datagram, so a
    Message ID reused for another request is never mistaken for a copy. At most
    ``capacity`` exchanges are held, oldest dropped first; a copy arriving after
    its entry was dropped is processed again, which the protocol core answers
    identically (a repeated flight 2 or 6 gets its stored flight 3 or 7).
    """

    def __init__(self, capacity: int = 65_536) -> None:
        self._capacity = capacity
        # Ordered by arrival, and an OrderedDict rather than a dict: dropping a
        # dict's oldest entry again and again makes finding the next oldest walk
        # every slot freed before it (35 µs a request at capacity, not 2).
        self._held: OrderedDict[tuple[Hashable, bytes], tuple[float, bytes, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def begin(self, sender: Hashable, data: bytes, now: float) -> bytes | None:
        """None for a new request (now held as pending); else the answer to send
        again, or ``b""`` while the first copy is still being answered."""
        key = (sender, data[2:4])
        held = self._held.get(key)
        if held is not None and held[0] > now and held[1] == data:
            return held[2]
        self._held.pop(key, None)
        self._held[key] = (now + EXCHANGE_LIFETIME, data, _PENDING)
        self._expire(now)
        return None

    def end(self, sender: Hashable, data: bytes, answer: bytes) -> None:
        """``answer`` was sent to the request ``data`` of ``sender``."""
        key = (sender, data[2:4])
        held = self._held.get(key)
        if held is not None and held[1] == data:
            self._held[key] = (held[0], data, answer)

    def forget(self, sender: Hashable, data: bytes) -> None:
        """The request's answer holds for this moment only (5.03): a copy is
        processed anew."""
        key = (sender, data[2:4])
        held = self._held.get(key)
        if held is not None and held[1] == data:
            del self._held[key]

    def _expire(self, now: float) -> None:
        held = self._held
        while held:
            key = next(iter(held))
            if held[key][0] > now and len(held) <= self._capacity:
                return
            held.popitem(last=False)


class Allowance:
    """At most ``rate`` events a second on average and ``burst`` at once (a token
    bucket), on the caller's monotonic clock.

    Why: what the bootstrap path passes on to aiocoap (a health check, ``/stats``,
    garbage) aiocoap keeps for RFC 7252's EXCHANGE_LIFETIME, 247 s, with no limit
    on how many: a flood of ``GET /health`` from changing ports grew the server
    by about 600 bytes a request. Allowed at ``rate``, that memory is bounded."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at: float | None = None

    def take(self, now: float) -> bool:
        """Whether one more event is allowed at ``now``; if so, it is counted."""
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + max(0.0, now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
