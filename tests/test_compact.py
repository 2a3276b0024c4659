"""The compact profile (wire version 2): vectors, the node core against them, an
outside AES-CCM library against the spec, and clear refusals where it is not spoken."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from keystrap.crypto import aes_encrypt_block
from keystrap.metrics import flight_label
from keystrap.nodecore import MinimalNode, NodeCoreError
from keystrap.protocol import (
    ControllerState,
    InMemoryRepository,
    NodeState,
    Server,
    ServerPolicy,
    Status,
)
from keystrap.protocol.events import BootstrapConfirmed, TransactionFailed
from keystrap.wire import (
    COMPACT,
    COMPACT_SIZES,
    FLIGHT_SIZES,
    VERSION,
    CompactFlight3,
    CompactFlight4,
    CompactFlight5,
    CompactFlight7,
    CompactFlight11,
    DecodeError,
    Flight11,
    FlightType,
)
from keystrap_lab.simulation import Simulation
from keystrap_lab.vectors import inputs_from_vector, run_vector

from .conftest import CONTROLLER_ID, load_vectors, node_id

VECTORS = load_vectors("compact.json")
PAPER = load_vectors("bootstrap.json")


def test_out_of_band_flights_fit_in_70_bytes_and_in_band_shrinks() -> None:
    oob = (FlightType.F1_HELLO, FlightType.F4_CHALLENGE, FlightType.F5_PROOF)
    in_band = (FlightType.F2_REQUEST, FlightType.F3_GRANT, FlightType.F6_CONFIRM)
    assert sum(COMPACT_SIZES[k] for k in oob) <= 70 < sum(FLIGHT_SIZES[k] for k in oob)
    assert sum(COMPACT_SIZES[k] for k in in_band) < sum(FLIGHT_SIZES[k] for k in in_band)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["ID_i"])
def test_vector_recomputes_byte_for_byte(vector: dict[str, object]) -> None:
    assert vector["version"] == COMPACT
    assert run_vector(inputs_from_vector(vector), COMPACT) == vector
    flights = vector["flights"]
    assert isinstance(flights, dict)
    assert {int(k): len(v) // 2 for k, v in flights.items()} == dict(COMPACT_SIZES)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["ID_i"])
def test_flights_4_and_5_by_an_outside_ccm(vector: dict[str, object]) -> None:
    """What the spec says, checked with another CCM: flight 4 opens under IK with
    RN_i as context; flight 5 is the tag under PSK over RN_c as context."""
    h = {k: bytes.fromhex(str(vector[k])) for k in ("IK", "PSK", "ID_i", "ID_c", "RN_i", "RN_c")}
    flights = vector["flights"]
    assert isinstance(flights, dict)
    f4, f5 = bytes.fromhex(flights["4"]), bytes.fromhex(flights["5"])
    tid = f4[1:5]
    aad4 = f4[:1] + h["ID_c"] + tid + h["ID_i"] + h["RN_i"]
    assert AESCCM(h["IK"], 8).decrypt(b"\x04" + h["ID_c"] + tid, f4[5:], aad4) == h["RN_c"]
    aad5 = f5[:1] + h["ID_c"] + tid + h["ID_i"] + h["RN_c"]
    assert AESCCM(h["PSK"], 8).encrypt(b"\x05" + h["ID_c"] + tid, b"", aad5) == f5[5:]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["ID_i"])
def test_node_core_answers_the_vector(vector: dict[str, object]) -> None:
    h = {k: bytes.fromhex(str(vector[k])) for k in ("IK", "ID_i", "ID_c", "RN_i")}
    flights = vector["flights"]
    assert isinstance(flights, dict)
    node = MinimalNode(h["ID_i"], h["ID_c"], h["IK"], aes_encrypt_block, version=COMPACT)
    assert node.hello(h["RN_i"]).hex() == flights["1"]
    assert node.answer(bytes.fromhex(flights["4"])).hex() == flights["5"]
    assert (node.key.hex(), node.session_key.hex()) == (vector["PSK"], vector["SK_i"])


@pytest.mark.parametrize(("version", "other"), [(VERSION, VECTORS[0]), (COMPACT, PAPER[0])])
def test_node_refuses_a_flight_4_of_another_profile(version: int, other: dict[str, str]) -> None:
    h = {k: bytes.fromhex(other[k]) for k in ("IK", "ID_i", "ID_c", "RN_i")}
    node = MinimalNode(h["ID_i"], h["ID_c"], h["IK"], aes_encrypt_block, version=version)
    node.hello(h["RN_i"])
    with pytest.raises(NodeCoreError, match=f"profile version {version}"):
        node.answer(bytes.fromhex(other["flights"]["4"]))  # type: ignore[index]
    assert node.key == h["IK"]


def _simulation(
    policy: ServerPolicy, version: int
) -> tuple[Simulation[InMemoryRepository], InMemoryRepository]:
    ik, sk_cs = secrets.token_bytes(16), secrets.token_bytes(16)
    repository = InMemoryRepository()
    repository.enroll(node_id(1), ik)
    sim = Simulation(
        repository,
        {CONTROLLER_ID: sk_cs},
        ControllerState(CONTROLLER_ID, sk_cs),
        [NodeState(node_id(1), CONTROLLER_ID, ik, version=version)],
        secrets.token_bytes,
        policy=policy,
    )
    return sim, repository


def test_compact_bootstrap_keys_all_three_parties() -> None:
    sim, repository = _simulation(ServerPolicy(), COMPACT)
    sim.start(node_id(1))
    sim.run()
    assert any(isinstance(e, BootstrapConfirmed) for _, _, e in sim.trace.events)
    node = sim.node_states[node_id(1)]
    assert repository.nodes[node_id(1)].key == node.key
    sizes = [len(m.data) for _, m, _ in sim.trace.deliveries]
    assert sizes == [25, 49, 25, 29, 13, 29, 9]


@pytest.mark.parametrize(
    ("policy", "why"),
    [(ServerPolicy(compact=False), "off"), (ServerPolicy(hardened=True), "hardened")],
)
def test_server_that_does_not_speak_compact_refuses_with_its_own_code(
    policy: ServerPolicy, why: str
) -> None:
    sim, repository = _simulation(policy, COMPACT)
    sim.start(node_id(1))
    sim.run(until=sim.now + 200)
    replies = [m.reply for _, m, _ in sim.trace.deliveries if m.reply is not None]
    assert replies and all(r.status is Status.UNSUPPORTED_PROFILE for r in replies)
    assert all("compact profile (version 2)" in r.reason and why in r.reason for r in replies)
    failed = [e for _, _, e in sim.trace.events if isinstance(e, TransactionFailed)]
    assert failed and "4.06" in failed[0].reason
    assert repository.transactions == {}


def test_every_bit_flip_of_compact_flights_2_and_6_is_refused() -> None:
    vector = VECTORS[0]
    flights = vector["flights"]
    assert isinstance(flights, dict)
    inputs = inputs_from_vector(vector)
    for number in ("2", "6"):
        original = bytes.fromhex(flights[number])
        for bit in range(len(original) * 8):
            repository = InMemoryRepository()
            repository.enroll(inputs.node_id, inputs.ik)
            server = Server(repository, {inputs.controller_id: inputs.sk_cs})
            flipped = bytearray(original)
            flipped[bit // 8] ^= 1 << (bit % 8)
            reply = server.handle(bytes(flipped), float(inputs.ts))
            assert reply.status is not Status.OK, (number, bit)
            assert repository.transactions == {}


def _openers(vector: dict[str, object]) -> dict[str, Callable[[bytes], object]]:
    h = {k: bytes.fromhex(str(vector[k])) for k in ("IK", "SK_cs", "PSK", "ID_i", "ID_c")}
    rn_i, rn_c = bytes.fromhex(str(vector["RN_i"])), bytes.fromhex(str(vector["RN_c"]))
    tid, ts = int(str(vector["TID"])), int(str(vector["TS"]))
    cid, nid = h["ID_c"], h["ID_i"]
    return {
        "3": lambda d: CompactFlight3.open(
            d, h["SK_cs"], controller_id=cid, tid=tid, node_id=nid, ts=ts
        ),
        "4": lambda d: CompactFlight4.open(d, h["IK"], controller_id=cid, node_id=nid, rn_i=rn_i),
        "5": lambda d: CompactFlight5.open(d, h["PSK"], controller_id=cid, node_id=nid, rn_c=rn_c),
        "7": lambda d: CompactFlight7.open(d, h["SK_cs"], controller_id=cid, tid=tid, node_id=nid),
    }


@pytest.mark.parametrize("number", ["3", "4", "5", "7"])
def test_every_bit_flip_of_the_other_compact_flights_is_refused(number: str) -> None:
    vector = VECTORS[1]
    flights = vector["flights"]
    assert isinstance(flights, dict)
    opener = _openers(vector)[number]
    original = bytes.fromhex(flights[number])
    opener(original)
    for bit in range(len(original) * 8):
        flipped = bytearray(original)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(DecodeError):
            opener(bytes(flipped))


def test_compact_node_takes_a_compact_flight_11_only() -> None:
    vector = VECTORS[0]
    flights = vector["flights"]
    assert isinstance(flights, dict)
    h = {k: bytes.fromhex(str(vector[k])) for k in ("IK", "ID_i", "ID_c", "RN_i", "SK_i")}
    node = MinimalNode(h["ID_i"], h["ID_c"], h["IK"], aes_encrypt_block, version=COMPACT)
    node.hello(h["RN_i"])
    f4 = bytes.fromhex(flights["4"])
    node.answer(f4)
    tid = CompactFlight4.peek_tid(f4)
    node.confirm(CompactFlight11(h["ID_c"], tid, h["ID_i"]).seal(h["SK_i"]))
    with pytest.raises(NodeCoreError):
        node.confirm(Flight11(h["ID_c"], tid, h["ID_i"]).seal(h["SK_i"]))


def test_metrics_name_the_flights_of_either_profile() -> None:
    for vector in (PAPER[0], VECTORS[0]):
        flights = vector["flights"]
        assert isinstance(flights, dict)
        assert {n: flight_label(bytes.fromhex(f)) for n, f in flights.items()} == {
            n: n for n in flights
        }
    assert flight_label(bytes([0x31]) + bytes(24)) == "invalid"
