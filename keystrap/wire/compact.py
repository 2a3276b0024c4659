"""The compact profile (version 2): the paper's exchange in fewer bytes.

Same parties, same keys, same nonces (``type || ID_c || TID``), same checks; what
changes is that nothing is sent that its receiver already holds -- such a value
is authenticated as associated data instead -- and that the server derives
``RN_c`` instead of being sent it. Specified in docs/protocol.md, "Compact
profile"; vectors in tests/vectors/compact.json. One class per flight, with the
interface of the paper's (:mod:`keystrap.wire.flights`).

=====  ===========  ==========================================================  =====
flight path         layout (AAD after ``|``; never sent)                        bytes
=====  ===========  ==========================================================  =====
1      SBI->SBR OOB hdr ID_i RN_i  (the paper's layout)                         25
2      SBR->SBS     hdr ID_c TID seal_SKcs(TS ID_i RN_i)                        49
3      SBS->SBR     hdr seal_SKcs(IK_i | ID_i TS)                               25
4      SBR->SBI OOB hdr TID seal_IKi(RN_c | ID_i RN_i)                          29
5      SBI->SBR OOB hdr TID tag_PSKi(| ID_i RN_c)                               13
6      SBR->SBS     hdr ID_c TID seal_SKcs(flight 5's tag)                      29
7      SBS->SBR     hdr seal_SKcs(| ID_i)  (the paper's layout)                 9
11     SBR->SBI OOB hdr TID seal_SKi(| ID_i)  (the paper's layout)              13
=====  ===========  ==========================================================  =====

Every AAD starts ``hdr || ID_c || TID`` as in the paper profile. ``RN_c =
KBKDF-CMAC_SKcs("keystrap RN_c" 0x00 ID_c TID)``: unique per transaction (the TID
never repeats under one ``SK_cs``) and unpredictable without ``SK_cs``, so it is
as good a nonce as a drawn one, and it no longer crosses the in-band path at all.
"""

from __future__ import annotations

from typing import Self

from keystrap.crypto import TAG_SIZE, kbkdf_cmac
from keystrap.wire.flights import (
    HEADER_ONLY,
    TO_SERVER,
    WITH_TID,
    Flight1,
    Flight7,
    Flight11,
    ToServer,
    WithTid,
)
from keystrap.wire.frozen import frozen
from keystrap.wire.header import COMPACT, FlightType
from keystrap.wire.layout import ID_C, ID_I, TID_FIELD, Flight, Layout, sealed_size
from keystrap.wire.sizes import RN_SIZE

RN_C_LABEL = b"keystrap RN_c\x00"
_RN_C_CONTEXT = Layout(ID_C, TID_FIELD)
_ID_AND_RN = Layout(ID_I, ("RN", "16s"))
_ID_AND_TS = Layout(ID_I, ("TS", "I"))


def derive_rn_c(sk_cs: bytes, controller_id: bytes, tid: int) -> bytes:
    """The controller's random of transaction ``tid``, which the server computes too."""
    return kbkdf_cmac(sk_cs, RN_C_LABEL + _RN_C_CONTEXT.pack(controller_id, tid), RN_SIZE)


class CompactFlight1(Flight1):
    """Flight 1 of a node ordered with the compact profile: the paper's layout."""

    PROFILE = COMPACT


@frozen
class CompactFlight2(ToServer):
    """SBR -> SBS: the node's ``ID_i`` and ``RN_i`` under ``SK_cs``; no ``RN_c``."""

    TYPE = FlightType.F2_REQUEST
    PROFILE = COMPACT
    SEALED = Layout(("TS", "I"), ID_I, ("RN_i", "16s"))
    SIZE = sealed_size(TO_SERVER, SEALED)

    controller_id: bytes
    tid: int
    ts: int
    node_id: bytes
    rn_i: bytes

    def seal(self, sk_cs: bytes) -> bytes:
        plain = (self.ts, self.node_id, self.rn_i)
        return self._seal(
            sk_cs, self.controller_id, self.tid, (self.controller_id, self.tid), plain
        )

    @classmethod
    def open(cls, data: bytes, sk_cs: bytes) -> Self:
        controller_id, tid = cls.clear_fields(data)
        ts, node_id, rn_i = cls._open(data, sk_cs, controller_id, tid)
        return cls(controller_id, tid, ts, node_id, rn_i)


