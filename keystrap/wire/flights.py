"""The paper's flights (profile 1): 1-8 and 11, one class each.

Notation: ``hdr`` is the header byte, ``seal_K(pt)`` is AES-128-CCM_8 under K with
the nonce of :func:`keystrap.wire.nonce.make_nonce`, producing ``ct || tag(8)``.
The associated data of every sealed flight is ``hdr || ID_c || TID`` and, for
flights 3, 4, 5, 7 and 11, ``|| ID_i``: fields a party already knows are
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
11     SBR->SBI OOB hdr TID seal_SKi()                                          13
=====  ===========  ==========================================================  =====

Each class holds every field of its flight, the sent ones and the ones only
authenticated; ``open`` takes the latter from the caller (who knows them) and
returns the whole flight. Where a flight echoes a value its receiver knows
(flight 3's and 8's ``TS`` and ``TID``), the opened instance holds the echoed
value, for the receiver to compare.
"""

from __future__ import annotations

from typing import Self

from keystrap.wire.errors import DecodeError, DecodeReason
from keystrap.wire.frozen import frozen
from keystrap.wire.header import FlightType
from keystrap.wire.layout import HDR, ID_C, ID_I, TID_FIELD, Flight, Layout, sealed_size

TO_SERVER = Layout(HDR, ID_C, TID_FIELD)
"""Flights 2 and 6 (both profiles): ``ID_c`` and ``TID`` in the clear, for the
server to pick ``SK_cs`` and build the nonce; the tag authenticates them."""
WITH_TID = Layout(HDR, TID_FIELD)
"""Out-of-band flights 4, 5 and 11: the node learns the TID from them."""
HEADER_ONLY = Layout(HDR)
"""Answers to a request (3, 7, 8): the controller opens them in the context of
its own transaction, so one from another transaction cannot authenticate."""


class ToServer(Flight):
    """Flights 2 and 6, both profiles: routed by the ``ID_c`` in the clear."""

    CLEAR = TO_SERVER

    @classmethod
    def peek_controller(cls, data: bytes) -> bytes:
        """``ID_c``, to pick the ``SK_cs`` that ``open`` needs; checks the frame."""
        controller_id, _ = cls.clear_fields(data)
        return bytes(controller_id)

    @classmethod
    def peek_tid(cls, data: bytes) -> int:
        """The transaction, without the key (for an observer: the lab, the tests)."""
        _, tid = cls.clear_fields(data)
        return int(tid)


class WithTid(Flight):
    """Flights 4, 5 and 11, both profiles: the TID in the clear, which the node
    learns from flight 4 and the controller uses to find the transaction."""

    CLEAR = WITH_TID

    @classmethod
    def peek_tid(cls, data: bytes) -> int:
        """The transaction, to find the key before opening; checks the frame."""
        (tid,) = cls.clear_fields(data)
        return int(tid)


# --- flight 1 -------------------------------------------------------------------


@frozen
class Flight1(Flight):
    """SBI -> SBR over the out-of-band channel, in the clear (paper: AE or plaintext).

    It carries no secret: ``RN_i`` alone gives nothing without ``IK_i``. The
    compact profile sends the same layout (:class:`~keystrap.wire.compact.CompactFlight1`).
    """

    TYPE = FlightType.F1_HELLO
    CLEAR = Layout(HDR, ID_I, ("RN_i", "16s"))
    SIZE = CLEAR.size

    node_id: bytes
    rn_i: bytes

    def encode(self) -> bytes:
        return self.CLEAR.pack(self.header()[0], self.node_id, self.rn_i)

    @classmethod
    def decode(cls, data: bytes) -> Self:
        node_id, rn_i = cls.clear_fields(data)
        return cls(node_id, rn_i)


# --- flight 2 -------------------------------------------------------------------


@frozen
class Flight2(ToServer):
    """SBR -> SBS: the node's flight 1 and the controller's ``RN_c``, under ``SK_cs``."""

    TYPE = FlightType.F2_REQUEST
    SEALED = Layout(("TS", "I"), ("RN_c", "16s"), ("flight 1", f"{Flight1.SIZE}s"))
    SIZE = sealed_size(TO_SERVER, SEALED)

    controller_id: bytes
    tid: int
    ts: int
    rn_c: bytes
    flight1: Flight1

    def seal(self, sk_cs: bytes) -> bytes:
        hello = self.flight1.encode()
        plain = (self.ts, self.rn_c, hello)
        return self._seal(
            sk_cs, self.controller_id, self.tid, (self.controller_id, self.tid), plain
        )

    @classmethod
    def open(cls, data: bytes, sk_cs: bytes) -> Self:
        controller_id, tid = cls.clear_fields(data)
        ts, rn_c, hello = cls._open(data, sk_cs, controller_id, tid)
        return cls(controller_id, tid, ts, rn_c, Flight1.decode(hello))


