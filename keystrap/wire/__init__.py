"""Byte-exact codecs of the bootstrap flights (specified in ``docs/protocol.md``).

One class per flight and profile, all with one shape (:class:`Flight`): a
frozen dataclass holding every field of the flight, built with ``seal(key)``
and read with the classmethod ``open(data, key, **known)`` when authenticated,
with ``encode()`` / ``decode(data)`` when not (flights 1 and 12). Flights 2, 6
and 9 name their controller in the clear (``peek_controller``), flights 4 and 5
their transaction (``peek_tid``), so the receiver can find the key first.
:data:`FLIGHTS` maps profile and :class:`FlightType` to the class.

Every flight starts with one header byte (version in the high nibble, flight
type in the low nibble), its layout is declared once (:class:`Layout`, a
``struct.Struct``), and anything malformed is rejected with
:class:`DecodeError`. Sealed parts use AES-128-CCM_8 with the nonce ``type ||
ID_c || TID`` (see :mod:`keystrap.wire.nonce` for why it never repeats).
"""

from keystrap.wire.compact import (
    CompactFlight1,
    CompactFlight2,
    CompactFlight3,
    CompactFlight4,
    CompactFlight5,
    CompactFlight6,
    CompactFlight7,
    CompactFlight11,
    derive_rn_c,
)
from keystrap.wire.errors import AuthenticationError, DecodeError, DecodeReason
from keystrap.wire.flights import (
    Flight1,
    Flight2,
    Flight3,
    Flight4,
    Flight5,
    Flight6,
    Flight7,
    Flight8,
    Flight11,
)
from keystrap.wire.header import COMPACT, VERSION, FlightType, peek_type, peek_version
from keystrap.wire.layout import Flight, Layout
from keystrap.wire.refusal import Flight12, RefusalReason
from keystrap.wire.revocation import Flight9, Flight10
from keystrap.wire.sizes import ID_SIZE, RN_SIZE, TID_MAX, TS_MAX
from keystrap.wire.table import COMPACT_SIZES, FLIGHT_SIZES, FLIGHTS, flight_class

__all__ = [
    "COMPACT",
    "COMPACT_SIZES",
    "FLIGHTS",
    "FLIGHT_SIZES",
    "ID_SIZE",
    "RN_SIZE",
    "TID_MAX",
    "TS_MAX",
    "VERSION",
    "AuthenticationError",
    "CompactFlight1",
    "CompactFlight2",
    "CompactFlight3",
    "CompactFlight4",
    "CompactFlight5",
    "CompactFlight6",
    "CompactFlight7",
    "CompactFlight11",
    "DecodeError",
    "DecodeReason",
    "Flight",
    "Flight1",
    "Flight2",
    "Flight3",
    "Flight4",
    "Flight5",
    "Flight6",
    "Flight7",
    "Flight8",
    "Flight9",
    "Flight10",
    "Flight11",
    "Flight12",
    "FlightType",
    "Layout",
    "RefusalReason",
    "derive_rn_c",
    "flight_class",
    "peek_type",
    "peek_version",
]
