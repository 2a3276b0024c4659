"""Strict framing of every flight: sizes, header, truncation, extension."""

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import pytest

from keystrap.wire import (
    COMPACT,
    FLIGHT_SIZES,
    VERSION,
    AuthenticationError,
    CompactFlight1,
    CompactFlight2,
    CompactFlight3,
    CompactFlight4,
    CompactFlight5,
    CompactFlight6,
    CompactFlight7,
    CompactFlight11,
    DecodeError,
    DecodeReason,
    Flight,
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
    FlightType,
    RefusalReason,
    flight_class,
    peek_type,
)
from keystrap.wire import FLIGHTS as TABLE

from .conftest import load_vectors

VECTOR = load_vectors("bootstrap.json")[0]
FLIGHTS = {FlightType(int(k)): bytes.fromhex(v) for k, v in VECTOR["flights"].items()}
VECTOR_TYPES = list(FLIGHTS)
SK_CS = bytes.fromhex(VECTOR["SK_cs"])
CID = bytes.fromhex(VECTOR["ID_c"])
NID = bytes.fromhex(VECTOR["ID_i"])
TID = VECTOR["TID"]


def decode(kind: FlightType, data: bytes) -> object:
    """The strict, keyless part of each flight's decoder."""
    if kind is FlightType.F1_HELLO:
        return Flight1.decode(data)
    if kind is FlightType.F2_REQUEST:
        return Flight2.peek_tid(data)
    if kind is FlightType.F3_GRANT:
        return Flight3.open(data, SK_CS, controller_id=CID, tid=TID, node_id=NID)
    if kind is FlightType.F4_CHALLENGE:
        return Flight4.peek_tid(data)
    if kind is FlightType.F5_PROOF:
        return Flight5.peek_tid(data)
    if kind is FlightType.F6_CONFIRM:
        return Flight6.peek_tid(data)
    return Flight7.open(data, SK_CS, controller_id=CID, tid=TID, node_id=NID)


def test_documented_sizes() -> None:
    assert {int(k): v for k, v in FLIGHT_SIZES.items()} == {
        1: 25,
        2: 66,
        3: 33,
        4: 45,
        5: 29,
        6: 50,
        7: 9,
        8: 78,
    }
    for kind, data in FLIGHTS.items():
        assert len(data) == FLIGHT_SIZES[kind]


@pytest.mark.parametrize("kind", VECTOR_TYPES)
def test_every_truncation_is_rejected(kind: FlightType) -> None:
    data = FLIGHTS[kind]
    for n in range(len(data)):
        with pytest.raises(DecodeError) as info:
            decode(kind, data[:n])
        assert info.value.reason is DecodeReason.TRUNCATED


@pytest.mark.parametrize("kind", VECTOR_TYPES)
def test_extra_bytes_are_rejected(kind: FlightType) -> None:
    with pytest.raises(DecodeError) as info:
        decode(kind, FLIGHTS[kind] + b"\x00")
    assert info.value.reason is DecodeReason.TOO_LONG


@pytest.mark.parametrize("kind", VECTOR_TYPES)
def test_wrong_version_and_wrong_type(kind: FlightType) -> None:
    data = FLIGHTS[kind]
    with pytest.raises(DecodeError) as info:
        decode(kind, bytes([0x20 | data[0] & 0x0F]) + data[1:])
    assert info.value.reason is DecodeReason.WRONG_VERSION
    other = FlightType.F1_HELLO if kind is not FlightType.F1_HELLO else FlightType.F5_PROOF
    with pytest.raises(DecodeError) as info:
        decode(kind, bytes([0x10 | other]) + data[1:])
    assert info.value.reason is DecodeReason.WRONG_TYPE


@pytest.mark.parametrize("first", [0x10, 0x1D, 0x1F])
def test_unknown_types(first: int) -> None:
    with pytest.raises(DecodeError) as info:
        peek_type(bytes([first]))
    assert info.value.reason is DecodeReason.WRONG_TYPE


def test_empty_input() -> None:
    with pytest.raises(DecodeError) as info:
        peek_type(b"")
    assert info.value.reason is DecodeReason.TRUNCATED


def test_encoders_refuse_wrong_field_sizes() -> None:
    with pytest.raises(ValueError):
        Flight1(bytes(7), bytes(16)).encode()
    with pytest.raises(ValueError):
        Flight1(bytes(8), bytes(15)).encode()


def test_flight8_round_trip_and_strictness() -> None:
    f4 = FLIGHTS[FlightType.F4_CHALLENGE]
    psk = bytes(range(16))
    sealed = Flight8(CID, TID, NID, psk, 7, f4).seal(SK_CS)
    assert len(sealed) == 78
    body = Flight8.open(sealed, SK_CS, controller_id=CID, tid=TID, node_id=NID)
    assert (body.psk, body.ts, body.tid, body.challenge) == (psk, 7, TID, f4)
    for n in range(len(sealed)):
        with pytest.raises(DecodeError):
            Flight8.open(sealed[:n], SK_CS, controller_id=CID, tid=TID, node_id=NID)
    with pytest.raises(DecodeError):
        Flight8.open(sealed, SK_CS, controller_id=CID, tid=TID + 1, node_id=NID)  # another tx


# -- one shape for every flight: the table, and each class's seal/open round trip ------

KEY = bytes(range(16, 32))
RN_I, RN_C = bytes(range(16)), bytes(range(100, 116))
KNOWN = {"controller_id": CID, "node_id": NID}


