"""Deterministic bootstrap test vectors (``tests/vectors/bootstrap.json``).

A vector fixes every input that is normally random or clock-driven (IK, SK_cs,
the IDs, RN_i, RN_c, TID, TS) and records every flight byte for byte, so another
implementation can check itself against ours flight by flight.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from keystrap.protocol import ControllerState, InMemoryRepository, NodeState
from keystrap.simulation import Simulation
from keystrap.wire import COMPACT, VERSION, peek_type
from keystrap.wire.compact import derive_rn_c


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
