"""SBI: the new node's stages, timers and retransmission around its core.

The flights themselves (1, 4 and 5, PSK_i and SK_i) are computed by the single
node implementation, :class:`keystrap.nodecore.MinimalNode`, or by anything with
its surface (:class:`NodeCore`), for example the same core running inside
MicroPython. This module adds what a host needs around it, sans-I/O:

    PROVISIONED --start--> AWAITING_CHALLENGE --valid flight 4--> KEYED
         ^                        |  (flight 1 re-sent on a timer)   |
         +-- (factory reset) -----+                                  +--start--> (re-install)

On a valid flight 4 the node derives ``PSK_i`` and ``SK_i`` and *replaces* its key:
``IK`` is gone from its state. It keeps its flight 5 and re-sends it whenever the
identical flight 4 arrives again, so a lost flight 5 is recovered by the
controller's retransmission of flight 4.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Protocol

from keystrap.crypto import aes_encrypt_block
from keystrap.nodecore import MinimalNode, NodeCoreError
from keystrap.protocol.events import Event, NodeConfirmed, NodeKeyed, Rejected
from keystrap.protocol.keys import RandomSource
from keystrap.protocol.timers import Backoff, Retransmission
from keystrap.wire import (
    COMPACT,
    RN_SIZE,
    VERSION,
    CompactFlight4,
    CompactFlight11,
    Flight4,
    Flight11,
)
from keystrap.wire.frozen import frozen


class NodeStage(Enum):
    PROVISIONED = "provisioned"
    AWAITING_CHALLENGE = "awaiting-challenge"
    KEYED = "keyed"


@frozen
class NodeState:
    """Everything the node must persist. ``key`` is IK before a bootstrap and PSK_i after."""

    node_id: bytes
    controller_id: bytes
    key: bytes
    stage: NodeStage = NodeStage.PROVISIONED
    rn_i: bytes | None = None
    tid: int | None = None
    session_key: bytes | None = None
    challenge: bytes | None = None  # the flight 4 answered, to recognise a duplicate
    proof: bytes | None = None  # our flight 5, re-sent on a duplicate flight 4
    version: int = VERSION  # the wire profile the node was ordered with (2: compact)


class NodeCore(Protocol):
    """The surface of :class:`~keystrap.nodecore.MinimalNode` that this wrapper drives.

    ``answer`` raises :class:`~keystrap.nodecore.NodeCoreError` on a flight 4 it
    refuses, leaving its attributes as they were.
    """

    key: bytes
    session_key: bytes
    rn_i: bytes
    flight4: bytes
    flight5: bytes

    def hello(self, rn_i: bytes) -> bytes: ...

    def answer(self, flight4: bytes) -> bytes: ...

    def confirm(self, flight11: bytes) -> None: ...


CoreFactory = Callable[[NodeState], NodeCore]
"""Builds the core from the persisted state before each call into it."""


def local_core(state: NodeState) -> NodeCore:
    """The core in this process, on the AES block function of ``cryptography``."""
    return MinimalNode(
        state.node_id,
        state.controller_id,
        state.key,
        aes_encrypt_block,
        rn_i=state.rn_i or b"",
        session_key=state.session_key or b"",
        flight4=state.challenge or b"",
        flight5=state.proof or b"",
        version=state.version,
    )


class Node:
    """The host's side of one node, sans-I/O. Every ``now`` it takes drives only
    its retransmission timer, so it is a monotonic clock (the node agent passes
    ``loop.time()``): the node makes and checks no timestamp."""

    ROLE = "node"

    def __init__(
        self,
        state: NodeState,
        rng: RandomSource,
        backoff: Backoff | None = None,
        core: CoreFactory = local_core,
    ) -> None:
        self.state = state
        self._rng = rng
        self._backoff = backoff or Backoff()
        self._core = core
        self._outgoing: list[bytes] = []
        self._events: list[Event] = []
        self._timer: Retransmission | None = None
        if state.stage is NodeStage.AWAITING_CHALLENGE:
            self._timer = Retransmission(due=0.0, interval=self._backoff.initial)

    # -- inputs ------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Begin (or, when already keyed, repeat: re-installation) a bootstrap.

        While a bootstrap is under way this re-sends the same flight 1: a new
        RN_i would orphan a flight 4 that may already be on its way.
        """
        if self.state.stage is not NodeStage.AWAITING_CHALLENGE:
            self.state = NodeState(
                node_id=self.state.node_id,
                controller_id=self.state.controller_id,
                key=self.state.key,
                stage=NodeStage.AWAITING_CHALLENGE,
                rn_i=self._rng(RN_SIZE),
                version=self.state.version,
            )
        self._send_hello(now)

    def resume(self, now: float) -> None:
        """After a restart: repeat whatever was last sent (flight 1, or the stored
        flight 5 so a controller still waiting for it can finish)."""
        if self.state.stage is NodeStage.AWAITING_CHALLENGE:
            self._send_hello(now)
        elif self.state.stage is NodeStage.KEYED and self.state.proof is not None:
            self._outgoing.append(self.state.proof)

    def receive(self, data: bytes, now: float) -> None:
        """Take one flight from the out-of-band channel: flight 4, or flight 11."""
        core = self._core(self.state)
        compact = self.state.version == COMPACT
        if data[:1] == (CompactFlight11 if compact else Flight11).header():
            self._confirm(core, data)
            return
        try:
            proof = core.answer(data)
        except NodeCoreError as exc:
            self._events.append(Rejected(self.ROLE, str(exc)))
            return
        self._outgoing.append(proof)
        if self.state.stage is NodeStage.KEYED:
            return  # the identical flight 4 again: the stored flight 5 is re-sent
        state = self.state
        tid = (CompactFlight4 if compact else Flight4).peek_tid(core.flight4)
        self.state = NodeState(
            node_id=state.node_id,
            controller_id=state.controller_id,
            key=core.key,
            stage=NodeStage.KEYED,
            tid=tid,
            session_key=core.session_key,
            challenge=core.flight4,
            proof=core.flight5,
            version=state.version,
        )
        self._timer = None
        self._events.append(NodeKeyed(state.node_id, tid))

    def handle_timer(self, now: float) -> None:
        timer = self._timer
        if timer is None or now < timer.due:
            return
        if self.state.stage is NodeStage.AWAITING_CHALLENGE:
            self._send_hello(now)

    # -- outputs -----------------------------------------------------------------

    def get_timer(self) -> float | None:
        return None if self._timer is None else self._timer.due

    def data_to_send(self) -> list[bytes]:
        out, self._outgoing = self._outgoing, []
        return out

    def next_event(self) -> Event | None:
        return self._events.pop(0) if self._events else None

    # -- helpers -----------------------------------------------------------------

    def _confirm(self, core: NodeCore, data: bytes) -> None:
        try:
            core.confirm(data)
        except NodeCoreError as exc:
            self._events.append(Rejected(self.ROLE, str(exc)))
            return
        assert self.state.tid is not None  # only a keyed node accepts flight 11
        self._events.append(NodeConfirmed(self.state.node_id, self.state.tid))

    def _send_hello(self, now: float) -> None:
        assert self.state.rn_i is not None
        self._outgoing.append(self._core(self.state).hello(self.state.rn_i))
        previous = self._timer
        interval = (
            self._backoff.initial if previous is None else self._backoff.after(previous.interval)
        )
        attempts = 1 if previous is None else previous.attempts + 1
        self._timer = Retransmission(due=now + interval, interval=interval, attempts=attempts)
