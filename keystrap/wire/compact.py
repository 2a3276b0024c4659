"""The compact profile (version 2): the paper's exchange in fewer bytes.

Same parties, same keys, same nonces (``type || ID_c || TID``), same checks; what
changes is that nothing is sent that its receiver already holds -- such a value
is authenticated as associated data instead -- and that the server derives
``RN_c`` instead of being sent it. Specified in docs/protocol.md, "Compact
profile"; vectors in tests/vectors/compact.json.

=====  ===========  ==========================================================  =====
flight path         layout (AAD after ``|``; never sent)                        bytes
=====  ===========  ==========================================================  =====
1      SBI->SBR OOB hdr ID_i RN_i  (``Flight1`` with ``version=COMPACT``)           25
2      SBR->SBS     hdr ID_c TID seal_SKcs(TS ID_i RN_i)                        49
3      SBS->SBR     hdr seal_SKcs(IK_i | ID_i TS)                               25
4      SBR->SBI OOB hdr TID seal_IKi(RN_c | ID_i RN_i)                          29
5      SBI->SBR OOB hdr TID tag_PSKi(| ID_i RN_c)                               13
6      SBR->SBS     hdr ID_c TID seal_SKcs(flight 5's tag)                      29
7      SBS->SBR     hdr seal_SKcs(| ID_i)                                       9
=====  ===========  ==========================================================  =====

Every AAD starts ``hdr || ID_c || TID`` as in the paper profile. ``RN_c =
KBKDF-CMAC_SKcs("keystrap RN_c" 0x00 ID_c TID)``: unique per transaction (the TID
never repeats under one ``SK_cs``) and unpredictable without ``SK_cs``, so it is
as good a nonce as a drawn one, and it no longer crosses the in-band path at all.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from keystrap.crypto import TAG_SIZE, kbkdf_cmac
from keystrap.wire.errors import DecodeError, DecodeReason
from keystrap.wire.flights import _open, _require, _require_u32, _seal, _to_server
from keystrap.wire.header import COMPACT, FlightType, check_frame, header_byte
from keystrap.wire.sizes import ID_SIZE, KEY_SIZE, RN_SIZE, TID_MAX, TID_SIZE, TS_MAX, TS_SIZE

_HDR = 1

C1_SIZE = _HDR + ID_SIZE + RN_SIZE
C2_SIZE = _HDR + ID_SIZE + TID_SIZE + TS_SIZE + ID_SIZE + RN_SIZE + TAG_SIZE
C3_SIZE = _HDR + KEY_SIZE + TAG_SIZE
C4_SIZE = _HDR + TID_SIZE + RN_SIZE + TAG_SIZE
C5_SIZE = _HDR + TID_SIZE + TAG_SIZE
C6_SIZE = _HDR + ID_SIZE + TID_SIZE + TAG_SIZE + TAG_SIZE
C7_SIZE = _HDR + TAG_SIZE

COMPACT_SIZES: dict[FlightType, int] = {
    FlightType.F1_HELLO: C1_SIZE,
    FlightType.F2_REQUEST: C2_SIZE,
    FlightType.F3_GRANT: C3_SIZE,
    FlightType.F4_CHALLENGE: C4_SIZE,
    FlightType.F5_PROOF: C5_SIZE,
    FlightType.F6_CONFIRM: C6_SIZE,
    FlightType.F7_CONFIRMED: C7_SIZE,
}

RN_C_LABEL = b"keystrap RN_c\x00"


def derive_rn_c(sk_cs: bytes, controller_id: bytes, tid: int) -> bytes:
    """The controller's random of transaction ``tid``, which the server computes too."""
    _require("ID_c", controller_id, ID_SIZE)
    _require_u32("TID", tid, TID_MAX)
    return kbkdf_cmac(sk_cs, RN_C_LABEL + controller_id + struct.pack(">I", tid), RN_SIZE)


def _hdr(kind: FlightType) -> bytes:
    return header_byte(kind, COMPACT)


def _tid(data: bytes, at: int) -> int:
    (tid,) = struct.unpack(">I", data[at : at + TID_SIZE])
    return int(tid)


def peek_to_server(data: bytes, kind: FlightType) -> tuple[bytes, int]:
    """``(ID_c, TID)`` of a flight 2 or 6, to pick ``SK_cs`` before anything else."""
    check_frame(data, kind, COMPACT_SIZES[kind], COMPACT)
    return data[1:9], _tid(data, 9)


def _from_controller(data: bytes, kind: FlightType, sk_cs: bytes) -> tuple[int, bytes]:
    controller_id, tid = peek_to_server(data, kind)
    return tid, _open(kind, sk_cs, controller_id, tid, data[13:], version=COMPACT)


# --- flight 2 -------------------------------------------------------------------


@dataclass(frozen=True)
class CompactRequest:
    """What the server learns from flight 2, once authenticated."""

    controller_id: bytes
    tid: int
    ts: int
    node_id: bytes
    rn_i: bytes


def seal_compact_request(
    sk_cs: bytes, controller_id: bytes, tid: int, ts: int, node_id: bytes, rn_i: bytes
) -> bytes:
    _require("ID_i", node_id, ID_SIZE)
    _require("RN_i", rn_i, RN_SIZE)
    _require_u32("TS", ts, TS_MAX)
    plaintext = struct.pack(">I", ts) + node_id + rn_i
    return _to_server(FlightType.F2_REQUEST, sk_cs, controller_id, tid, plaintext, COMPACT)


