"""Random bytes, truncations and bit flips of every flight are rejected with the
typed error and leave every party's state as it was."""

import contextlib
import secrets
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keystrap.protocol import NodeStage, Reply, Status
from keystrap.wire import (
    DecodeError,
    Flight1,
    Flight2,
    Flight3,
    Flight4,
    Flight5,
    Flight6,
    Flight7,
    FlightType,
    peek_type,
)
from keystrap_lab.simulation import Fault

from .conftest import CONTROLLER_ID, make_simulation, node_id
from .stepper import Parties

SEALED = [k for k in FlightType if FlightType.F1_HELLO < k <= FlightType.F7_CONFIRMED]


def flip_every_bit(data: bytes) -> list[bytes]:
    out = []
    for i in range(len(data)):
        for bit in range(8):
            damaged = bytearray(data)
            damaged[i] ^= 1 << bit
            out.append(bytes(damaged))
    return out


@pytest.mark.parametrize("kind", SEALED, ids=lambda k: k.name)
def test_every_bit_flip_of_a_sealed_flight_is_rejected_without_state_change(
    kind: FlightType,
) -> None:
    p = Parties()
    genuine = p.run_until(kind)[kind]
    before = p.snapshot(kind)
    for damaged in flip_every_bit(genuine):
        answer = p.deliver(kind, damaged)
        if kind in (FlightType.F2_REQUEST, FlightType.F6_CONFIRM):
            assert p.last_reply is not None and p.last_reply.status is not Status.OK
        else:
            assert answer is None
        assert p.snapshot(kind) == before
    # The genuine flight still works afterwards: nothing was poisoned.
    if kind in (FlightType.F3_GRANT, FlightType.F7_CONFIRMED):
        p.last_reply = Reply(Status.OK, genuine)
    p.deliver(kind, genuine)
    assert p.snapshot(kind) != before


def test_flight1_bit_flips_never_change_a_key() -> None:
    """Flight 1 is plaintext (its integrity in transit is the OOB frame's job): a
    damaged one can start a useless transaction, but no key changes anywhere."""
    original = Parties().run_until(FlightType.F2_REQUEST)[FlightType.F1_HELLO]
    for damaged in flip_every_bit(original)[::7]:
        sim = make_simulation()
        ik = sim.repository.nodes[node_id(1)].key
        sim.start(node_id(1))
        sim.queue.clear()
        sim.controller.receive_from_node(damaged, sim.now)
        sim._collect_controller()
        # The node's own (genuine) flight 1 never gets through; only the damaged one did.
        drop_node = lambda _i, m: Fault.DROP if m.sender == "node" else Fault.NONE  # noqa: E731
        sim.run(drop_node, until=sim.now + 600)
        assert sim.repository.nodes[node_id(1)].key == ik
        assert sim.node_states[node_id(1)].stage is NodeStage.AWAITING_CHALLENGE


KNOWN = {"controller_id": CONTROLLER_ID, "node_id": node_id(1)}
DECODERS: dict[str, Callable[[bytes], object]] = {
    "peek_type": peek_type,
    "flight1": Flight1.decode,
    "flight2": lambda d: Flight2.open(d, bytes(16)),
    "flight3": lambda d: Flight3.open(d, bytes(16), tid=1, **KNOWN),
    "flight4": lambda d: Flight4.open(d, bytes(16), **KNOWN),
    "flight5": lambda d: Flight5.open(d, bytes(16), **KNOWN),
    "flight6": lambda d: Flight6.open(d, bytes(16)),
    "flight7": lambda d: Flight7.open(d, bytes(16), tid=1, **KNOWN),
}


@pytest.mark.parametrize("name", list(DECODERS))
@given(data=st.binary(max_size=80))
def test_random_bytes_raise_only_decode_error(name: str, data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        DECODERS[name](data)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200)
@given(data=st.binary(max_size=80))
def test_random_bytes_change_no_state_anywhere(data: bytes) -> None:
    p = Parties()
    p.run_until(FlightType.F4_CHALLENGE)
    node, controller = p.node.state, p.controller.state
    server = p.snapshot(FlightType.F2_REQUEST)
    p.node.receive(data, 0)
    p.controller.receive_from_node(data, 0)
    p.controller.receive_from_server(p.tid, Reply(Status.OK, data), 0)
    reply = p.server.handle(data, 1_700_000_000)
    assert reply.status is not Status.OK
    assert p.node.state == node and p.controller.state == controller
    assert p.snapshot(FlightType.F2_REQUEST) == server


@given(key=st.binary(min_size=16, max_size=16), data=st.binary(min_size=1, max_size=70))
def test_sealed_flights_with_random_bodies_fail_authentication(key: bytes, data: bytes) -> None:
    for kind in (FlightType.F2_REQUEST, FlightType.F6_CONFIRM):
        framed = bytes([0x10 | kind]) + (data * 70)[: {2: 65, 6: 49}[int(kind)]]
        with pytest.raises(DecodeError):
            (Flight2 if kind == 2 else Flight6).open(framed, key)


def test_unknown_flight_types_at_each_party_are_refused() -> None:
    p = Parties()
    flights = p.run_until()
    p.node.receive(flights[FlightType.F1_HELLO], 0)
    p.controller.receive_from_node(flights[FlightType.F4_CHALLENGE], 0)
    assert p.server.handle(flights[FlightType.F1_HELLO], 0).status is Status.BAD_REQUEST
    assert p.server.handle(secrets.token_bytes(66), 0).status is Status.BAD_REQUEST
