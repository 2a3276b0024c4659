"""SBR: the controller. It relays between the node (out of band) and the server
(in band, under ``SK_cs``), and learns the node's PSK to talk to it afterwards.

Per transaction (one TID)::

    AWAITING_GRANT --flight 3--> AWAITING_PROOF --flight 5--> CONFIRMING --flight 7--> DONE
          |
          +--(4.xx from the server, or the timestamp window passed)--> FAILED

The controller drops ``IK`` as soon as it has sealed flight 4 and derived
``PSK_i``; it keeps the flight bytes so that every retransmission is the very
same message (a nonce is never used for a second plaintext).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import field, replace
from enum import Enum

from keystrap.crypto import constant_time_equal, derive_session_key
from keystrap.protocol.events import (
    BootstrapConfirmed,
    ChallengeIssued,
    Event,
    NodeProved,
    Rejected,
    TransactionFailed,
    TransactionStarted,
)
from keystrap.protocol.keys import RandomSource, derive_psk
from keystrap.protocol.persistent import PersistentMap
from keystrap.protocol.replies import Reply, Status
from keystrap.protocol.timers import IN_BAND, Backoff, Retransmission
from keystrap.wire import (
    COMPACT,
    RN_SIZE,
    TID_MAX,
    AuthenticationError,
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
    Flight11,
    Flight12,
    RefusalReason,
    derive_rn_c,
    flight_class,
)
from keystrap.wire.frozen import frozen

# The server's refusals of a flight 2 or 6 (keystrap.protocol.server) as flight 12 codes.
REFUSALS: dict[str, RefusalReason] = {
    "unknown node": RefusalReason.UNKNOWN_NODE,
    "node revoked": RefusalReason.REVOKED,
    "node proof (flight 5) failed": RefusalReason.WRONG_KEY,
    "node proof carries another RN_c": RefusalReason.WRONG_KEY,
    "unknown controller": RefusalReason.CONTROLLER_REFUSED,
    "flight 2 failed authentication": RefusalReason.CONTROLLER_REFUSED,
    "flight 6 failed authentication": RefusalReason.CONTROLLER_REFUSED,
    **{
        f"compact profile (version 2) not spoken by this server: {why}": (
            RefusalReason.UNSUPPORTED_PROFILE
        )
        for why in ("off", "hardened")
    },
}


class TransactionStage(Enum):
    AWAITING_GRANT = "awaiting-grant"
    AWAITING_PROOF = "awaiting-proof"
    CONFIRMING = "confirming"
    DONE = "done"
    FAILED = "failed"


@frozen
class ControllerTransaction:
    tid: int
    node_id: bytes
    rn_i: bytes
    rn_c: bytes
    ts: int
    stage: TransactionStage
    request: bytes  # flight 2
    challenge: bytes | None = None  # flight 4
    psk: bytes | None = None
    confirm: bytes | None = None  # flight 6
    failure: str | None = None


@frozen
class ControllerState:
    """Everything the controller must persist. ``next_tid`` is stored before a TID
    is used, so a restart never hands out a TID twice."""

    controller_id: bytes
    sk_cs: bytes
    next_tid: int = 1
    transactions: Mapping[int, ControllerTransaction] = field(default_factory=PersistentMap)

    def __post_init__(self) -> None:
        # A persistent map: a step does not copy every held transaction, and each
        # snapshot stays valid (the store and the crash tests keep old ones).
        if not isinstance(self.transactions, PersistentMap):
            object.__setattr__(self, "transactions", PersistentMap(self.transactions))

    def _map(self) -> PersistentMap[int, ControllerTransaction]:
        assert isinstance(self.transactions, PersistentMap)
        return self.transactions

    def with_transaction(
        self, tx: ControllerTransaction, next_tid: int | None = None
    ) -> ControllerState:
        return replace(
            self,
            transactions=self._map().set(tx.tid, tx),
            next_tid=self.next_tid if next_tid is None else next_tid,
        )

    def without(self, tids: Iterable[int]) -> ControllerState:
        return replace(self, transactions=self._map().without(tids))


@frozen
class ToServer:
    tid: int
    data: bytes


Session = Hashable
"""The service's name for one out-of-band session (a link to one node)."""


@frozen
class ToNode:
    node_id: bytes
    data: bytes
    session: Session | None = None
    """Where to send it: the node's latest session, None if it has none open."""


