"""Fuzz every flight class's reader (both profiles) and the three state machines' inputs."""

import contextlib
import sys
from collections.abc import Callable

import atheris

with atheris.instrument_imports():
    from keystrap.protocol import (
        Controller,
        ControllerState,
        InMemoryRepository,
        Node,
        NodeState,
        Reply,
        Server,
        Status,
    )
    from keystrap.wire import (
        CompactFlight1,
        CompactFlight2,
        CompactFlight3,
        CompactFlight4,
        CompactFlight5,
        CompactFlight6,
        CompactFlight7,
        CompactFlight11,
        DecodeError,
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
        flight_class,
    )


# The seeds (fuzz/seeds/wire) are sealed under these; imported after the
# instrumented modules, which it imports too.
from make_seeds import CID, KEY, NID


def _readers() -> list[Callable[[bytes], object]]:
    """Every flight class's reader, opening with the keys the seeds are sealed under."""
    return [
        flight_class,
        Flight1.decode,
        CompactFlight1.decode,
        Flight12.decode,
        lambda d: Flight2.open(d, KEY),
        lambda d: Flight3.open(d, KEY, controller_id=CID, tid=1, node_id=NID),
        lambda d: Flight4.open(d, KEY, controller_id=CID, node_id=NID),
        lambda d: Flight5.open(d, KEY, controller_id=CID, node_id=NID),
        lambda d: Flight6.open(d, KEY),
        lambda d: Flight7.open(d, KEY, controller_id=CID, tid=1, node_id=NID),
        lambda d: Flight8.open(d, KEY, controller_id=CID, tid=1, node_id=NID),
        lambda d: Flight9.open(d, KEY),
        lambda d: Flight10.open(d, KEY, controller_id=CID, challenge=bytes(8)),
        lambda d: Flight11.open(d, KEY, controller_id=CID, node_id=NID),
        lambda d: CompactFlight2.open(d, KEY),
        lambda d: CompactFlight3.open(
            d, KEY, controller_id=CID, tid=1, node_id=NID, ts=1_700_000_000
        ),
        lambda d: CompactFlight4.open(d, KEY, controller_id=CID, node_id=NID, rn_i=bytes(16)),
        lambda d: CompactFlight5.open(d, KEY, controller_id=CID, node_id=NID, rn_c=bytes(16)),
        lambda d: CompactFlight6.open(d, KEY),
        lambda d: CompactFlight7.open(d, KEY, controller_id=CID, tid=1, node_id=NID),
        lambda d: CompactFlight11.open(d, KEY, controller_id=CID, node_id=NID),
    ]


READERS = _readers()


def one_input(data: bytes) -> None:
    for read in READERS:
        with contextlib.suppress(DecodeError):
            read(data)
    # The machines must absorb anything without raising.
    repo = InMemoryRepository()
    repo.enroll(NID, KEY)
    Server(repo, {CID: KEY}).handle(data, 1_700_000_000)
    controller = Controller(ControllerState(CID, KEY), lambda n: bytes(n))
    controller.receive_from_node(data, 0)
    controller.receive_from_server(1, Reply(Status.OK, data), 0)
    node = Node(NodeState(NID, CID, KEY), lambda n: bytes(n))
    node.start(0)
    node.receive(data, 0)


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
