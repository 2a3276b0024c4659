"""Flights 1-7: layouts, sealing and strict decoding.

Notation: ``hdr`` is the header byte, ``seal_K(pt)`` is AES-128-CCM_8 under K with
the nonce of :func:`keystrap.wire.nonce.make_nonce`, producing ``ct || tag(8)``.
The associated data of every sealed flight is ``hdr || ID_c || TID`` and, for
flights 3, 4, 5 and 7, ``|| ID_i``: fields a party already knows are
authenticated without being sent.

=====  ===========  ==========================================================  =====
flight path         layout                                                      bytes
=====  ===========  ==========================================================  =====
1      SBI->SBR OOB hdr ID_i RN_i                                               25
2      SBR->SBS     hdr ID_c TID seal_SKcs(TS RN_c flight1)                     66
3      SBS->SBR     hdr seal_SKcs(IK_i TS TID)                                  33
4      SBR->SBI OOB hdr TID seal_IKi(RN_i RN_c)                                 45
5      SBI->SBR OOB hdr TID seal_PSKi(RN_c)                                     29
6      SBR->SBS     hdr ID_c TID seal_SKcs(flight5)                             50
7      SBS->SBR     hdr seal_SKcs()                                             9
8      SBS->SBR     hdr seal_SKcs(PSK_i TS TID flight4)   (hardened profile)    78
=====  ===========  ==========================================================  =====
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from keystrap.crypto import TAG_SIZE, InvalidTag, ccm_open, ccm_seal
from keystrap.wire.errors import AuthenticationError, DecodeError, DecodeReason
from keystrap.wire.header import VERSION, FlightType, check_frame, header_byte
from keystrap.wire.nonce import make_nonce
from keystrap.wire.sizes import ID_SIZE, KEY_SIZE, RN_SIZE, TID_MAX, TID_SIZE, TS_MAX, TS_SIZE

_HDR = 1

F1_SIZE = _HDR + ID_SIZE + RN_SIZE
F2_SIZE = _HDR + ID_SIZE + TID_SIZE + TS_SIZE + RN_SIZE + F1_SIZE + TAG_SIZE
F3_SIZE = _HDR + KEY_SIZE + TS_SIZE + TID_SIZE + TAG_SIZE
F4_SIZE = _HDR + TID_SIZE + 2 * RN_SIZE + TAG_SIZE
F5_SIZE = _HDR + TID_SIZE + RN_SIZE + TAG_SIZE
F6_SIZE = _HDR + ID_SIZE + TID_SIZE + F5_SIZE + TAG_SIZE
F7_SIZE = _HDR + TAG_SIZE
F8_SIZE = _HDR + KEY_SIZE + TS_SIZE + TID_SIZE + F4_SIZE + TAG_SIZE

FLIGHT_SIZES: dict[FlightType, int] = {
    FlightType.F1_HELLO: F1_SIZE,
    FlightType.F2_REQUEST: F2_SIZE,
    FlightType.F3_GRANT: F3_SIZE,
    FlightType.F4_CHALLENGE: F4_SIZE,
    FlightType.F5_PROOF: F5_SIZE,
    FlightType.F6_CONFIRM: F6_SIZE,
    FlightType.F7_CONFIRMED: F7_SIZE,
    FlightType.F8_SEALED_GRANT: F8_SIZE,
}


def _require(name: str, value: bytes, size: int) -> None:
    if len(value) != size:
        raise ValueError(f"{name} must be {size} bytes, got {len(value)}")


def _require_u32(name: str, value: int, maximum: int) -> None:
    if not 0 <= value <= maximum:
        raise ValueError(f"{name} {value} out of range 0..{maximum}")


def _aad(
    flight_type: FlightType, controller_id: bytes, tid: int, node_id: bytes, version: int
) -> bytes:
    return (
        header_byte(flight_type, version) + controller_id + tid.to_bytes(TID_SIZE, "big") + node_id
    )


def _seal(
    flight_type: FlightType,
    key: bytes,
    controller_id: bytes,
    tid: int,
    plaintext: bytes,
    node_id: bytes = b"",
    version: int = VERSION,
) -> bytes:
    """``node_id`` may be followed by further context that is authenticated, not sent."""
    nonce = make_nonce(flight_type, controller_id, tid)
    return ccm_seal(key, nonce, plaintext, _aad(flight_type, controller_id, tid, node_id, version))


def _open(
    flight_type: FlightType,
    key: bytes,
    controller_id: bytes,
    tid: int,
    sealed: bytes,
    node_id: bytes = b"",
    version: int = VERSION,
) -> bytes:
    nonce = make_nonce(flight_type, controller_id, tid)
    aad = _aad(flight_type, controller_id, tid, node_id, version)
    try:
        return ccm_open(key, nonce, sealed, aad)
    except InvalidTag:
        raise AuthenticationError(f"flight {int(flight_type)} failed authentication") from None


def _to_server(
    kind: FlightType,
    sk_cs: bytes,
    controller_id: bytes,
    tid: int,
    plaintext: bytes,
    version: int = VERSION,
) -> bytes:
    """Flights 2 and 6 (both profiles): ``ID_c`` and ``TID`` in the clear, for the
    server to pick ``SK_cs`` and build the nonce; the rest sealed under SK_cs."""
    _require("ID_c", controller_id, ID_SIZE)
    _require_u32("TID", tid, TID_MAX)
    sealed = _seal(kind, sk_cs, controller_id, tid, plaintext, version=version)
    return header_byte(kind, version) + controller_id + struct.pack(">I", tid) + sealed


# --- flight 1 -------------------------------------------------------------------


@dataclass(frozen=True)
class Flight1:
    """SBI -> SBR over the out-of-band channel, in the clear (paper: AE or plaintext).

    It carries no secret: ``RN_i`` alone gives nothing without ``IK_i``. The same
    layout in both profiles; ``version`` is the node's.
    """

    node_id: bytes
    rn_i: bytes
    version: int = VERSION

    def encode(self) -> bytes:
        _require("ID_i", self.node_id, ID_SIZE)
        _require("RN_i", self.rn_i, RN_SIZE)
        return header_byte(FlightType.F1_HELLO, self.version) + self.node_id + self.rn_i

    @classmethod
    def decode(cls, data: bytes, version: int = VERSION) -> Flight1:
        check_frame(data, FlightType.F1_HELLO, F1_SIZE, version)
        return cls(node_id=data[1:9], rn_i=data[9:25], version=version)


# --- flight 2 -------------------------------------------------------------------


@dataclass(frozen=True)
class Flight2Body:
    """The sealed part of flight 2, once authenticated."""

    ts: int
    rn_c: bytes
    flight1: Flight1


@dataclass(frozen=True)
class Flight2:
    """SBR -> SBS. ``ID_c`` and ``TID`` travel in the clear: the server needs ``ID_c``
    to pick ``SK_cs`` and both to build the nonce; the tag authenticates them."""

    controller_id: bytes
    tid: int
    sealed: bytes

    @classmethod
    def decode(cls, data: bytes) -> Flight2:
        check_frame(data, FlightType.F2_REQUEST, F2_SIZE)
        (tid,) = struct.unpack(">I", data[9:13])
        return cls(controller_id=data[1:9], tid=tid, sealed=data[13:])

    def open(self, sk_cs: bytes) -> Flight2Body:
        pt = _open(FlightType.F2_REQUEST, sk_cs, self.controller_id, self.tid, self.sealed)
        (ts,) = struct.unpack(">I", pt[:4])
        return Flight2Body(ts=ts, rn_c=pt[4:20], flight1=Flight1.decode(pt[20:]))


def seal_flight2(
    sk_cs: bytes, controller_id: bytes, tid: int, ts: int, rn_c: bytes, flight1: bytes
) -> bytes:
    _require_u32("TS", ts, TS_MAX)
    _require("RN_c", rn_c, RN_SIZE)
    Flight1.decode(flight1)
    plaintext = struct.pack(">I", ts) + rn_c + flight1
    return _to_server(FlightType.F2_REQUEST, sk_cs, controller_id, tid, plaintext)


# --- flight 3 -------------------------------------------------------------------


@dataclass(frozen=True)
class Flight3Body:
    ik: bytes
    ts: int
    tid: int


def seal_flight3(
    sk_cs: bytes, controller_id: bytes, tid: int, node_id: bytes, ik: bytes, ts: int
) -> bytes:
    _require("IK", ik, KEY_SIZE)
    _require("ID_i", node_id, ID_SIZE)
    plaintext = ik + struct.pack(">II", ts, tid)
    sealed = _seal(FlightType.F3_GRANT, sk_cs, controller_id, tid, plaintext, node_id)
    return header_byte(FlightType.F3_GRANT) + sealed


def open_flight3(
    data: bytes, sk_cs: bytes, controller_id: bytes, tid: int, node_id: bytes
) -> Flight3Body:
    """Flight 3 carries no clear fields: the controller opens it in the context of its
    own transaction, so a flight 3 from another transaction cannot authenticate."""
    check_frame(data, FlightType.F3_GRANT, F3_SIZE)
    pt = _open(FlightType.F3_GRANT, sk_cs, controller_id, tid, data[1:], node_id)
    ts, inner_tid = struct.unpack(">II", pt[16:24])
    return Flight3Body(ik=pt[:16], ts=ts, tid=inner_tid)


# --- flight 4 -------------------------------------------------------------------


@dataclass(frozen=True)
class Flight4:
    """SBR -> SBI over the out-of-band channel: ``TID, E_IKi(RN_i || RN_c)``."""

    tid: int
    sealed: bytes

    @classmethod
    def decode(cls, data: bytes) -> Flight4:
        check_frame(data, FlightType.F4_CHALLENGE, F4_SIZE)
        (tid,) = struct.unpack(">I", data[1:5])
        return cls(tid=tid, sealed=data[5:])

    def open(self, ik: bytes, controller_id: bytes, node_id: bytes) -> tuple[bytes, bytes]:
        """Return ``(RN_i, RN_c)``; the caller compares ``RN_i`` with its own."""
        pt = _open(FlightType.F4_CHALLENGE, ik, controller_id, self.tid, self.sealed, node_id)
        return pt[:16], pt[16:]


def seal_flight4(
    ik: bytes, controller_id: bytes, tid: int, node_id: bytes, rn_i: bytes, rn_c: bytes
) -> bytes:
    _require("RN_i", rn_i, RN_SIZE)
    _require("RN_c", rn_c, RN_SIZE)
    _require("ID_i", node_id, ID_SIZE)
    sealed = _seal(FlightType.F4_CHALLENGE, ik, controller_id, tid, rn_i + rn_c, node_id)
    return header_byte(FlightType.F4_CHALLENGE) + struct.pack(">I", tid) + sealed


# --- flight 5 -------------------------------------------------------------------


@dataclass(frozen=True)
class Flight5:
    """SBI -> SBR over the out-of-band channel: ``E_PSKi(RN_c)``, proof of holding PSK_i."""

    tid: int
    sealed: bytes

    @classmethod
    def decode(cls, data: bytes) -> Flight5:
        check_frame(data, FlightType.F5_PROOF, F5_SIZE)
        (tid,) = struct.unpack(">I", data[1:5])
        return cls(tid=tid, sealed=data[5:])

    def open(self, psk: bytes, controller_id: bytes, node_id: bytes) -> bytes:
        """Return the ``RN_c`` the node saw; the caller compares it with its own."""
        return _open(FlightType.F5_PROOF, psk, controller_id, self.tid, self.sealed, node_id)


def seal_flight5(psk: bytes, controller_id: bytes, tid: int, node_id: bytes, rn_c: bytes) -> bytes:
    _require("RN_c", rn_c, RN_SIZE)
    _require("ID_i", node_id, ID_SIZE)
    sealed = _seal(FlightType.F5_PROOF, psk, controller_id, tid, rn_c, node_id)
    return header_byte(FlightType.F5_PROOF) + struct.pack(">I", tid) + sealed


# --- flights 6 and 7 (our addition: the server learns the node holds PSK_i) --------


@dataclass(frozen=True)
class Flight6:
    """SBR -> SBS: the node's flight 5, forwarded so the server can check it itself."""

    controller_id: bytes
    tid: int
    sealed: bytes

    @classmethod
    def decode(cls, data: bytes) -> Flight6:
        check_frame(data, FlightType.F6_CONFIRM, F6_SIZE)
        (tid,) = struct.unpack(">I", data[9:13])
        return cls(controller_id=data[1:9], tid=tid, sealed=data[13:])

    def open(self, sk_cs: bytes) -> Flight5:
        pt = _open(FlightType.F6_CONFIRM, sk_cs, self.controller_id, self.tid, self.sealed)
        flight5 = Flight5.decode(pt)
        if flight5.tid != self.tid:
            raise DecodeError(DecodeReason.BAD_VALUE, "flight 5 inside flight 6 has another TID")
        return flight5


