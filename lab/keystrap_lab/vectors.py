"""Deterministic bootstrap test vectors (``tests/vectors/bootstrap.json``).

A vector fixes every input that is normally random or clock-driven (IK, SK_cs,
the IDs, RN_i, RN_c, TID, TS) and records every flight byte for byte, so another
implementation can check itself against ours flight by flight.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from keystrap.protocol import ControllerState, InMemoryRepository, NodeState
from keystrap.wire import COMPACT, VERSION, peek_type
from keystrap.wire.compact import derive_rn_c
from keystrap_lab.simulation import Simulation


@dataclass(frozen=True)
class VectorInputs:
    ik: bytes
    sk_cs: bytes
    node_id: bytes
    controller_id: bytes
    rn_i: bytes
    rn_c: bytes
    tid: int
    ts: int


INPUTS = [
    VectorInputs(
        ik=bytes.fromhex("000102030405060708090a0b0c0d0e0f"),
        sk_cs=bytes.fromhex("101112131415161718191a1b1c1d1e1f"),
        node_id=bytes.fromhex("0200000000000001"),
        controller_id=bytes.fromhex("02000000000000c0"),
        rn_i=bytes.fromhex("a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"),
        rn_c=bytes.fromhex("b0b1b2b3b4b5b6b7b8b9babbbcbdbebf"),
        tid=1,
        ts=1_767_225_600,
    ),
    VectorInputs(
        ik=bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c"),
        sk_cs=bytes.fromhex("c0c1c2c3c4c5c6c7c8c9cacbcccdcecf"),
        node_id=bytes.fromhex("00124b0001020304"),
        controller_id=bytes.fromhex("00124b00ffffff01"),
        rn_i=bytes.fromhex("ffffffffffffffffffffffffffffffff"),
        rn_c=bytes.fromhex("00000000000000000000000000000000"),
        tid=4_294_967_295,
        ts=1_800_000_000,
    ),
    VectorInputs(
        ik=bytes.fromhex("00000000000000000000000000000000"),
        sk_cs=bytes.fromhex("ffeeddccbbaa99887766554433221100"),
        node_id=bytes.fromhex("a4c138fffe0b1e2d"),
        controller_id=bytes.fromhex("a4c138fffe000001"),
        rn_i=bytes.fromhex("3243f6a8885a308d313198a2e0370734"),
        rn_c=bytes.fromhex("3243f6a8885a308d313198a2e0370734"),
        tid=65_536,
        ts=4_000_000_000,
    ),
]
"""The inputs of tests/vectors/bootstrap.json (and, with ``RN_c`` derived, of
compact.json): fixed, chosen to include a zero key byte, an all-ones random and a
TID near the top of its range."""


def run_vector(inputs: VectorInputs, version: int = VERSION) -> dict[str, object]:
    """Run one whole bootstrap on fixed inputs; return the vector as JSON-ready data.

    ``version`` 2 is the compact profile, where ``RN_c`` is derived, not drawn:
    ``inputs.rn_c`` must then be the derived value."""
    compact = version == COMPACT
    if compact and inputs.rn_c != derive_rn_c(inputs.sk_cs, inputs.controller_id, inputs.tid):
        raise ValueError("compact profile: RN_c must be derive_rn_c(SK_cs, ID_c, TID)")
    randoms: Iterator[bytes] = iter([inputs.rn_i] if compact else [inputs.rn_i, inputs.rn_c])

    def rng(n: int) -> bytes:
        value = next(randoms)
        assert len(value) == n
        return value

    repository = InMemoryRepository()
    repository.enroll(inputs.node_id, inputs.ik)
    sim = Simulation(
        repository,
        {inputs.controller_id: inputs.sk_cs},
        ControllerState(inputs.controller_id, inputs.sk_cs, next_tid=inputs.tid),
        [NodeState(inputs.node_id, inputs.controller_id, inputs.ik, version=version)],
        rng,
        now=float(inputs.ts),
    )
    sim.start(inputs.node_id)
    sim.run()
    flights: dict[str, str] = {}
    for _, message, _ in sim.trace.deliveries:
        flights.setdefault(str(int(peek_type(message.data, version))), message.data.hex())
    node = sim.node_states[inputs.node_id]
    assert node.session_key is not None
    profile: dict[str, object] = {"version": version} if compact else {}
    return {
        **profile,
        "IK": inputs.ik.hex(),
        "SK_cs": inputs.sk_cs.hex(),
        "ID_i": inputs.node_id.hex(),
        "ID_c": inputs.controller_id.hex(),
        "RN_i": inputs.rn_i.hex(),
        "RN_c": inputs.rn_c.hex(),
        "TID": inputs.tid,
        "TS": inputs.ts,
        "PSK": node.key.hex(),
        "SK_i": node.session_key.hex(),
        "flights": dict(sorted(flights.items())),
    }


def inputs_from_vector(vector: dict[str, object]) -> VectorInputs:
    def hexfield(name: str) -> bytes:
        value = vector[name]
        assert isinstance(value, str)
        return bytes.fromhex(value)

    tid, ts = vector["TID"], vector["TS"]
    assert isinstance(tid, int) and isinstance(ts, int)
    return VectorInputs(
        ik=hexfield("IK"),
        sk_cs=hexfield("SK_cs"),
        node_id=hexfield("ID_i"),
        controller_id=hexfield("ID_c"),
        rn_i=hexfield("RN_i"),
        rn_c=hexfield("RN_c"),
        tid=tid,
        ts=ts,
    )
