"""Strict framing of every flight: sizes, header, truncation, extension."""

import pytest

from keystrap.wire import (
    FLIGHT_SIZES,
    DecodeError,
    DecodeReason,
    Flight1,
    Flight2,
    Flight3,
    Flight4,
    Flight5,
    Flight6,
    Flight7,
    Flight8,
    FlightType,
    peek_type,
)

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
