"""SBS: the authentication server, as a request -> reply function over a repository.

Checks run cheapest first, and every check that needs no repository (format,
known controller, CCM tag, timestamp window) runs before the first repository
access, so forged or random packets never touch storage.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import partial
from typing import Protocol, Self, TypeVar

from keystrap.crypto import constant_time_equal
from keystrap.protocol.events import (
    BootstrapGranted,
    BootstrapRefused,
    NodeActivated,
    RevocationUnsendable,
)
from keystrap.protocol.keys import derive_psk
from keystrap.protocol.replies import Reply, Status
from keystrap.protocol.repository import (
    KeyRepository,
    NodeBusy,
    NodeStatus,
    TransactionExists,
    TransactionRecord,
    TransactionStatus,
)
from keystrap.protocol.revocation_feed import MAX_CURSOR
from keystrap.wire import (
    COMPACT,
    AuthenticationError,
    CompactFlight2,
    CompactFlight3,
    CompactFlight5,
    CompactFlight6,
    CompactFlight7,
    DecodeError,
    Flight,
    Flight2,
    Flight3,
    Flight4,
    Flight5,
    Flight6,
    Flight7,
    Flight8,
    Flight9,
    Flight10,
    derive_rn_c,
    flight_class,
)
from keystrap.wire.frozen import frozen
from keystrap.wire.revocation import MAX_ENTRIES as MAX_REVOCATIONS

SCREENED_MAX = 16_384
"""Authentic flights 2 and 6 remembered between :meth:`Server.screen` and
:meth:`Server.handle`: enough that a burst the store has not reached yet is not
opened twice (at 4,096, a third of a burst of 6,000 flights 2 was); about 9 MiB
when full. A copy answered from the CoAP face's cache leaves its entry behind,
to be dropped as the oldest."""


@frozen
class ServerPolicy:
    window: int = 120
    """Seconds a flight-2 timestamp may differ from the server's clock, either way.
    Longer than CoAP's 93 s retransmission span, so a retransmitted flight 2 still
    fits, short enough that a recorded one soon goes stale."""

    max_pending: int = 8
    """Unfinished bootstraps kept per node. Each is a candidate PSK the node might
    hold, so none is dropped; past this limit new attempts are refused."""

    hardened: bool = False
    """Answer flight 2 with flight 8 instead of flight 3: the server seals flight 4
    itself and gives the controller PSK_i only, so no controller ever learns an
    initial key (with the paper's flight 3, every controller learns IK_N, the key
    of all of one installer's nodes)."""

    compact: bool = True
    """Speak the compact profile (version 2) besides the paper's. Never together
    with ``hardened``: the compact flight 3 carries IK_i, as the paper's does."""


@frozen
class _Request:
    """Flight 2 of either profile, authenticated."""

    controller_id: bytes
    tid: int
    sk_cs: bytes
    ts: int
    node_id: bytes
    rn_i: bytes
    rn_c: bytes
    compact: bool


@frozen
class _Confirm:
    """Flight 6 of either profile, authenticated."""

    sk_cs: bytes
    flight: Flight6 | CompactFlight6

    @property
    def controller_id(self) -> bytes:
        return self.flight.controller_id


class _Routed(Protocol):
    """Flights 2, 6 and 9: ``ID_c`` in the clear, the rest under (a key of) ``SK_cs``."""

    @classmethod
    def peek_controller(cls, data: bytes) -> bytes: ...

    @classmethod
    def open(cls, data: bytes, sk_cs: bytes) -> Self: ...


R = TypeVar("R", bound=_Routed)


def _authenticate(
    data: bytes, controllers: Mapping[bytes, bytes], kind: type[R]
) -> tuple[bytes, R] | Reply:
    """``(SK_cs, flight)`` once the flight is framed, from a known controller and
    authentic; else the refusal. No repository access."""
    try:
        controller_id = kind.peek_controller(data)
    except DecodeError as exc:
        return Reply(Status.BAD_REQUEST, reason=str(exc))
    sk_cs = controllers.get(controller_id)
    if sk_cs is None:
        return Reply(Status.UNAUTHORIZED, reason="unknown controller")
    try:
        return sk_cs, kind.open(data, sk_cs)
    except AuthenticationError as exc:
        return Reply(Status.UNAUTHORIZED, reason=exc.detail)
    except DecodeError as exc:
        return Reply(Status.BAD_REQUEST, reason=str(exc))


def open_request(data: bytes, controllers: Mapping[bytes, bytes]) -> _Request | Reply:
    """Flight 2 of either profile, authenticated under its controller's key."""
    if data[:1] == CompactFlight2.header():
        compact = _authenticate(data, controllers, CompactFlight2)
        if isinstance(compact, Reply):
            return compact
        sk_cs, c = compact
        rn_c = derive_rn_c(sk_cs, c.controller_id, c.tid)
        return _Request(c.controller_id, c.tid, sk_cs, c.ts, c.node_id, c.rn_i, rn_c, True)
    paper = _authenticate(data, controllers, Flight2)
    if isinstance(paper, Reply):
        return paper
    sk_cs, p = paper
    hello = p.flight1
    return _Request(p.controller_id, p.tid, sk_cs, p.ts, hello.node_id, hello.rn_i, p.rn_c, False)


def open_confirm(data: bytes, controllers: Mapping[bytes, bytes]) -> _Confirm | Reply:
    """Flight 6 of either profile, authenticated under its controller's key."""
    opened: tuple[bytes, Flight6 | CompactFlight6] | Reply
    if data[:1] == CompactFlight6.header():
        opened = _authenticate(data, controllers, CompactFlight6)
    else:
        opened = _authenticate(data, controllers, Flight6)
    return opened if isinstance(opened, Reply) else _Confirm(*opened)


def _refused(
    node_id: bytes, controller_id: bytes, tid: int, flight: int, status: Status, reason: str
) -> Reply:
    """A refusal of an authenticated flight 2 or 6 about a known node, which the
    node's history records."""
    event = BootstrapRefused(node_id, controller_id, tid, flight, reason)
    return Reply(status, reason=reason, event=event, node_id=node_id)


class Server:
    def __init__(
        self,
        repository: KeyRepository,
        controllers: Mapping[bytes, bytes],
        policy: ServerPolicy | None = None,
    ) -> None:
        """``controllers`` maps ``ID_c`` to ``SK_cs``; it is an in-memory table so that
        an unknown controller is refused without touching the repository."""
        self.repository = repository
        self.controllers = controllers
        self.policy = policy or ServerPolicy()
        self._screened: OrderedDict[bytes, _Request | _Confirm] = OrderedDict()
        self._handlers: dict[type[Flight], Callable[[bytes, float], Reply]] = {
            Flight2: self._handle_request,
            CompactFlight2: self._handle_request,
            Flight6: self._handle_confirm,
            CompactFlight6: self._handle_confirm,
            Flight9: self._handle_revocation_query,
        }

    def handle(self, data: bytes, now: float) -> Reply:
        """Answer one request (flight 2, 6 or 9) received at time ``now``."""
        kind = self._route(data)
        if isinstance(kind, Reply):
            return kind
        return self._handlers[kind](data, now)

    def screen(self, data: bytes, controllers: Mapping[bytes, bytes]) -> Reply | None:
        """The refusal a request gets before any repository access (not a request
        this server serves, malformed, unknown controller, failed authentication)
        -- the very reply :meth:`handle` would give -- or None to go on.

        Cheap (one CCM check) and without repository access, so a service can run
        it on the raw datagram in front of everything else: a flood of forged
        flights then costs no per-request work beyond it. Each flight 2 or 6 it
        finds authentic is remembered, so that :meth:`handle` need not
        authenticate the same bytes again (most of the core's work on a flight
        2). A service may call this on its receiving thread while :meth:`handle`
        runs on the store's; the memo is bounded, and only authentic flights
        (whose sender holds ``SK_cs``) enter it.
        """
        kind = self._route(data)
        if isinstance(kind, Reply):
            return kind
        opened: _Request | _Confirm | Reply
        if kind in (Flight2, CompactFlight2):
            opened = open_request(data, controllers)
        elif kind in (Flight6, CompactFlight6):
            opened = open_confirm(data, controllers)
        else:  # flight 9: rare, not remembered
            refused = _authenticate(data, controllers, Flight9)
            return refused if isinstance(refused, Reply) else None
        if isinstance(opened, Reply):
            return opened
        screened = self._screened
        screened[data] = opened
        while len(screened) > SCREENED_MAX:
            screened.popitem(last=False)
        return None

    def _recall(self, data: bytes) -> _Request | _Confirm | None:
        """What :meth:`screen` found authentic in ``data``, if its controller's key
        is still the one it was opened with."""
        screened = self._screened.pop(data, None)
        if screened is None or self.controllers.get(screened.controller_id) != screened.sk_cs:
            return None
        return screened

    def _route(self, data: bytes) -> type[Flight] | Reply:
        """The request's class, or the refusal of anything this server does not serve."""
        try:
            kind = flight_class(data)
        except DecodeError as exc:
            return Reply(Status.BAD_REQUEST, reason=str(exc))
        if kind not in self._handlers:
            return Reply(
                Status.BAD_REQUEST, reason=f"flight {int(kind.TYPE)} is not a server request"
            )
        if kind.PROFILE == COMPACT and (self.policy.hardened or not self.policy.compact):
            why = "hardened" if self.policy.hardened else "off"  # fits CoAP's 64-byte reason
            return Reply(
                Status.UNSUPPORTED_PROFILE,
                reason=f"compact profile (version 2) not spoken by this server: {why}",
            )
        return kind

    # -- flight 2 -> flight 3 ----------------------------------------------------

    def _handle_request(self, data: bytes, now: float) -> Reply:
        screened = self._recall(data)  # None if not screened, or its controller's key changed
        request = (
            screened if isinstance(screened, _Request) else open_request(data, self.controllers)
        )
        if isinstance(request, Reply):
            return request
        if abs(now - request.ts) > self.policy.window:
            return Reply(Status.FORBIDDEN, reason="stale timestamp")

        repo = self.repository
        node_id = request.node_id
        previous, node, pending = repo.lookup_request(request.controller_id, request.tid, node_id)
        if previous is not None:
            revoked = node is not None and node.status is NodeStatus.REVOKED
            return self._retransmitted_request(previous, data, revoked)
        refuse = partial(_refused, node_id, request.controller_id, request.tid, 2)
        if node is None:
            return refuse(Status.NOT_FOUND, "unknown node")
        if node.status is NodeStatus.REVOKED:
            return refuse(Status.FORBIDDEN, "node revoked")
        if pending >= self.policy.max_pending:
            return refuse(Status.TOO_MANY_REQUESTS, "too many unfinished bootstraps")

        # The current key (IK_i, or the PSK of a previous bootstrap on
        # re-installation) stays in place; the new PSK is only a candidate.
        psk = derive_psk(node.key, request.rn_i, request.rn_c)
        grant = self._grant(request, node.key, psk)
        record = TransactionRecord(
            controller_id=request.controller_id,
            tid=request.tid,
            node_id=node_id,
            request=data,
            grant=grant,
            rn_c=request.rn_c,
            psk=psk,
            status=TransactionStatus.PENDING,
            created=int(now),
        )
        try:
            repo.add_transaction(record)
        except TransactionExists:
            # Another worker recorded the same TID between our read and write.
            raced, now_node, _ = repo.lookup_request(request.controller_id, request.tid, node_id)
            if raced is None:
                return Reply(Status.UNAVAILABLE, reason="repository inconsistent; retry")
            revoked = now_node is not None and now_node.status is NodeStatus.REVOKED
            return self._retransmitted_request(raced, data, revoked)
        except NodeBusy:
            return refuse(Status.TOO_MANY_REQUESTS, "too many unfinished bootstraps")
        event = BootstrapGranted(node_id, request.controller_id, request.tid)
        return Reply(Status.OK, grant, event=event)

    def _grant(self, request: _Request, key: bytes, psk: bytes) -> bytes:
        """Flight 3 (either profile) or, hardened, flight 8."""
        cid, tid, sk_cs = request.controller_id, request.tid, request.sk_cs
        node_id = request.node_id
        if request.compact:
            return CompactFlight3(cid, tid, node_id, request.ts, key).seal(sk_cs)
        if self.policy.hardened:
            challenge = Flight4(cid, tid, node_id, request.rn_i, request.rn_c).seal(key)
            return Flight8(cid, tid, node_id, psk, request.ts, challenge).seal(sk_cs)
        return Flight3(cid, tid, node_id, key, request.ts).seal(sk_cs)

    @staticmethod
    def _retransmitted_request(previous: TransactionRecord, data: bytes, revoked: bool) -> Reply:
        """The same flight 2 gets the same flight 3; another one with a used TID is a
        replay. A node revoked meanwhile is said as such: its transaction ended
        with the revocation, and "already finished" told the controller (and, in
        flight 12, the node) nothing of why."""
        if not constant_time_equal(previous.request, data):
            return Reply(Status.FORBIDDEN, reason="TID already used")
        if revoked:
            return Reply(Status.FORBIDDEN, reason="node revoked")
        if previous.grant is None:
            return Reply(Status.FORBIDDEN, reason="transaction already finished")
        return Reply(Status.OK, previous.grant)

    # -- flight 6 -> flight 7 ----------------------------------------------------

    def _handle_confirm(self, data: bytes, now: float) -> Reply:
        screened = self._recall(data)
        opened = (
            screened if isinstance(screened, _Confirm) else open_confirm(data, self.controllers)
        )
        if isinstance(opened, Reply):
            return opened
        sk_cs, confirm = opened.sk_cs, opened.flight
        compact = isinstance(confirm, CompactFlight6)
        controller_id, tid = confirm.controller_id, confirm.tid

        repo = self.repository
        found = repo.lookup_confirm(controller_id, tid)
        if found is None:
            return Reply(Status.NOT_FOUND, reason="unknown transaction")
        record, node_status = found
        node_id = record.node_id
        ack = (CompactFlight7 if compact else Flight7)(controller_id, tid, node_id).seal(sk_cs)
        refuse = partial(_refused, node_id, controller_id, tid, 6)
        if record.status is TransactionStatus.CONFIRMED:
            return Reply(Status.OK, ack)
        # Before the superseded check: a revocation supersedes the node's open
        # transactions, which then read "another bootstrap of this node completed".
        if node_status is None or node_status is NodeStatus.REVOKED:
            return refuse(Status.FORBIDDEN, "node revoked")
        if record.status is TransactionStatus.SUPERSEDED or record.psk is None:
            return refuse(Status.CONFLICT, "another bootstrap of this node completed")
        # The server checks the node's proof itself rather than trusting the
        # controller's word: only a holder of PSK_i can have sealed RN_c.
        try:
            if compact:
                CompactFlight5.open(
                    confirm.proof,
                    record.psk,
                    controller_id=controller_id,
                    node_id=node_id,
                    rn_c=record.rn_c,
                )
            else:
                proof = Flight5.open(
                    confirm.proof, record.psk, controller_id=controller_id, node_id=node_id
                )
                if not constant_time_equal(proof.rn_c, record.rn_c):
                    return refuse(Status.FORBIDDEN, "node proof carries another RN_c")
        except AuthenticationError:
            return refuse(Status.UNAUTHORIZED, "node proof (flight 5) failed")
        repo.confirm(controller_id, tid)
        event = NodeActivated(node_id, controller_id, tid)
        return Reply(Status.OK, ack, event=event)

    # -- flight 9 -> flight 10 ---------------------------------------------------

    def _handle_revocation_query(self, data: bytes, now: float) -> Reply:
        opened = _authenticate(data, self.controllers, Flight9)
        if isinstance(opened, Reply):
            return opened
        sk_cs, query = opened
        stored = self.repository.revocations_after(query.after, MAX_REVOCATIONS)
        # A number flight 10 cannot carry failed the whole batch of the store's
        # thread (5.03 to every request in it), at every poll. The ones before it
        # are sent; it, and all after it, are refused until the store is mended:
        # sent as a lower number, or skipped, a revocation would never be applied.
        entries = [entry for entry in stored if entry[0] <= MAX_CURSOR]
        if not entries and stored:
            seq, node_id = stored[0]
            return Reply(
                Status.UNAVAILABLE,
                reason=f"revocation {seq} is above 2^32-1 (store edited?)",
                event=RevocationUnsendable(seq, node_id),
            )
        if entries:
            next_after = entries[-1][0]
        else:
            # Asked after more revocations than this store has numbered: it was
            # restored from an older backup and numbers new ones from that backup's
            # last again, or it is not the store the controller's cursor came from.
            # Left at ``after``, the controller would skip them. Without a recorded
            # restore it asks from the start: a revocation applied twice costs at
            # most a re-installation, one skipped leaves a revoked node's PSK in use.
            last, restored = self.repository.revocation_marks()
            next_after = query.after if query.after <= last else min(restored, last)
        answer = Flight10(query.challenge, next_after, tuple(entries))
        return Reply(Status.OK, answer.seal(sk_cs, query.controller_id))
