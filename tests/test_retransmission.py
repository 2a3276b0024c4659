"""The controller paces the server (in band) and the node (out of band) differently."""

from __future__ import annotations

import itertools

from keystrap.protocol.timers import IN_BAND, Backoff
from keystrap.simulation import Fault, Message
from keystrap.wire import FlightType, peek_type

from .conftest import make_simulation, node_id


def _gaps(times: list[float]) -> list[float]:
    return [round(b - a, 6) for a, b in itertools.pairwise(times)]


def test_flight2_repeats_stay_at_the_in_band_cap_while_flight4_backs_off() -> None:
    sim = make_simulation()
    start = sim.now
    dropped: list[tuple[float, FlightType]] = []

    def plan(_index: int, message: Message) -> Fault:
        kind = peek_type(message.data) if message.data else None
        first_grant = kind is FlightType.F2_REQUEST and sim.now < start + 30
        if first_grant or kind is FlightType.F4_CHALLENGE:
            assert kind is not None
            dropped.append((sim.now, kind))
            return Fault.DROP
        return Fault.NONE

    sim.start(node_id(1))
    sim.run(plan, until=start + 70)
    requests = [t for t, k in dropped if k is FlightType.F2_REQUEST]
    challenges = [t for t, k in dropped if k is FlightType.F4_CHALLENGE]
    assert max(_gaps(requests)) == IN_BAND.maximum
    assert len(requests) > 30 / Backoff().maximum + 5
    assert max(_gaps(challenges)) > IN_BAND.maximum
