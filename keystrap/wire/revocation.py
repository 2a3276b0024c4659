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

import struct
from dataclasses import dataclass

from keystrap.crypto import cmac, constant_time_equal, kbkdf_cmac
from keystrap.wire.errors import AuthenticationError, DecodeError, DecodeReason
from keystrap.wire.header import FlightType, check_frame, header_byte, peek_type
from keystrap.wire.sizes import ID_SIZE, KEY_SIZE

CHALLENGE_SIZE = 8
MAC_SIZE = 8
MAX_ENTRIES = 16
_ENTRY = struct.Struct(">I8s")
QUERY_SIZE = 1 + ID_SIZE + 4 + CHALLENGE_SIZE + MAC_SIZE
LIST_MIN_SIZE = 1 + CHALLENGE_SIZE + 4 + 1 + MAC_SIZE
_LABEL = b"keystrap revocations"


def revocation_key(sk_cs: bytes, controller_id: bytes) -> bytes:
    fixed = _LABEL + b"\x00" + controller_id + (KEY_SIZE * 8).to_bytes(4, "big")
    return kbkdf_cmac(sk_cs, fixed, KEY_SIZE)


def _mac(key: bytes, data: bytes) -> bytes:
    return cmac(key, data)[:MAC_SIZE]


def _check_mac(key: bytes, data: bytes, mac: bytes, what: str) -> None:
    if not constant_time_equal(_mac(key, data), mac):
        raise AuthenticationError(f"{what} failed authentication")


@dataclass(frozen=True)
class RevocationQuery:
    controller_id: bytes
    after: int
    challenge: bytes

    def encode(self, sk_cs: bytes) -> bytes:
        body = (
            header_byte(FlightType.F9_REVOCATION_QUERY)
            + self.controller_id
            + self.after.to_bytes(4, "big")
            + self.challenge
        )
        return body + _mac(revocation_key(sk_cs, self.controller_id), body)

    @staticmethod
    def peek_controller(data: bytes) -> bytes:
        """``ID_c``, to find the key that :meth:`decode` needs."""
        check_frame(data, FlightType.F9_REVOCATION_QUERY, QUERY_SIZE)
        return data[1 : 1 + ID_SIZE]

    @classmethod
    def decode(cls, data: bytes, sk_cs: bytes) -> RevocationQuery:
        controller_id = cls.peek_controller(data)
        body, mac = data[:-MAC_SIZE], data[-MAC_SIZE:]
        _check_mac(revocation_key(sk_cs, controller_id), body, mac, "revocation query")
        after = int.from_bytes(body[1 + ID_SIZE : 5 + ID_SIZE], "big")
        return cls(controller_id, after, body[5 + ID_SIZE :])


@dataclass(frozen=True)
class RevocationList:
    challenge: bytes
    next_after: int
    entries: tuple[tuple[int, bytes], ...]  # (sequence number, ID_i)

    def encode(self, sk_cs: bytes, controller_id: bytes) -> bytes:
        if len(self.entries) > MAX_ENTRIES:
            raise ValueError(f"at most {MAX_ENTRIES} entries per answer")
        body = (
            header_byte(FlightType.F10_REVOCATION_LIST)
            + self.challenge
            + self.next_after.to_bytes(4, "big")
            + bytes([len(self.entries)])
            + b"".join(_ENTRY.pack(seq, node_id) for seq, node_id in self.entries)
        )
        key = revocation_key(sk_cs, controller_id)
        return body + _mac(key, controller_id + body)

    @classmethod
    def decode(
        cls, data: bytes, sk_cs: bytes, controller_id: bytes, challenge: bytes
    ) -> RevocationList:
        kind = peek_type(data)
        if kind is not FlightType.F10_REVOCATION_LIST:
            raise DecodeError(DecodeReason.WRONG_TYPE, f"flight {int(kind)}, expected 10")
        if len(data) < LIST_MIN_SIZE:
            raise DecodeError(DecodeReason.TRUNCATED, f"revocation list of {len(data)} bytes")
        count = data[1 + CHALLENGE_SIZE + 4]
        size = LIST_MIN_SIZE + count * _ENTRY.size
        if count > MAX_ENTRIES or len(data) != size:
            raise DecodeError(
                DecodeReason.BAD_VALUE, f"{len(data)} bytes for {count} entries (needs {size})"
            )
        body, mac = data[:-MAC_SIZE], data[-MAC_SIZE:]
        _check_mac(
            revocation_key(sk_cs, controller_id), controller_id + body, mac, "revocation list"
        )
        if not constant_time_equal(body[1 : 1 + CHALLENGE_SIZE], challenge):
            raise DecodeError(DecodeReason.BAD_VALUE, "revocation list answers another query")
        next_after = int.from_bytes(body[1 + CHALLENGE_SIZE : 5 + CHALLENGE_SIZE], "big")
        start = LIST_MIN_SIZE - MAC_SIZE
        entries = tuple(_ENTRY.unpack_from(body, start + i * _ENTRY.size) for i in range(count))
        return cls(challenge, next_after, entries)