def seal_flight6(sk_cs: bytes, controller_id: bytes, tid: int, flight5: bytes) -> bytes:
    Flight5.decode(flight5)
    return _to_server(FlightType.F6_CONFIRM, sk_cs, controller_id, tid, flight5)


def seal_flight7(sk_cs: bytes, controller_id: bytes, tid: int, node_id: bytes) -> bytes:
    sealed = _seal(FlightType.F7_CONFIRMED, sk_cs, controller_id, tid, b"", node_id)
    return header_byte(FlightType.F7_CONFIRMED) + sealed


def open_flight7(data: bytes, sk_cs: bytes, controller_id: bytes, tid: int, node_id: bytes) -> None:
    check_frame(data, FlightType.F7_CONFIRMED, F7_SIZE)
    _open(FlightType.F7_CONFIRMED, sk_cs, controller_id, tid, data[1:], node_id)


# --- flight 11 (our addition: the node learns, verifiably, that the server confirmed) --

F11_SIZE = _HDR + TID_SIZE + TAG_SIZE


def seal_flight11(
    session_key: bytes, controller_id: bytes, tid: int, node_id: bytes, version: int = VERSION
) -> bytes:
    """``hdr TID seal_SKi()``: sent by the controller once flight 7 arrived.

    Sealed under SK_i, which only this bootstrap's node and controller can
    derive and which seals nothing else, so the node can tell it from an
    attacker's "done" (the empty record that used to stand here). The same
    layout in both profiles; ``version`` is the transaction's.
    """
    _require("ID_i", node_id, ID_SIZE)
    kind = FlightType.F11_NODE_CONFIRMED
    sealed = _seal(kind, session_key, controller_id, tid, b"", node_id, version)
    return header_byte(kind, version) + struct.pack(">I", tid) + sealed


