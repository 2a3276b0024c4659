"""Drive node, controller and server in one process over a virtual clock.

This is the protocol core's test bench and the in-process demo: messages travel
through one queue, each delivery may be dropped, duplicated or followed by a
crash of its recipient (a :data:`FaultPlan` decides), and every party's state is
snapshotted after each call exactly as the persistence rule demands, so that a
"restart" rebuilds the party from what it had stored.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar

from keystrap.protocol import (
    Controller,
    ControllerState,
    Event,
    InMemoryRepository,
    Node,
    NodeState,
    Reply,
    Server,
    ServerPolicy,
    ToNode,
    ToServer,
)
from keystrap.protocol.keys import RandomSource
from keystrap.protocol.node import CoreFactory, local_core
from keystrap.protocol.repository import KeyRepository
from keystrap.wire import VERSION


class Fault(Enum):
    NONE = "none"
    DROP = "drop"
    DUPLICATE = "duplicate"
    RESTART_RECIPIENT = "restart"  # deliver, then crash before sending the answer


@dataclass(frozen=True)
class Message:
    sender: str  # "node", "controller", "server"
    recipient: str
    data: bytes
    node_id: bytes
    tid: int | None = None
    reply: Reply | None = None  # set on server -> controller answers


FaultPlan = Callable[[int, Message], Fault]
"""Called with the delivery's index (0, 1, ...) and the message."""


def no_faults(_index: int, _message: Message) -> Fault:
    return Fault.NONE


@dataclass
class Trace:
    """What happened, for printing and assertions."""

    deliveries: list[tuple[float, Message, Fault]] = field(default_factory=list)
    events: list[tuple[float, str, Event]] = field(default_factory=list)


R = TypeVar("R", bound=KeyRepository)


