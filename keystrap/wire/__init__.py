"""Byte-exact codecs of the bootstrap flights (specified in ``docs/protocol.md``).

Every flight is fixed-length, starts with one header byte (version in the high
nibble, flight type in the low nibble) and is rejected with :class:`DecodeError`
on anything malformed. Sealed parts use AES-128-CCM_8 with the nonce
``type || ID_c || TID`` (see :mod:`keystrap.wire.nonce` for why it never repeats).
"""

from keystrap.wire.errors import AuthenticationError, DecodeError, DecodeReason
from keystrap.wire.flights import (
    FLIGHT_SIZES,
    Flight1,
    Flight2,
    Flight2Body,
    Flight3Body,
    Flight4,
    Flight5,
    Flight6,
    Flight8Body,
    open_flight3,
    open_flight7,
    open_flight8,
    seal_flight2,
    seal_flight3,
    seal_flight4,
    seal_flight5,
    seal_flight6,
    seal_flight7,
    seal_flight8,
    seal_flight11,
)
from keystrap.wire.header import COMPACT, VERSION, FlightType, peek_type, peek_version
from keystrap.wire.revocation import RevocationList, RevocationQuery
from keystrap.wire.sizes import ID_SIZE, RN_SIZE, TID_MAX, TS_MAX

__all__ = [
    "COMPACT",
    "FLIGHT_SIZES",
    "ID_SIZE",
    "RN_SIZE",
    "TID_MAX",
    "TS_MAX",
    "VERSION",
    "AuthenticationError",
    "DecodeError",
    "DecodeReason",
    "Flight1",
    "Flight2",
    "Flight2Body",
    "Flight3Body",
    "Flight4",
    "Flight5",
    "Flight6",
    "Flight8Body",
    "FlightType",
    "RevocationList",
    "RevocationQuery",
    "open_flight3",
    "open_flight7",
    "open_flight8",
    "peek_type",
    "peek_version",
    "seal_flight2",
    "seal_flight3",
    "seal_flight4",
    "seal_flight5",
    "seal_flight6",
    "seal_flight7",
    "seal_flight8",
    "seal_flight11",
]