@frozen
class EndSession:
    """The node needs nothing more on this session: the service closes it."""

    session: Session


Outgoing = ToServer | ToNode | EndSession


def _is_compact(tx: ControllerTransaction) -> bool:
    """The profile of a transaction is the version of its flight 2."""
    return tx.request[:1] == CompactFlight2.header()


_OPEN = (
    TransactionStage.AWAITING_GRANT,
    TransactionStage.AWAITING_PROOF,
    TransactionStage.CONFIRMING,
)


class Controller:
    ROLE = "controller"

    def __init__(
        self,
        state: ControllerState,
        rng: RandomSource,
        window: int = 120,
        backoff: Backoff | None = None,
        challenge_attempts: int = 8,
        server_backoff: Backoff = IN_BAND,
    ) -> None:
        """``window`` is how long a transaction waits for flight 3 (match the server's
        timestamp window: after it, the server would refuse the flight 2 anyway).
        ``challenge_attempts`` bounds retransmissions of flight 4; the transaction
        still accepts a late flight 5 after that. ``backoff`` paces flight 4 (out of
        band), ``server_backoff`` flights 2 and 6 (in band)."""
        self.state = state
        self._rng = rng
        self._window = window
        self._backoff = backoff or Backoff()
        self._server_backoff = server_backoff
        self._challenge_attempts = challenge_attempts
        self._outgoing: list[Outgoing] = []
        self._events: list[Event] = []
        self._changed: set[int] = set()
        self._sessions: dict[bytes, Session] = {}  # ID_i -> its latest session
        # A node's TIDs, so that a flight 1 or a revocation does not scan them all.
        self._by_node: dict[bytes, set[int]] = {}
        for tx in state.transactions.values():
            self._by_node.setdefault(tx.node_id, set()).add(tx.tid)
        # After a restart everything still open is re-sent at the first timer.
        self._timers: dict[int, Retransmission] = {
            tid: Retransmission(due=0.0, interval=self._pace(tx.stage).initial)
            for tid, tx in state.transactions.items()
            if tx.stage in _OPEN
        }

    # -- inputs from the node (out of band) --------------------------------------

    def receive_from_node(
        self,
        data: bytes,
        now: float,
        wall: float | None = None,
        session: Session | None = None,
    ) -> None:
        """Flight 1 or 5 of either profile; the node's flight 1 picks the profile
        of its transaction (flight 2 records it).

        Two clocks: ``now`` (monotonic) drives the timers, ``wall`` (the wall clock,
        default ``now``) only makes flight 2's timestamp -- so a step of the wall
        clock never delays or hurries a retransmission.

        ``session`` names the out-of-band session ``data`` came on: a flight 1
        naming a node, or an authentic flight 5 of its transaction, makes it the
        node's session, where every :class:`ToNode` for that node goes from then
        on. Once the server confirmed, the node gets flight 11 there and
        :class:`EndSession`."""
        try:
            kind = flight_class(data)
            if issubclass(kind, Flight1):
                hello = kind.decode(data)
                self._attach(hello.node_id, session)
                compact = kind.PROFILE == COMPACT
                self._on_hello(
                    hello.node_id, hello.rn_i, compact, now, now if wall is None else wall
                )
            elif issubclass(kind, Flight5 | CompactFlight5):
                self._on_proof(kind.peek_tid(data), data, now, session)
            else:
                self._reject(f"flight {int(kind.TYPE)} does not come from a node")
        except DecodeError as exc:
            self._reject(str(exc))

    def _on_hello(
        self, node_id: bytes, rn_i: bytes, compact: bool, now: float, wall: float
    ) -> None:
        for tx in self._of_node(node_id):
            if constant_time_equal(tx.rn_i, rn_i) and tx.stage is not TransactionStage.FAILED:
                self._resend(tx)  # the node repeats itself: answer as before
                return
        tid = self.state.next_tid
        if tid > TID_MAX:
            self._reject("TID space exhausted; register this controller under a new ID")
            return
        sk_cs, cid, ts = self.state.sk_cs, self.state.controller_id, int(wall)
        if compact:
            rn_c = derive_rn_c(sk_cs, cid, tid)
            request = CompactFlight2(cid, tid, ts, node_id, rn_i).seal(sk_cs)
        else:
            rn_c = self._rng(RN_SIZE)
            request = Flight2(cid, tid, ts, rn_c, Flight1(node_id, rn_i)).seal(sk_cs)
        tx = ControllerTransaction(
            tid=tid,
            node_id=node_id,
            rn_i=rn_i,
            rn_c=rn_c,
            ts=ts,
            stage=TransactionStage.AWAITING_GRANT,
            request=request,
        )
        self._store(tx, next_tid=tid + 1)
        self._outgoing.append(ToServer(tid, request))
        self._arm(tid, now)
        self._events.append(TransactionStarted(node_id, tid))

    def _on_proof(self, tid: int, data: bytes, now: float, session: Session | None) -> None:
        tx = self.state.transactions.get(tid)
        if tx is None or tx.psk is None:
            self._reject(f"flight 5 for unknown TID {tid}")
            return
        cid = self.state.controller_id
        try:
            if _is_compact(tx):
                CompactFlight5.open(
                    data, tx.psk, controller_id=cid, node_id=tx.node_id, rn_c=tx.rn_c
                )
            elif not constant_time_equal(
                Flight5.open(data, tx.psk, controller_id=cid, node_id=tx.node_id).rn_c, tx.rn_c
            ):
                self._reject("flight 5 carries another RN_c")
                return
        except AuthenticationError:
            self._reject("flight 5 failed authentication")
            return
        self._attach(tx.node_id, session)
        if tx.stage is TransactionStage.CONFIRMING:
            self._resend(tx)
            return
        if tx.stage is TransactionStage.DONE:
            self._say_confirmed(tx)  # the node missed flight 11: tell it again
            return
        if tx.stage is not TransactionStage.AWAITING_PROOF:
            return  # duplicate after failure: nothing to do
        if _is_compact(tx):
            confirm = CompactFlight6(cid, tx.tid, data).seal(self.state.sk_cs)
        else:
            confirm = Flight6(cid, tx.tid, data).seal(self.state.sk_cs)
        self._store(replace(tx, stage=TransactionStage.CONFIRMING, confirm=confirm))
        self._outgoing.append(ToServer(tx.tid, confirm))
        self._arm(tx.tid, now)
        self._events.append(NodeProved(tx.node_id, tx.tid))

    # -- inputs from the server (in band) ----------------------------------------

    def receive_from_server(self, tid: int, reply: Reply, now: float) -> None:
        """Take the server's answer to the request sent for ``tid``."""
        tx = self.state.transactions.get(tid)
        if tx is None or tx.stage not in (
            TransactionStage.AWAITING_GRANT,
            TransactionStage.CONFIRMING,
        ):
            return  # a late duplicate answer
        if reply.status is not Status.OK:
            if not reply.status.transient:
                self._fail(tx, f"server refused: {reply.status.value} {reply.reason}")
                self._tell_node(tx, REFUSALS.get(reply.reason, RefusalReason.OTHER))
            return
        if tx.stage is TransactionStage.AWAITING_GRANT:
            self._on_grant(tx, reply.payload, now)
        else:
            self._on_confirmed(tx, reply.payload)

    def _on_grant(self, tx: ControllerTransaction, data: bytes, now: float) -> None:
        """Flight 3 (paper: IK_i, from which the controller derives PSK_i and seals
        flight 4) or flight 8 (hardened: PSK_i and flight 4 ready-made)."""
        cid, sk_cs = self.state.controller_id, self.state.sk_cs
        sealed = data[:1] == Flight8.header()
        try:
            if _is_compact(tx):
                # TS and TID are in the tag's context: a grant that opens echoes them.
                ik = CompactFlight3.open(
                    data, sk_cs, controller_id=cid, tid=tx.tid, node_id=tx.node_id, ts=tx.ts
                ).ik
                ts, tid = tx.ts, tx.tid
                psk = derive_psk(ik, tx.rn_i, tx.rn_c)
                challenge = CompactFlight4(cid, tx.tid, tx.node_id, tx.rn_i, tx.rn_c).seal(ik)
            elif sealed:
                hardened = Flight8.open(
                    data, sk_cs, controller_id=cid, tid=tx.tid, node_id=tx.node_id
                )
                ts, tid = hardened.ts, hardened.tid
                psk, challenge = hardened.psk, hardened.challenge
            else:
                grant = Flight3.open(data, sk_cs, controller_id=cid, tid=tx.tid, node_id=tx.node_id)
                ts, tid = grant.ts, grant.tid
                psk = derive_psk(grant.ik, tx.rn_i, tx.rn_c)
                challenge = Flight4(cid, tx.tid, tx.node_id, tx.rn_i, tx.rn_c).seal(grant.ik)
        except AuthenticationError:
            self._reject(f"flight {8 if sealed else 3} failed authentication")
            return
        except DecodeError as exc:
            self._reject(str(exc))
            return
        # Paper: the controller authenticates flight 3 by its TS and TID.
        if ts != tx.ts or tid != tx.tid:
            self._reject("flight 3 echoes another TS or TID")
            return
        self._store(
            replace(tx, stage=TransactionStage.AWAITING_PROOF, challenge=challenge, psk=psk)
        )
        self._to_node(tx.node_id, challenge)
        self._arm(tx.tid, now)
        self._events.append(ChallengeIssued(tx.node_id, tx.tid))

    def _on_confirmed(self, tx: ControllerTransaction, data: bytes) -> None:
        try:
            flight7 = CompactFlight7 if _is_compact(tx) else Flight7
            flight7.open(
                data,
                self.state.sk_cs,
                controller_id=self.state.controller_id,
                tid=tx.tid,
                node_id=tx.node_id,
            )
        except DecodeError as exc:
            self._reject(f"flight 7: {exc}")
            return
        self._store(replace(tx, stage=TransactionStage.DONE))
        self._timers.pop(tx.tid, None)
        self._events.append(BootstrapConfirmed(tx.node_id, tx.tid))
        self._say_confirmed(tx)

    def _say_confirmed(self, tx: ControllerTransaction) -> None:
        """Flight 11 on the node's session, then the session's end: it tells the
        node, verifiably, that the server holds its PSK_i, and asks nothing back."""
        session = self._sessions.pop(tx.node_id, None)
        if session is None or tx.psk is None:  # no session, or revoked meanwhile
            return
        cid = self.state.controller_id
        sk_i = derive_session_key(tx.psk, tx.node_id, cid)
        flight11 = (CompactFlight11 if _is_compact(tx) else Flight11)(cid, tx.tid, tx.node_id)
        self._outgoing.append(ToNode(tx.node_id, flight11.seal(sk_i), session))
        self._outgoing.append(EndSession(session))

    def session_closed(self, session: Session) -> None:
        """The service's session ended (the node hung up): nothing goes there now."""
        for node_id in [n for n, s in self._sessions.items() if s == session]:
            del self._sessions[node_id]

    def server_unreachable(self, tid: int) -> None:
        """No CoAP answer for ``tid``'s request: the node hears of it at once, and the
        transaction stays open (the timer re-sends, the window still applies)."""
        tx = self.state.transactions.get(tid)
        if tx is not None and tx.stage is TransactionStage.AWAITING_GRANT:
            self._tell_node(tx, RefusalReason.SERVER_UNREACHABLE)

    def _tell_node(self, tx: ControllerTransaction, reason: RefusalReason) -> None:
        """Flight 12: why the bootstrap cannot go on, as advice for the node."""
        self._to_node(tx.node_id, Flight12(tx.node_id, reason).encode())

    # -- decommissioning ---------------------------------------------------------

    def forget_node(self, node_id: bytes) -> None:
        """The server revoked the node: end its open bootstraps, drop every PSK of it."""
        for tx in self._of_node(node_id):
            if tx.stage in _OPEN:
                self._fail(tx, "node revoked")
            elif tx.psk is not None:
                self._store(replace(tx, psk=None))
        session = self._sessions.pop(node_id, None)
        if session is not None:
            self._outgoing.append(EndSession(session))

    def prune_finished(self, before: float) -> list[int]:
        """Forget finished transactions (done or failed) whose flight 2 is older than
        ``before``; returns their TIDs. A finished transaction is kept a while only to
        answer a node that repeats flight 5; its PSK lives on in the node credentials."""
        finished = (TransactionStage.DONE, TransactionStage.FAILED)
        old = [
            tid
            for tid, tx in self.state.transactions.items()
            if tx.stage in finished and tx.ts < before
        ]
        for tid in old:
            node_id = self.state.transactions[tid].node_id
            self._by_node[node_id].discard(tid)
            if not self._by_node[node_id]:
                del self._by_node[node_id]
            self._timers.pop(tid, None)
        if old:
            self.state = self.state.without(old)
            self._changed.update(old)
        return old

    # -- timers ------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` is next due, on the clock of ``now``."""
        return min((t.due for t in self._timers.values()), default=None)

    def handle_timer(self, now: float, wall: float | None = None) -> None:
        """Retransmit what is due by ``now`` (monotonic); ``wall`` (default ``now``)
        is checked against flight 2's timestamp, the one deadline the server keeps."""
        wall = now if wall is None else wall
        for tid, timer in list(self._timers.items()):
            if now < timer.due:
                continue
            tx = self.state.transactions[tid]
            if tx.stage is TransactionStage.AWAITING_GRANT and wall > tx.ts + self._window:
                self._fail(tx, "no valid flight 3 within the timestamp window")
                continue
            if (
                tx.stage is TransactionStage.AWAITING_PROOF
                and timer.attempts >= self._challenge_attempts
            ):
                del self._timers[tid]  # stop repeating; a late flight 5 is still accepted
                continue
            self._resend(tx)
            interval = self._pace(tx.stage).after(timer.interval)
            self._timers[tid] = Retransmission(now + interval, interval, timer.attempts + 1)

    # -- outputs -----------------------------------------------------------------

    def unsaved(self) -> frozenset[int]:
        """TIDs stored or forgotten since the last :meth:`mark_saved`: what the store
        must write. They stay listed until a save succeeds, so a failed save is
        retried whole by the next one (a TID sent before it is stored could be
        handed out again after a crash)."""
        return frozenset(self._changed)

    def mark_saved(self, tids: Iterable[int]) -> None:
        self._changed.difference_update(tids)

    def is_current(self, request: ToServer) -> bool:
        """Whether ``request`` is still what its transaction waits on. An output
        held while the state was being saved can be overtaken (the reply to an
        earlier copy arrived meanwhile); sent, it would ask a question no longer
        asked, and hold the lane the current request needs."""
        tx = self.state.transactions.get(request.tid)
        if tx is None:
            return False
        if tx.stage is TransactionStage.AWAITING_GRANT:
            return tx.request == request.data
        return tx.stage is TransactionStage.CONFIRMING and tx.confirm == request.data

    def data_to_send(self) -> list[Outgoing]:
        out, self._outgoing = self._outgoing, []
        return out

    def next_event(self) -> Event | None:
        return self._events.pop(0) if self._events else None

    # -- helpers -----------------------------------------------------------------

    def _attach(self, node_id: bytes, session: Session | None) -> None:
        if session is not None:
            self._sessions[node_id] = session

    def _to_node(self, node_id: bytes, data: bytes) -> None:
        self._outgoing.append(ToNode(node_id, data, self._sessions.get(node_id)))

    def _resend(self, tx: ControllerTransaction) -> None:
        if tx.stage is TransactionStage.AWAITING_GRANT:
            self._outgoing.append(ToServer(tx.tid, tx.request))
        elif tx.stage is TransactionStage.AWAITING_PROOF and tx.challenge is not None:
            self._to_node(tx.node_id, tx.challenge)
        elif tx.stage is TransactionStage.CONFIRMING and tx.confirm is not None:
            self._outgoing.append(ToServer(tx.tid, tx.confirm))

    def _pace(self, stage: TransactionStage) -> Backoff:
        return self._backoff if stage is TransactionStage.AWAITING_PROOF else self._server_backoff

    def _arm(self, tid: int, now: float) -> None:
        interval = self._pace(self.state.transactions[tid].stage).initial
        self._timers[tid] = Retransmission(now + interval, interval)

    def _of_node(self, node_id: bytes) -> list[ControllerTransaction]:
        held = self.state.transactions
        return [held[tid] for tid in sorted(self._by_node.get(node_id, ()))]

    def _store(self, tx: ControllerTransaction, next_tid: int | None = None) -> None:
        self.state = self.state.with_transaction(tx, next_tid)
        self._changed.add(tx.tid)
        self._by_node.setdefault(tx.node_id, set()).add(tx.tid)

    def _fail(self, tx: ControllerTransaction, reason: str) -> None:
        self._store(replace(tx, stage=TransactionStage.FAILED, failure=reason, psk=None))
        self._timers.pop(tx.tid, None)
        self._events.append(TransactionFailed(tx.node_id, tx.tid, reason))

    def _reject(self, reason: str) -> None:
        self._events.append(Rejected(self.ROLE, reason))
