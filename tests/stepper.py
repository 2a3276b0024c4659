"""Drive one bootstrap flight by flight, so a test can intercept any flight."""

from __future__ import annotations

import copy
import secrets
from dataclasses import dataclass, field

from keystrap.protocol import (
    Controller,
    ControllerState,
    InMemoryRepository,
    Node,
    NodeState,
    Reply,
    Server,
    ToNode,
    ToServer,
)
from keystrap.wire import FlightType

from .conftest import CONTROLLER_ID, node_id

NOW = 1_700_000_000.0


@dataclass
class Parties:
    ik: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    sk_cs: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    nid: bytes = node_id(1)
    repository: InMemoryRepository = field(default_factory=InMemoryRepository)

    def __post_init__(self) -> None:
        self.repository.enroll(self.nid, self.ik)
        self.controllers = {CONTROLLER_ID: self.sk_cs}
        self.server = Server(self.repository, self.controllers)
        self.controller = Controller(
            ControllerState(CONTROLLER_ID, self.sk_cs), secrets.token_bytes
        )
        self.node = Node(NodeState(self.nid, CONTROLLER_ID, self.ik), secrets.token_bytes)
        self.tid = 0
        self.last_reply: Reply | None = None

    def snapshot(self, kind: FlightType) -> object:
        """The state of the party that receives flight ``kind``."""
        if kind in (FlightType.F2_REQUEST, FlightType.F6_CONFIRM):
            return copy.deepcopy((self.repository.nodes, self.repository.transactions))
        if kind is FlightType.F4_CHALLENGE:
            return self.node.state
        return self.controller.state

    def deliver(self, kind: FlightType, data: bytes, now: float = NOW) -> bytes | None:
        """Hand ``data`` to the recipient of flight ``kind``; return the answer flight."""
        if kind in (FlightType.F1_HELLO, FlightType.F5_PROOF):
            self.controller.receive_from_node(data, now)
            out = self.controller.data_to_send()
            requests = [o for o in out if isinstance(o, ToServer)]
            assert requests == out
            for request in requests:
                self.tid = request.tid
            return requests[0].data if requests else None
        if kind in (FlightType.F2_REQUEST, FlightType.F6_CONFIRM):
            self.last_reply = self.server.handle(data, now)
            return self.last_reply.payload
        if kind in (FlightType.F3_GRANT, FlightType.F7_CONFIRMED):
            assert self.last_reply is not None
            reply = Reply(self.last_reply.status, data, self.last_reply.reason)
            self.controller.receive_from_server(self.tid, reply, now)
            out = self.controller.data_to_send()
            to_node = [o for o in out if isinstance(o, ToNode)]
            assert to_node == out
            return to_node[0].data if to_node else None
        self.node.receive(data, now)
        sent = self.node.data_to_send()
        return sent[0] if sent else None

    def run_until(self, stop: FlightType | None = None) -> dict[FlightType, bytes]:
        """Run a clean bootstrap, returning each flight; stop *before* delivering ``stop``."""
        self.node.start(NOW)
        data = self.node.data_to_send()[0]
        flights: dict[FlightType, bytes] = {}
        for kind in FlightType:
            flights[kind] = data
            if kind is stop:
                return flights
            answer = self.deliver(kind, data)
            if answer is None:
                break
            data = answer
        return flights