def open_compact_request(data: bytes, sk_cs: bytes) -> CompactRequest:
    tid, pt = _from_controller(data, FlightType.F2_REQUEST, sk_cs)
    (ts,) = struct.unpack(">I", pt[:4])
    return CompactRequest(data[1:9], tid, int(ts), pt[4:12], pt[12:28])


# --- flight 3 -------------------------------------------------------------------


def seal_compact_grant(
    sk_cs: bytes, controller_id: bytes, tid: int, node_id: bytes, ts: int, ik: bytes
) -> bytes:
    """``TS`` and ``TID`` are authenticated, not echoed: the controller knows both."""
    _require("IK", ik, KEY_SIZE)
    _require("ID_i", node_id, ID_SIZE)
    context = node_id + struct.pack(">I", ts)
    sealed = _seal(FlightType.F3_GRANT, sk_cs, controller_id, tid, ik, context, COMPACT)
    return _hdr(FlightType.F3_GRANT) + sealed


def open_compact_grant(
    data: bytes, sk_cs: bytes, controller_id: bytes, tid: int, node_id: bytes, ts: int
) -> bytes:
    """``IK_i``, if flight 3 was sealed for exactly this transaction and timestamp."""
    check_frame(data, FlightType.F3_GRANT, C3_SIZE, COMPACT)
    context = node_id + struct.pack(">I", ts)
    return _open(FlightType.F3_GRANT, sk_cs, controller_id, tid, data[1:], context, COMPACT)


# --- flight 4 -------------------------------------------------------------------


def seal_compact_challenge(
    ik: bytes, controller_id: bytes, tid: int, node_id: bytes, rn_i: bytes, rn_c: bytes
) -> bytes:
    """``RN_i`` is authenticated, not sent: only a flight 4 for the node's own
    ``RN_i`` opens, as the paper's equality check demands."""
    _require("RN_i", rn_i, RN_SIZE)
    _require("RN_c", rn_c, RN_SIZE)
    _require("ID_i", node_id, ID_SIZE)
    kind = FlightType.F4_CHALLENGE
    sealed = _seal(kind, ik, controller_id, tid, rn_c, node_id + rn_i, COMPACT)
    return _hdr(kind) + struct.pack(">I", tid) + sealed


def open_compact_challenge(
    data: bytes, ik: bytes, controller_id: bytes, node_id: bytes, rn_i: bytes
) -> tuple[int, bytes]:
    """``(TID, RN_c)``."""
    check_frame(data, FlightType.F4_CHALLENGE, C4_SIZE, COMPACT)
    tid = _tid(data, 1)
    kind = FlightType.F4_CHALLENGE
    return tid, _open(kind, ik, controller_id, tid, data[5:], node_id + rn_i, COMPACT)


# --- flight 5 -------------------------------------------------------------------


def seal_compact_proof(
    psk: bytes, controller_id: bytes, tid: int, node_id: bytes, rn_c: bytes
) -> bytes:
    """A tag alone: ``RN_c`` is known to the controller and the server, so the proof
    authenticates it instead of carrying it."""
    _require("RN_c", rn_c, RN_SIZE)
    _require("ID_i", node_id, ID_SIZE)
    tag = _seal(FlightType.F5_PROOF, psk, controller_id, tid, b"", node_id + rn_c, COMPACT)
    return _hdr(FlightType.F5_PROOF) + struct.pack(">I", tid) + tag


def compact_proof_tid(data: bytes) -> int:
    check_frame(data, FlightType.F5_PROOF, C5_SIZE, COMPACT)
    return _tid(data, 1)


def check_compact_proof(
    data: bytes, psk: bytes, controller_id: bytes, tid: int, node_id: bytes, rn_c: bytes
) -> None:
    """Raises :class:`AuthenticationError` unless the holder of ``PSK_i`` saw ``RN_c``."""
    if compact_proof_tid(data) != tid:
        raise DecodeError(DecodeReason.BAD_VALUE, "flight 5 for another TID")
    kind = FlightType.F5_PROOF
    _open(kind, psk, controller_id, tid, data[5:], node_id + rn_c, COMPACT)


# --- flights 6 and 7 --------------------------------------------------------------


def seal_compact_confirm(sk_cs: bytes, controller_id: bytes, tid: int, proof: bytes) -> bytes:
    """Forwards flight 5's tag (its header and TID are flight 6's own)."""
    compact_proof_tid(proof)
    return _to_server(FlightType.F6_CONFIRM, sk_cs, controller_id, tid, proof[5:], COMPACT)


def open_compact_confirm(data: bytes, sk_cs: bytes) -> bytes:
    """Flight 5 as the node sent it, rebuilt from flight 6."""
    tid, tag = _from_controller(data, FlightType.F6_CONFIRM, sk_cs)
    return _hdr(FlightType.F5_PROOF) + struct.pack(">I", tid) + tag


def seal_compact_confirmed(sk_cs: bytes, controller_id: bytes, tid: int, node_id: bytes) -> bytes:
    tag = _seal(FlightType.F7_CONFIRMED, sk_cs, controller_id, tid, b"", node_id, COMPACT)
    return _hdr(FlightType.F7_CONFIRMED) + tag


def open_compact_confirmed(
    data: bytes, sk_cs: bytes, controller_id: bytes, tid: int, node_id: bytes
) -> None:
    check_frame(data, FlightType.F7_CONFIRMED, C7_SIZE, COMPACT)
    _open(FlightType.F7_CONFIRMED, sk_cs, controller_id, tid, data[1:], node_id, COMPACT)
