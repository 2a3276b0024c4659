"""Fuzz the flight decoders (flights 1-10) and the three state machines' inputs."""

import sys

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
        DecodeError,
        Flight1,
        Flight2,
        Flight4,
        Flight5,
        Flight6,
        RevocationList,
        RevocationQuery,
        open_flight3,
        open_flight7,
        peek_type,
    )


# The seeds (fuzz/seeds/wire) are sealed under these; imported after the
# instrumented modules, which it imports too.
from make_seeds import CID, KEY, NID  # noqa: E402



def one_input(data: bytes) -> None:
    for decode in (peek_type, Flight1.decode):
        try:
            decode(data)
        except DecodeError:
            pass
    for cls in (Flight2, Flight6):
        try:
            cls.decode(data).open(KEY)
        except DecodeError:
            pass
    for cls4 in (Flight4, Flight5):
        try:
            cls4.decode(data).open(KEY, CID, NID)
        except DecodeError:
            pass
    for opener in (open_flight3, open_flight7):
        try:
            opener(data, KEY, CID, 1, NID)
        except DecodeError:
            pass
    try:
        RevocationQuery.decode(data, KEY)
    except DecodeError:
        pass
    try:
        RevocationList.decode(data, KEY, CID, bytes(8))
    except DecodeError:
        pass
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