@frozen
class CompactFlight3(Flight):
    """SBS -> SBR: ``IK_i``; ``TS`` and ``TID`` authenticated, not echoed (the
    controller knows both, so only the grant of exactly its request opens)."""

    TYPE = FlightType.F3_GRANT
    PROFILE = COMPACT
    CLEAR = HEADER_ONLY
    SEALED = Layout(("IK", "16s"))
    SIZE = sealed_size(CLEAR, SEALED)

    controller_id: bytes
    tid: int
    node_id: bytes
    ts: int
    ik: bytes

    def seal(self, sk_cs: bytes) -> bytes:
        context = _ID_AND_TS.pack(self.node_id, self.ts)
        return self._seal(sk_cs, self.controller_id, self.tid, (), (self.ik,), context)

    @classmethod
    def open(
        cls, data: bytes, sk_cs: bytes, *, controller_id: bytes, tid: int, node_id: bytes, ts: int
    ) -> Self:
        cls.clear_fields(data)
        context = _ID_AND_TS.pack(node_id, ts)
        (ik,) = cls._open(data, sk_cs, controller_id, tid, context)
        return cls(controller_id, tid, node_id, ts, ik)


@frozen
class CompactFlight4(WithTid):
    """SBR -> SBI: ``RN_c`` under ``IK_i``. ``RN_i`` is authenticated, not sent: only
    a flight 4 for the node's own ``RN_i`` opens, as the paper's equality check demands."""

    TYPE = FlightType.F4_CHALLENGE
    PROFILE = COMPACT
    SEALED = Layout(("RN_c", "16s"))
    SIZE = sealed_size(WITH_TID, SEALED)

    controller_id: bytes
    tid: int
    node_id: bytes
    rn_i: bytes
    rn_c: bytes

    def seal(self, ik: bytes) -> bytes:
        context = _ID_AND_RN.pack(self.node_id, self.rn_i)
        return self._seal(ik, self.controller_id, self.tid, (self.tid,), (self.rn_c,), context)

    @classmethod
    def open(
        cls, data: bytes, ik: bytes, *, controller_id: bytes, node_id: bytes, rn_i: bytes
    ) -> Self:
        (tid,) = cls.clear_fields(data)
        context = _ID_AND_RN.pack(node_id, rn_i)
        (rn_c,) = cls._open(data, ik, controller_id, tid, context)
        return cls(controller_id, tid, node_id, rn_i, rn_c)


@frozen
class CompactFlight5(WithTid):
    """SBI -> SBR: a tag alone. ``RN_c`` is known to the controller and the server,
    so the proof authenticates it instead of carrying it."""

    TYPE = FlightType.F5_PROOF
    PROFILE = COMPACT
    SIZE = sealed_size(WITH_TID, Flight.SEALED)

    controller_id: bytes
    tid: int
    node_id: bytes
    rn_c: bytes

    def seal(self, psk: bytes) -> bytes:
        context = _ID_AND_RN.pack(self.node_id, self.rn_c)
        return self._seal(psk, self.controller_id, self.tid, (self.tid,), (), context)

    @classmethod
    def open(
        cls, data: bytes, psk: bytes, *, controller_id: bytes, node_id: bytes, rn_c: bytes
    ) -> Self:
        """Raises :class:`AuthenticationError` unless the holder of ``PSK_i`` saw ``RN_c``."""
        (tid,) = cls.clear_fields(data)
        cls._open(data, psk, controller_id, tid, _ID_AND_RN.pack(node_id, rn_c))
        return cls(controller_id, tid, node_id, rn_c)


@frozen
class CompactFlight6(ToServer):
    """SBR -> SBS: flight 5's tag (its header and TID are flight 6's own)."""

    TYPE = FlightType.F6_CONFIRM
    PROFILE = COMPACT
    SEALED = Layout(("flight 5 tag", f"{TAG_SIZE}s"))
    SIZE = sealed_size(TO_SERVER, SEALED)

    controller_id: bytes
    tid: int
    proof: bytes  # flight 5, as the node sent it

    def seal(self, sk_cs: bytes) -> bytes:
        if CompactFlight5.peek_tid(self.proof) != self.tid:
            raise ValueError("flight 5 of another transaction")
        tag = self.proof[WITH_TID.size :]
        return self._seal(
            sk_cs, self.controller_id, self.tid, (self.controller_id, self.tid), (tag,)
        )

    @classmethod
    def open(cls, data: bytes, sk_cs: bytes) -> Self:
        """Flight 5 as the node sent it, rebuilt from flight 6."""
        controller_id, tid = cls.clear_fields(data)
        (tag,) = cls._open(data, sk_cs, controller_id, tid)
        proof = WITH_TID.pack(CompactFlight5.header()[0], tid) + tag
        return cls(controller_id, tid, proof)


class CompactFlight7(Flight7):
    """Flight 7 of a compact transaction: the paper's layout."""

    PROFILE = COMPACT


class CompactFlight11(Flight11):
    """Flight 11 of a compact transaction: the paper's layout."""

    PROFILE = COMPACT
