"""Read and rewrite the CoAP payload of a captured datagram, as an on-path attacker would."""

from __future__ import annotations

from dataclasses import dataclass

import aiocoap

from keystrap.wire import DecodeError, FlightType, peek_type


@dataclass(frozen=True)
class Captured:
    direction: str
    token: bytes
    code: str  # "0.02" for POST, "2.04", "4.01", ...
    payload: bytes
    kind: FlightType | None  # the flight it carries, if any


def view(direction: str, datagram: bytes) -> Captured | None:
    try:
        message = aiocoap.Message.decode(datagram)
    except aiocoap.error.Error:
        return None
    try:
        kind: FlightType | None = peek_type(message.payload) if message.payload else None
    except DecodeError:
        kind = None
    return Captured(direction, message.token, message.code.dotted, message.payload, kind)


def with_payload(datagram: bytes, payload: bytes) -> bytes:
    """The same CoAP message (type, ID, token, code, options) with another payload."""
    original = aiocoap.Message.decode(datagram)
    forged = aiocoap.Message(code=original.code, payload=payload)
    forged.mid, forged.token, forged.mtype = original.mid, original.token, original.mtype
    forged.opt = original.opt
    return bytes(forged.encode())


def flip_bit(data: bytes, position: int) -> bytes:
    damaged = bytearray(data)
    damaged[position % len(damaged)] ^= 1 << (position % 8)
    return bytes(damaged)