def _samples() -> list[tuple[Flight, Callable[[bytes], Flight]]]:
    """One instance of every class, and how its receiver reads it back."""
    f4 = Flight4(CID, TID, NID, RN_I, RN_C).seal(KEY)
    f5 = Flight5(CID, TID, NID, RN_C).seal(KEY)
    c5 = CompactFlight5(CID, TID, NID, RN_C).seal(KEY)
    return [
        (Flight1(NID, RN_I), Flight1.decode),
        (Flight2(CID, TID, 7, RN_C, Flight1(NID, RN_I)), lambda d: Flight2.open(d, KEY)),
        (Flight3(CID, TID, NID, KEY, 7), lambda d: Flight3.open(d, KEY, tid=TID, **KNOWN)),
        (Flight4(CID, TID, NID, RN_I, RN_C), lambda d: Flight4.open(d, KEY, **KNOWN)),
        (Flight5(CID, TID, NID, RN_C), lambda d: Flight5.open(d, KEY, **KNOWN)),
        (Flight6(CID, TID, f5), lambda d: Flight6.open(d, KEY)),
        (Flight7(CID, TID, NID), lambda d: Flight7.open(d, KEY, tid=TID, **KNOWN)),
        (Flight8(CID, TID, NID, KEY, 7, f4), lambda d: Flight8.open(d, KEY, tid=TID, **KNOWN)),
        (Flight9(CID, 3, bytes(8)), lambda d: Flight9.open(d, KEY)),
        (
            Flight10(bytes(8), 4, ((4, NID),)),
            lambda d: Flight10.open(d, KEY, controller_id=CID, challenge=bytes(8)),
        ),
        (Flight11(CID, TID, NID), lambda d: Flight11.open(d, KEY, **KNOWN)),
        (Flight12(NID, RefusalReason.REVOKED), Flight12.decode),
        (CompactFlight1(NID, RN_I), CompactFlight1.decode),
        (CompactFlight2(CID, TID, 7, NID, RN_I), lambda d: CompactFlight2.open(d, KEY)),
        (
            CompactFlight3(CID, TID, NID, 7, KEY),
            lambda d: CompactFlight3.open(d, KEY, tid=TID, ts=7, **KNOWN),
        ),
        (
            CompactFlight4(CID, TID, NID, RN_I, RN_C),
            lambda d: CompactFlight4.open(d, KEY, rn_i=RN_I, **KNOWN),
        ),
        (
            CompactFlight5(CID, TID, NID, RN_C),
            lambda d: CompactFlight5.open(d, KEY, rn_c=RN_C, **KNOWN),
        ),
        (CompactFlight6(CID, TID, c5), lambda d: CompactFlight6.open(d, KEY)),
        (CompactFlight7(CID, TID, NID), lambda d: CompactFlight7.open(d, KEY, tid=TID, **KNOWN)),
        (CompactFlight11(CID, TID, NID), lambda d: CompactFlight11.open(d, KEY, **KNOWN)),
    ]


@runtime_checkable
class _SealedUnderOneKey(Protocol):
    def seal(self, key: bytes, /) -> bytes: ...


def _send(flight: Flight) -> bytes:
    if isinstance(flight, Flight1 | Flight12):
        return flight.encode()
    if isinstance(flight, Flight10):
        return flight.seal(KEY, CID)
    assert isinstance(flight, _SealedUnderOneKey)
    return flight.seal(KEY)


def test_the_table_names_one_class_per_type_and_profile() -> None:
    assert set(TABLE[VERSION]) == set(FlightType)
    assert {int(k) for k in TABLE[COMPACT]} == {1, 2, 3, 4, 5, 6, 7, 11}
    classes = [cls for table in TABLE.values() for cls in table.values()]
    assert len(set(classes)) == len(classes) == len(_samples())
    for version, table in TABLE.items():
        for kind, cls in table.items():
            assert (kind, version) == (cls.TYPE, cls.PROFILE)
    with pytest.raises(DecodeError) as info:
        flight_class(bytes([COMPACT << 4 | FlightType.F8_SEALED_GRANT]))
    assert info.value.reason is DecodeReason.WRONG_TYPE


@pytest.mark.parametrize("index", range(len(_samples())))
def test_every_flight_round_trips_through_its_class(index: int) -> None:
    flight, read = _samples()[index]
    data = _send(flight)
    cls = type(flight)
    assert flight_class(data) is cls
    assert cls.matches(data) == (cls is not Flight10)  # 10 alone grows with its entries
    assert len(data) == cls.SIZE + (12 if cls is Flight10 else 0)
    assert read(data) == flight
    for n in range(len(data)):
        with pytest.raises(DecodeError):
            read(data[:n])
    if not isinstance(flight, Flight1 | Flight12):  # the others are authenticated
        with pytest.raises(AuthenticationError):
            read(data[:-1] + bytes([data[-1] ^ 1]))


def test_layouts_refuse_wrong_field_sizes_and_ranges() -> None:
    with pytest.raises(ValueError, match="ID_i"):
        Flight4(CID, TID, bytes(7), RN_I, RN_C).seal(KEY)
    with pytest.raises(ValueError, match="TS"):
        Flight3(CID, TID, NID, KEY, 2**32).seal(KEY)
    with pytest.raises(ValueError, match="RN_i"):
        CompactFlight2(CID, TID, 7, NID, bytes(17)).seal(KEY)
    with pytest.raises(ValueError, match="another transaction"):
        Flight6(CID, TID + 1, Flight5(CID, TID, NID, RN_C).seal(KEY)).seal(KEY)