# --- flight 3 -------------------------------------------------------------------


@frozen
class Flight3(Flight):
    """SBS -> SBR: the node's initial key ``IK_i``, with ``TS`` and ``TID`` echoed."""

    TYPE = FlightType.F3_GRANT
    CLEAR = HEADER_ONLY
    SEALED = Layout(("IK", "16s"), ("TS", "I"), TID_FIELD)
    SIZE = sealed_size(CLEAR, SEALED)

    controller_id: bytes
    tid: int
    node_id: bytes
    ik: bytes
    ts: int

    def seal(self, sk_cs: bytes) -> bytes:
        plain = (self.ik, self.ts, self.tid)
        return self._seal(sk_cs, self.controller_id, self.tid, (), plain, _id(self.node_id))

    @classmethod
    def open(
        cls, data: bytes, sk_cs: bytes, *, controller_id: bytes, tid: int, node_id: bytes
    ) -> Self:
        """``tid`` is the controller's transaction; the result holds the echoed one."""
        cls.clear_fields(data)
        ik, ts, echoed = cls._open(data, sk_cs, controller_id, tid, _id(node_id))
        return cls(controller_id, echoed, node_id, ik, ts)


# --- flight 4 -------------------------------------------------------------------


@frozen
class Flight4(WithTid):
    """SBR -> SBI over the out-of-band channel: ``TID, E_IKi(RN_i || RN_c)``."""

    TYPE = FlightType.F4_CHALLENGE
    SEALED = Layout(("RN_i", "16s"), ("RN_c", "16s"))
    SIZE = sealed_size(WITH_TID, SEALED)

    controller_id: bytes
    tid: int
    node_id: bytes
    rn_i: bytes
    rn_c: bytes

    def seal(self, ik: bytes) -> bytes:
        plain = (self.rn_i, self.rn_c)
        return self._seal(ik, self.controller_id, self.tid, (self.tid,), plain, _id(self.node_id))

    @classmethod
    def open(cls, data: bytes, ik: bytes, *, controller_id: bytes, node_id: bytes) -> Self:
        """The caller compares ``rn_i`` with its own."""
        (tid,) = cls.clear_fields(data)
        rn_i, rn_c = cls._open(data, ik, controller_id, tid, _id(node_id))
        return cls(controller_id, tid, node_id, rn_i, rn_c)


# --- flight 5 -------------------------------------------------------------------


@frozen
class Flight5(WithTid):
    """SBI -> SBR over the out-of-band channel: ``E_PSKi(RN_c)``, proof of holding PSK_i."""

    TYPE = FlightType.F5_PROOF
    SEALED = Layout(("RN_c", "16s"))
    SIZE = sealed_size(WITH_TID, SEALED)

    controller_id: bytes
    tid: int
    node_id: bytes
    rn_c: bytes

    def seal(self, psk: bytes) -> bytes:
        return self._seal(
            psk, self.controller_id, self.tid, (self.tid,), (self.rn_c,), _id(self.node_id)
        )

    @classmethod
    def open(cls, data: bytes, psk: bytes, *, controller_id: bytes, node_id: bytes) -> Self:
        """The ``RN_c`` the node saw; the caller compares it with its own."""
        (tid,) = cls.clear_fields(data)
        (rn_c,) = cls._open(data, psk, controller_id, tid, _id(node_id))
        return cls(controller_id, tid, node_id, rn_c)


# --- flights 6 and 7 (our addition: the server learns the node holds PSK_i) --------


