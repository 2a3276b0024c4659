"""The header byte: protocol version in the high nibble, flight type in the low nibble.

One byte rather than two because flights 1, 4 and 5 travel over audio and light,
where every byte costs air time; sixteen versions and sixteen types are plenty.
"""

from enum import IntEnum

from keystrap.wire.errors import DecodeError, DecodeReason

VERSION = 1  # the paper's flights
COMPACT = 2  # the compact profile (keystrap.wire.compact): fewer bytes, same properties
VERSIONS = (VERSION, COMPACT)


class FlightType(IntEnum):
    F1_HELLO = 1  # SBI -> SBR, out of band: ID_i, RN_i
    F2_REQUEST = 2  # SBR -> SBS, CoAP: sealed TS, RN_c, flight 1
    F3_GRANT = 3  # SBS -> SBR, CoAP: sealed IK_i, TS, TID
    F4_CHALLENGE = 4  # SBR -> SBI, out of band: TID, sealed RN_i, RN_c
    F5_PROOF = 5  # SBI -> SBR, out of band: TID, sealed RN_c under PSK_i
    F6_CONFIRM = 6  # SBR -> SBS, CoAP: sealed flight 5 (our addition: no bricked node)
    F7_CONFIRMED = 7  # SBS -> SBR, CoAP: tag only (our addition)
    F8_SEALED_GRANT = 8  # SBS -> SBR, CoAP, hardened profile: sealed PSK_i, TS, TID, flight 4
    F9_REVOCATION_QUERY = 9  # SBR -> SBS, CoAP: "what was revoked after n?" (our addition)
    F10_REVOCATION_LIST = 10  # SBS -> SBR, CoAP: the answer, MAC'd under SK_cs
    F11_NODE_CONFIRMED = 11  # SBR -> SBI, out of band, after flight 7: TID, tag under SK_i
    F12_REFUSED = 12  # SBR -> SBI, out of band: ID_i, why the server refused (unauthenticated)


def header_byte(flight_type: FlightType, version: int = VERSION) -> bytes:
    return bytes([(version << 4) | flight_type])


def peek_version(data: bytes) -> int:
    """The profile a flight belongs to, if it is one this implementation speaks."""
    if not data:
        raise DecodeError(DecodeReason.TRUNCATED, "empty message")
    version = data[0] >> 4
    if version not in VERSIONS:
        raise DecodeError(
            DecodeReason.WRONG_VERSION, f"version {version}, this side speaks {VERSIONS}"
        )
    return version


def peek_type(data: bytes, version: int = VERSION) -> FlightType:
    """Read the header to dispatch a flight; checks the version, not the length."""
    if not data:
        raise DecodeError(DecodeReason.TRUNCATED, "empty message")
    found, kind = data[0] >> 4, data[0] & 0x0F
    if found != version:
        raise DecodeError(DecodeReason.WRONG_VERSION, f"version {found}, expected {version}")
    try:
        return FlightType(kind)
    except ValueError:
        raise DecodeError(DecodeReason.WRONG_TYPE, f"unknown flight type {kind}") from None


def check_frame(data: bytes, expected: FlightType, size: int, version: int = VERSION) -> None:
    """Strict check of header and exact length for a fixed-size flight."""
    kind = peek_type(data, version)
    if kind != expected:
        raise DecodeError(
            DecodeReason.WRONG_TYPE, f"flight {int(kind)} where flight {int(expected)} expected"
        )
    if len(data) < size:
        raise DecodeError(
            DecodeReason.TRUNCATED, f"flight {int(expected)} is {len(data)} bytes, needs {size}"
        )
    if len(data) > size:
        raise DecodeError(
            DecodeReason.TOO_LONG, f"flight {int(expected)} is {len(data)} bytes, needs {size}"
        )
