"""The table from header byte to flight class, for everything that dispatches on it.

=====  ==========================  =======================  ======================
type   FlightType                  profile 1 (paper)        profile 2 (compact)
=====  ==========================  =======================  ======================
1      F1_HELLO                    Flight1                  CompactFlight1
2      F2_REQUEST                  Flight2                  CompactFlight2
3      F3_GRANT                    Flight3                  CompactFlight3
4      F4_CHALLENGE                Flight4                  CompactFlight4
5      F5_PROOF                    Flight5                  CompactFlight5
6      F6_CONFIRM                  Flight6                  CompactFlight6
7      F7_CONFIRMED                Flight7                  CompactFlight7
8      F8_SEALED_GRANT             Flight8                  --
9      F9_REVOCATION_QUERY         Flight9                  --
10     F10_REVOCATION_LIST         Flight10                 --
11     F11_NODE_CONFIRMED          Flight11                 CompactFlight11
12     F12_REFUSED                 Flight12                 --
=====  ==========================  =======================  ======================
"""

from __future__ import annotations

from collections.abc import Mapping

from keystrap.wire.compact import (
    CompactFlight1,
    CompactFlight2,
    CompactFlight3,
    CompactFlight4,
    CompactFlight5,
    CompactFlight6,
    CompactFlight7,
    CompactFlight11,
)
from keystrap.wire.errors import DecodeError, DecodeReason
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
from keystrap.wire.layout import Flight
from keystrap.wire.refusal import Flight12
from keystrap.wire.revocation import Flight9, Flight10

_CLASSES: tuple[type[Flight], ...] = (
    Flight1,
    Flight2,
    Flight3,
    Flight4,
    Flight5,
    Flight6,
    Flight7,
    Flight8,
    Flight9,
    Flight10,
    Flight11,
    Flight12,
    CompactFlight1,
    CompactFlight2,
    CompactFlight3,
    CompactFlight4,
    CompactFlight5,
    CompactFlight6,
    CompactFlight7,
    CompactFlight11,
)

FLIGHTS: Mapping[int, Mapping[FlightType, type[Flight]]] = {
    profile: {cls.TYPE: cls for cls in _CLASSES if profile == cls.PROFILE}
    for profile in (VERSION, COMPACT)
}
"""Profile (the header's high nibble), then flight type, to the flight's class."""

FLIGHT_SIZES: Mapping[FlightType, int] = {
    kind: cls.SIZE
    for kind, cls in FLIGHTS[VERSION].items()
    if kind < FlightType.F9_REVOCATION_QUERY
}
"""The bootstrap's flights 1-8 in the paper's profile, as docs/protocol.md lists them."""

COMPACT_SIZES: Mapping[FlightType, int] = {
    kind: cls.SIZE for kind, cls in FLIGHTS[COMPACT].items() if kind < FlightType.F8_SEALED_GRANT
}
"""The compact profile's bootstrap flights 1-7."""


_BY_HEADER: Mapping[int, type[Flight]] = {cls.header()[0]: cls for cls in _CLASSES}


def flight_class(data: bytes) -> type[Flight]:
    """The class that reads ``data``, from its header alone (not its length)."""
    if data and (known := _BY_HEADER.get(data[0])) is not None:
        return known  # every request takes this path: one lookup, no enum made
    version = peek_version(data)  # the refusal, saying what is wrong
    kind = peek_type(data, version)
    cls = FLIGHTS[version].get(kind)
    if cls is None:
        raise DecodeError(
            DecodeReason.WRONG_TYPE, f"flight {int(kind)} has no form in profile {version}"
        )
    return cls
