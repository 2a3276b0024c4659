"""SBI: the new node. Constrained: its bootstrap path uses AES-128 and nothing else.

Stages::

    PROVISIONED --start--> AWAITING_CHALLENGE --valid flight 4--> KEYED
         ^                        |  (flight 1 re-sent on a timer)   |
         +-- (factory reset) -----+                                  +--start--> (re-install)

On a valid flight 4 the node derives ``PSK_i`` and ``SK_i`` and *replaces* its key:
``IK`` is gone from its state. It keeps its flight 5 and re-sends it whenever the
identical flight 4 arrives again, so a lost flight 5 is recovered by the
controller's retransmission of flight 4.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from keystrap.crypto import constant_time_equal, derive_session_key
from keystrap.protocol.events import Event, NodeKeyed, Rejected
from keystrap.protocol.keys import RandomSource, derive_psk
from keystrap.protocol.timers import Backoff, Retransmission
from keystrap.wire import (
    RN_SIZE,
    AuthenticationError,
    DecodeError,
    Flight1,
    Flight4,
    FlightType,
    peek_type,
    seal_flight5,
)


class NodeStage(Enum):
    PROVISIONED = "provisioned"
    AWAITING_CHALLENGE = "awaiting-challenge"
    KEYED = "keyed"


@dataclass(frozen=True)
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


class Node:
    ROLE = "node"

    def __init__(self, state: NodeState, rng: RandomSource, backoff: Backoff | None = None) -> None:
        self.state = state
        self._rng = rng
        self._backoff = backoff or Backoff()
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
        """Take one flight from the out-of-band channel."""
        try:
            kind = peek_type(data)
            if kind is not FlightType.F4_CHALLENGE:
                self._reject(f"unexpected flight {int(kind)}")
                return
            challenge = Flight4.decode(data)
        except DecodeError as exc:
            self._reject(str(exc))
            return
        state = self.state
        if state.stage is NodeStage.KEYED:
            if state.challenge is not None and constant_time_equal(state.challenge, data):
                assert state.proof is not None
                self._outgoing.append(state.proof)
            else:
                self._reject("already keyed; flight 4 ignored")
            return
        if state.stage is not NodeStage.AWAITING_CHALLENGE or state.rn_i is None:
            self._reject("no bootstrap in progress")
            return
        try:
            rn_i, rn_c = challenge.open(state.key, state.controller_id, state.node_id)
        except AuthenticationError:
            self._reject("flight 4 failed authentication")
            return
        if not constant_time_equal(rn_i, state.rn_i):
            self._reject("flight 4 answers another RN_i")
            return

        psk = derive_psk(state.key, rn_i, rn_c)
        proof = seal_flight5(psk, state.controller_id, challenge.tid, state.node_id, rn_c)
        self.state = NodeState(
            node_id=state.node_id,
            controller_id=state.controller_id,
            key=psk,
            stage=NodeStage.KEYED,
            tid=challenge.tid,
            session_key=derive_session_key(psk, state.node_id, state.controller_id),
            challenge=data,
            proof=proof,
        )
        self._timer = None
        self._outgoing.append(proof)
        self._events.append(NodeKeyed(state.node_id, challenge.tid))

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

    def flight1(self) -> bytes:
        assert self.state.rn_i is not None
        return Flight1(self.state.node_id, self.state.rn_i).encode()

    # -- helpers -----------------------------------------------------------------

    def _send_hello(self, now: float) -> None:
        self._outgoing.append(self.flight1())
        previous = self._timer
        interval = (
            self._backoff.initial if previous is None else self._backoff.after(previous.interval)
        )
        attempts = 1 if previous is None else previous.attempts + 1
        self._timer = Retransmission(due=now + interval, interval=interval, attempts=attempts)

    def _reject(self, reason: str) -> None:
        self._events.append(Rejected(self.ROLE, reason))
