"""The revocation feed, SBR <-> SBS over CoAP: how a controller learns that an
administrator revoked a node, so it drops the node's sessions and PSK.

Not in the paper, which stops at re-keying. Both messages are authenticated
with AES-CMAC under ``K_rev = KDF(SK_cs, "keystrap revocations", ID_c)``: a
MAC, not CCM, because the list is not secret and a MAC needs no nonce that
could repeat when the same query is answered twice. The controller's random
challenge makes every answer fresh, so an old, shorter list cannot be replayed.

=====  ===========  ===========================================================  =====
type   path         layout                                                       bytes
=====  ===========  ===========================================================  =====
9      SBR->SBS     hdr ID_c after(4) challenge(8) mac(8)                        29
10     SBS->SBR     hdr challenge(8) next(4) n(1) n*(seq(4) ID_i(8)) mac(8)      22+12n
=====  ===========  ===========================================================  =====

``after`` is the last revocation sequence number the controller has applied;
the answer carries at most :data:`MAX_ENTRIES` entries after it and ``next``,
the number to ask after next time. The MAC of 10 also covers ``ID_c``.
"""

from __future__ import annotations

from typing import Self

from keystrap.crypto import cmac, constant_time_equal, kbkdf_cmac
from keystrap.wire.errors import AuthenticationError, DecodeError, DecodeReason
from keystrap.wire.frozen import frozen
from keystrap.wire.header import FlightType, peek_type
from keystrap.wire.layout import HDR, ID_C, Flight, Layout
from keystrap.wire.sizes import KEY_SIZE

CHALLENGE_SIZE = 8
MAC_SIZE = 8
MAX_ENTRIES = 16
_CHALLENGE = ("challenge", f"{CHALLENGE_SIZE}s")
_ENTRY = Layout(("seq", "I"), ("ID_i", "8s"))
_LABEL = b"keystrap revocations"


def revocation_key(sk_cs: bytes, controller_id: bytes) -> bytes:
    fixed = _LABEL + b"\x00" + controller_id + (KEY_SIZE * 8).to_bytes(4, "big")
    return kbkdf_cmac(sk_cs, fixed, KEY_SIZE)


def _mac(key: bytes, data: bytes) -> bytes:
    return cmac(key, data)[:MAC_SIZE]


def _check_mac(key: bytes, data: bytes, mac: bytes, what: str) -> None:
    if not constant_time_equal(_mac(key, data), mac):
        raise AuthenticationError(f"{what} failed authentication")


@frozen
class Flight9(Flight):
    """SBR -> SBS: "what was revoked after ``after``?", with a fresh challenge."""

    TYPE = FlightType.F9_REVOCATION_QUERY
    CLEAR = Layout(HDR, ID_C, ("after", "I"), _CHALLENGE)
    SIZE = CLEAR.size + MAC_SIZE

    controller_id: bytes
    after: int
    challenge: bytes

    def seal(self, sk_cs: bytes) -> bytes:
        body = self.CLEAR.pack(self.header()[0], self.controller_id, self.after, self.challenge)
        return body + _mac(revocation_key(sk_cs, self.controller_id), body)

    @classmethod
    def peek_controller(cls, data: bytes) -> bytes:
        """``ID_c``, to find the key that :meth:`open` needs; checks the frame."""
        controller_id, _, _ = cls.clear_fields(data)
        return bytes(controller_id)

    @classmethod
    def open(cls, data: bytes, sk_cs: bytes) -> Self:
        controller_id, after, challenge = cls.clear_fields(data)
        body, mac = data[: cls.CLEAR.size], data[cls.CLEAR.size :]
        _check_mac(revocation_key(sk_cs, controller_id), body, mac, "revocation query")
        return cls(controller_id, after, challenge)


@frozen
class Flight10(Flight):
    """SBS -> SBR: at most :data:`MAX_ENTRIES` revocations, MAC'd with ``ID_c``."""

    TYPE = FlightType.F10_REVOCATION_LIST
    CLEAR = Layout(HDR, _CHALLENGE, ("next", "I"), ("n", "B"))
    SIZE = CLEAR.size + MAC_SIZE  # with no entries; each adds _ENTRY.size

    challenge: bytes
    next_after: int
    entries: tuple[tuple[int, bytes], ...]  # (sequence number, ID_i)

    def seal(self, sk_cs: bytes, controller_id: bytes) -> bytes:
        if len(self.entries) > MAX_ENTRIES:
            raise ValueError(f"at most {MAX_ENTRIES} entries per answer")
        head = (self.header()[0], self.challenge, self.next_after, len(self.entries))
        body = self.CLEAR.pack(*head) + b"".join(_ENTRY.pack(*entry) for entry in self.entries)
        key = revocation_key(sk_cs, controller_id)
        return body + _mac(key, controller_id + body)

    @classmethod
    def open(cls, data: bytes, sk_cs: bytes, *, controller_id: bytes, challenge: bytes) -> Self:
        """Only the answer to the query that carried ``challenge`` opens."""
        kind = peek_type(data)
        if kind is not cls.TYPE:
            raise DecodeError(DecodeReason.WRONG_TYPE, f"flight {int(kind)}, expected 10")
        if len(data) < cls.SIZE:
            raise DecodeError(DecodeReason.TRUNCATED, f"revocation list of {len(data)} bytes")
        _, sent_challenge, next_after, count = cls.CLEAR.unpack(data)
        size = cls.SIZE + count * _ENTRY.size
        if count > MAX_ENTRIES or len(data) != size:
            raise DecodeError(
                DecodeReason.BAD_VALUE, f"{len(data)} bytes for {count} entries (needs {size})"
            )
        body, mac = data[:-MAC_SIZE], data[-MAC_SIZE:]
        _check_mac(
            revocation_key(sk_cs, controller_id), controller_id + body, mac, "revocation list"
        )
        if not constant_time_equal(sent_challenge, challenge):
            raise DecodeError(DecodeReason.BAD_VALUE, "revocation list answers another query")
        start = cls.CLEAR.size
        entries = tuple(_ENTRY.unpack(body, start + i * _ENTRY.size) for i in range(count))
        return cls(challenge, next_after, entries)