@frozen
class Flight6(ToServer):
    """SBR -> SBS: the node's flight 5, forwarded so the server can check it itself."""

    TYPE = FlightType.F6_CONFIRM
    SEALED = Layout(("flight 5", f"{Flight5.SIZE}s"))
    SIZE = sealed_size(TO_SERVER, SEALED)

    controller_id: bytes
    tid: int
    proof: bytes  # flight 5, as the node sent it

    def seal(self, sk_cs: bytes) -> bytes:
        if Flight5.peek_tid(self.proof) != self.tid:
            raise ValueError("flight 5 of another transaction")
        clear = (self.controller_id, self.tid)
        return self._seal(sk_cs, self.controller_id, self.tid, clear, (self.proof,))

    @classmethod
    def open(cls, data: bytes, sk_cs: bytes) -> Self:
        controller_id, tid = cls.clear_fields(data)
        (proof,) = cls._open(data, sk_cs, controller_id, tid)
        if Flight5.peek_tid(proof) != tid:
            raise DecodeError(DecodeReason.BAD_VALUE, "flight 5 inside flight 6 has another TID")
        return cls(controller_id, tid, proof)


@frozen
class Flight7(Flight):
    """SBS -> SBR: a tag alone, the server's word that it holds ``PSK_i``."""

    TYPE = FlightType.F7_CONFIRMED
    CLEAR = HEADER_ONLY
    SIZE = sealed_size(CLEAR, Flight.SEALED)

    controller_id: bytes
    tid: int
    node_id: bytes

    def seal(self, sk_cs: bytes) -> bytes:
        return self._seal(sk_cs, self.controller_id, self.tid, (), (), _id(self.node_id))

    @classmethod
    def open(
        cls, data: bytes, sk_cs: bytes, *, controller_id: bytes, tid: int, node_id: bytes
    ) -> Self:
        cls.clear_fields(data)
        cls._open(data, sk_cs, controller_id, tid, _id(node_id))
        return cls(controller_id, tid, node_id)


# --- flight 8 (hardened profile: the controller never learns IK) ------------------


@frozen
class Flight8(Flight):
    """SBS -> SBR, hardened: ``PSK_i`` and flight 4 sealed by the server under ``IK_i``."""

    TYPE = FlightType.F8_SEALED_GRANT
    CLEAR = HEADER_ONLY
    SEALED = Layout(("PSK", "16s"), ("TS", "I"), TID_FIELD, ("flight 4", f"{Flight4.SIZE}s"))
    SIZE = sealed_size(CLEAR, SEALED)

    controller_id: bytes
    tid: int
    node_id: bytes
    psk: bytes
    ts: int
    challenge: bytes  # flight 4

    def seal(self, sk_cs: bytes) -> bytes:
        if Flight4.peek_tid(self.challenge) != self.tid:
            raise ValueError("flight 4 of another transaction")
        plain = (self.psk, self.ts, self.tid, self.challenge)
        return self._seal(sk_cs, self.controller_id, self.tid, (), plain, _id(self.node_id))

    @classmethod
    def open(
        cls, data: bytes, sk_cs: bytes, *, controller_id: bytes, tid: int, node_id: bytes
    ) -> Self:
        """``tid`` is the controller's transaction; the result holds the echoed one."""
        cls.clear_fields(data)
        psk, ts, echoed, challenge = cls._open(data, sk_cs, controller_id, tid, _id(node_id))
        if Flight4.peek_tid(challenge) != tid:
            raise DecodeError(DecodeReason.BAD_VALUE, "flight 4 inside flight 8 has another TID")
        return cls(controller_id, echoed, node_id, psk, ts, challenge)


# --- flight 11 (our addition: the node learns, verifiably, that the server confirmed) --


@frozen
class Flight11(WithTid):
    """SBR -> SBI, once flight 7 arrived: ``hdr TID seal_SKi()``.

    Sealed under SK_i, which only this bootstrap's node and controller can
    derive and which seals nothing else, so the node can tell it from an
    attacker's "done". The compact profile sends the same layout
    (:class:`~keystrap.wire.compact.CompactFlight11`).
    """

    TYPE = FlightType.F11_NODE_CONFIRMED
    SIZE = sealed_size(WITH_TID, Flight.SEALED)

    controller_id: bytes
    tid: int
    node_id: bytes

    def seal(self, session_key: bytes) -> bytes:
        return self._seal(
            session_key, self.controller_id, self.tid, (self.tid,), (), _id(self.node_id)
        )

    @classmethod
    def open(cls, data: bytes, session_key: bytes, *, controller_id: bytes, node_id: bytes) -> Self:
        (tid,) = cls.clear_fields(data)
        cls._open(data, session_key, controller_id, tid, _id(node_id))
        return cls(controller_id, tid, node_id)


NODE_ID = Layout(ID_I)


def _id(node_id: bytes) -> bytes:
    """``ID_i`` as associated data, checked like a sent field."""
    return NODE_ID.pack(node_id)