class Simulation(Generic[R]):
    """Generic in the server's repository, so a test can read the very store it gave."""

    def __init__(
        self,
        server_repository: R,
        controllers: dict[bytes, bytes],
        controller_state: ControllerState,
        node_states: Iterable[NodeState],
        rng: RandomSource,
        now: float = 1_700_000_000.0,
        policy: ServerPolicy | None = None,
        node_core: CoreFactory = local_core,
    ) -> None:
        """``node_core`` computes the nodes' flights (for example inside MicroPython)."""
        self.now = now
        self.rng = rng
        self.repository = server_repository
        self.controllers = controllers
        self.policy = policy or ServerPolicy()
        self.server = Server(server_repository, controllers, self.policy)
        self.controller_state = controller_state
        self.controller = Controller(controller_state, rng, window=self.policy.window)
        self.node_states = {s.node_id: s for s in node_states}
        self.node_core = node_core
        self.nodes = {nid: Node(s, rng, core=node_core) for nid, s in self.node_states.items()}
        self.queue: deque[Message] = deque()
        self.trace = Trace()
        self.deliveries = 0

    # -- driving -----------------------------------------------------------------

    def start(self, node_id: bytes) -> None:
        self.nodes[node_id].start(self.now)
        self._collect_node(node_id)

    def run(
        self,
        faults: FaultPlan = no_faults,
        max_steps: int = 10_000,
        after_delivery: Callable[[int, Message], None] | None = None,
        until: float | None = None,
    ) -> None:
        """Deliver messages and fire timers until nothing is left to do.

        ``after_delivery(index, message)`` runs after each delivery, for example to
        :meth:`restart` a party at that point. ``until`` stops the virtual clock
        (a node keeps repeating flight 1 for as long as nobody answers).
        """
        for _ in range(max_steps):
            if self.queue:
                message = self.queue.popleft()
                self._deliver(message, faults)
                if after_delivery is not None:
                    after_delivery(self.deliveries - 1, message)
                continue
            due = self._next_timer()
            if due is None or (until is not None and due > until):
                return
            self.now = max(self.now, due)
            self.controller.handle_timer(self.now)
            self._collect_controller()
            for node_id, node in self.nodes.items():
                node.handle_timer(self.now)
                self._collect_node(node_id)
        raise RuntimeError("simulation did not settle")

    def restart(self, party: str, node_id: bytes | None = None) -> None:
        """Rebuild a party from its persisted state (in-memory timers and queues lost)."""
        if party == "server":
            self.server = Server(self.repository, self.controllers, self.policy)
        elif party == "controller":
            self.controller = Controller(self.controller_state, self.rng, window=self.policy.window)
        else:
            assert node_id is not None
            self.nodes[node_id] = Node(self.node_states[node_id], self.rng, core=self.node_core)

    # -- internals ---------------------------------------------------------------

    def _next_timer(self) -> float | None:
        timers = [self.controller.get_timer()] + [n.get_timer() for n in self.nodes.values()]
        present = [t for t in timers if t is not None]
        return min(present, default=None)

    def _deliver(self, message: Message, faults: FaultPlan) -> None:
        fault = faults(self.deliveries, message)
        self.deliveries += 1
        self.trace.deliveries.append((self.now, message, fault))
        if fault is Fault.DROP:
            return
        copies = 2 if fault is Fault.DUPLICATE else 1
        for _ in range(copies):
            self._hand_over(message)
        if fault is Fault.RESTART_RECIPIENT:
            self._discard_outputs_of(message.recipient, message.node_id)
            self.restart(message.recipient, message.node_id)

    def _hand_over(self, message: Message) -> None:
        if message.recipient == "server":
            reply = self.server.handle(message.data, self.now)
            if reply.event is not None:
                self.trace.events.append((self.now, "server", reply.event))
            assert message.tid is not None
            self.queue.append(
                Message("server", "controller", reply.payload, message.node_id, message.tid, reply)
            )
        elif message.recipient == "controller":
            if message.reply is not None:
                assert message.tid is not None
                self.controller.receive_from_server(message.tid, message.reply, self.now)
            else:
                self.controller.receive_from_node(message.data, self.now)
            self._collect_controller()
        elif (node := self.nodes.get(message.node_id)) is not None:
            node.receive(message.data, self.now)
            # else: addressed to a node ID that no device here has (a damaged flight 1
            # named it): like an out-of-band frame nobody is in front of, it is lost.
            self._collect_node(message.node_id)

    def _discard_outputs_of(self, party: str, node_id: bytes) -> None:
        """A crash after persisting but before transmitting loses what was queued."""
        self.queue = deque(
            m
            for m in self.queue
            if not (m.sender == party and (party != "node" or m.node_id == node_id))
        )

    def _collect_controller(self) -> None:
        self.controller_state = self.controller.state  # persisted before sending
        for out in self.controller.data_to_send():
            if isinstance(out, ToServer):
                node_id = self.controller_state.transactions[out.tid].node_id
                self.queue.append(Message("controller", "server", out.data, node_id, out.tid))
            elif isinstance(out, ToNode):
                self.queue.append(Message("controller", "node", out.data, out.node_id))
        while (event := self.controller.next_event()) is not None:
            self.trace.events.append((self.now, "controller", event))

    def _collect_node(self, node_id: bytes) -> None:
        node = self.nodes[node_id]
        self.node_states[node_id] = node.state  # persisted before sending
        for data in node.data_to_send():
            self.queue.append(Message("node", "controller", data, node_id))
        while (event := node.next_event()) is not None:
            self.trace.events.append((self.now, "node", event))


def one_bootstrap(
    controller_id: bytes,
    sk_cs: bytes,
    node_id: bytes,
    ik: bytes,
    rng: RandomSource,
    *,
    version: int = VERSION,
    now: float = 1_700_000_000.0,
) -> Simulation[InMemoryRepository]:
    """A fresh site for a single bootstrap: one node enrolled with ``ik`` at a server
    that knows one controller by ``sk_cs``."""
    repository = InMemoryRepository()
    repository.enroll(node_id, ik)
    return Simulation(
        repository,
        {controller_id: sk_cs},
        ControllerState(controller_id, sk_cs),
        [NodeState(node_id, controller_id, ik, version=version)],
        rng,
        now=now,
    )