# --- flight 8 (hardened profile: the controller never learns IK) ------------------


@dataclass(frozen=True)
class Flight8Body:
    psk: bytes
    ts: int
    tid: int
    challenge: bytes  # flight 4, sealed by the server under IK_i


def seal_flight8(
    sk_cs: bytes,
    controller_id: bytes,
    tid: int,
    node_id: bytes,
    psk: bytes,
    ts: int,
    challenge: bytes,
) -> bytes:
    _require("PSK", psk, KEY_SIZE)
    _require("ID_i", node_id, ID_SIZE)
    Flight4.decode(challenge)
    plaintext = psk + struct.pack(">II", ts, tid) + challenge
    sealed = _seal(FlightType.F8_SEALED_GRANT, sk_cs, controller_id, tid, plaintext, node_id)
    return header_byte(FlightType.F8_SEALED_GRANT) + sealed


def open_flight8(
    data: bytes, sk_cs: bytes, controller_id: bytes, tid: int, node_id: bytes
) -> Flight8Body:
    check_frame(data, FlightType.F8_SEALED_GRANT, F8_SIZE)
    pt = _open(FlightType.F8_SEALED_GRANT, sk_cs, controller_id, tid, data[1:], node_id)
    ts, inner_tid = struct.unpack(">II", pt[16:24])
    challenge = pt[24:]
    if Flight4.decode(challenge).tid != tid:
        raise DecodeError(DecodeReason.BAD_VALUE, "flight 4 inside flight 8 has another TID")
    return Flight8Body(psk=pt[:16], ts=ts, tid=inner_tid, challenge=challenge)
