"""SBS: the authentication server, as a request -> reply function over a repository.

Checks run cheapest first, and every check that needs no repository (format,
known controller, CCM tag, timestamp window) runs before the first repository
access, so forged or random packets never touch storage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from keystrap.crypto import constant_time_equal
from keystrap.protocol.events import BootstrapGranted, BootstrapRefused, NodeActivated
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
from keystrap.wire import (
    COMPACT,
    VERSION,
    AuthenticationError,
    DecodeError,
    Flight2,
    Flight6,
    FlightType,
    RevocationList,
    RevocationQuery,
    peek_type,
    peek_version,
    seal_flight3,
    seal_flight4,
    seal_flight7,
    seal_flight8,
)
from keystrap.wire.compact import (
    check_compact_proof,
    derive_rn_c,
    open_compact_confirm,
    open_compact_request,
    peek_to_server,
    seal_compact_confirmed,
    seal_compact_grant,
)
from keystrap.wire.revocation import MAX_ENTRIES as MAX_REVOCATIONS


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


def screen(data: bytes, controllers: Mapping[bytes, bytes]) -> Reply | None:
    """The refusal a flight 2 of the paper's profile gets before any repository
    access (malformed, unknown controller, failed authentication) -- the very
    reply :meth:`Server.handle` would give -- or None for anything else.

    Stateless and cheap (one CCM check), so a service can run it on the raw
    datagram in front of everything else: a flood of forged flight 2s then costs
    no per-request work beyond it."""
    try:
        if peek_version(data) != VERSION or peek_type(data) is not FlightType.F2_REQUEST:
            return None
    except DecodeError:
        return None
    request = open_request(data, controllers)
    return request if isinstance(request, Reply) else None


def open_request(data: bytes, controllers: Mapping[bytes, bytes]) -> _Request | Reply:
    """Flight 2 of either profile, authenticated under its controller's key."""
    compact = data[0] >> 4 == COMPACT
    try:
        if compact:
            controller_id, tid = peek_to_server(data, FlightType.F2_REQUEST)
        else:
            request = Flight2.decode(data)
            controller_id, tid = request.controller_id, request.tid
    except DecodeError as exc:
        return Reply(Status.BAD_REQUEST, reason=str(exc))
    sk_cs = controllers.get(controller_id)
    if sk_cs is None:
        return Reply(Status.UNAUTHORIZED, reason="unknown controller")
    try:
        if compact:
            c = open_compact_request(data, sk_cs)
            rn_c = derive_rn_c(sk_cs, controller_id, tid)
            return _Request(controller_id, tid, sk_cs, c.ts, c.node_id, c.rn_i, rn_c, True)
        body = request.open(sk_cs)
    except AuthenticationError:
        return Reply(Status.UNAUTHORIZED, reason="flight 2 failed authentication")
    except DecodeError as exc:
        return Reply(Status.BAD_REQUEST, reason=str(exc))
    hello = body.flight1
    return _Request(controller_id, tid, sk_cs, body.ts, hello.node_id, hello.rn_i, body.rn_c, False)


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

    def handle(self, data: bytes, now: float) -> Reply:
        """Answer one request (flight 2, 6 or 9) received at time ``now``."""
        try:
            version = peek_version(data)
            kind = peek_type(data, version)
        except DecodeError as exc:
            return Reply(Status.BAD_REQUEST, reason=str(exc))
        if version == COMPACT and kind in (FlightType.F2_REQUEST, FlightType.F6_CONFIRM):
            if self.policy.hardened or not self.policy.compact:
                why = "a hardened server never hands out IK" if self.policy.hardened else "off"
                return Reply(
                    Status.UNSUPPORTED_PROFILE,
                    reason=f"compact profile (version 2) not spoken by this server: {why}",
                )
        elif version == COMPACT:
            return Reply(Status.BAD_REQUEST, reason=f"flight {int(kind)} is not a server request")
        if kind is FlightType.F2_REQUEST:
            return self._handle_request(data, now)
        if kind is FlightType.F6_CONFIRM:
            return self._handle_confirm(data)
        if kind is FlightType.F9_REVOCATION_QUERY:
            return self._handle_revocation_query(data)
        return Reply(Status.BAD_REQUEST, reason=f"flight {int(kind)} is not a server request")

    # -- flight 2 -> flight 3 ----------------------------------------------------

    def _handle_request(self, data: bytes, now: float) -> Reply:
        request = open_request(data, self.controllers)
        if isinstance(request, Reply):
            return request
        if abs(now - request.ts) > self.policy.window:
            return Reply(Status.FORBIDDEN, reason="stale timestamp")

        repo = self.repository
        node_id = request.node_id
        previous, node, pending = repo.lookup_request(request.controller_id, request.tid, node_id)
        if previous is not None:
            return self._retransmitted_request(previous, data)

        def refuse(status: Status, reason: str) -> Reply:
            event = BootstrapRefused(node_id, request.controller_id, request.tid, 2, reason)
            return Reply(status, reason=reason, event=event, node_id=event.node_id)

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
            raced, _, _ = repo.lookup_request(request.controller_id, request.tid, node_id)
            if raced is None:
                return Reply(Status.UNAVAILABLE, reason="repository inconsistent; retry")
            return self._retransmitted_request(raced, data)
        except NodeBusy:
            return refuse(Status.TOO_MANY_REQUESTS, "too many unfinished bootstraps")
        event = BootstrapGranted(node_id, request.controller_id, request.tid)
        return Reply(Status.OK, grant, event=event)

    def _grant(self, request: _Request, key: bytes, psk: bytes) -> bytes:
        """Flight 3 (either profile) or, hardened, flight 8."""
        cid, tid, sk_cs = request.controller_id, request.tid, request.sk_cs
        node_id = request.node_id
        if request.compact:
            return seal_compact_grant(sk_cs, cid, tid, node_id, request.ts, key)
        if self.policy.hardened:
            challenge = seal_flight4(key, cid, tid, node_id, request.rn_i, request.rn_c)
            return seal_flight8(sk_cs, cid, tid, node_id, psk, request.ts, challenge)
        return seal_flight3(sk_cs, cid, tid, node_id, key, request.ts)

    @staticmethod
    def _retransmitted_request(previous: TransactionRecord, data: bytes) -> Reply:
        """The same flight 2 gets the same flight 3; another one with a used TID is a replay."""
        if not constant_time_equal(previous.request, data):
            return Reply(Status.FORBIDDEN, reason="TID already used")
        if previous.grant is None:
            return Reply(Status.FORBIDDEN, reason="transaction already finished")
        return Reply(Status.OK, previous.grant)

    # -- flight 6 -> flight 7 ----------------------------------------------------

    def _handle_confirm(self, data: bytes) -> Reply:
        compact = data[0] >> 4 == COMPACT
        try:
            if compact:
                controller_id, tid = peek_to_server(data, FlightType.F6_CONFIRM)
            else:
                confirm = Flight6.decode(data)
                controller_id, tid = confirm.controller_id, confirm.tid
        except DecodeError as exc:
            return Reply(Status.BAD_REQUEST, reason=str(exc))
        sk_cs = self.controllers.get(controller_id)
        if sk_cs is None:
            return Reply(Status.UNAUTHORIZED, reason="unknown controller")
        try:
            if compact:
                compact_proof = open_compact_confirm(data, sk_cs)
            else:
                proof = confirm.open(sk_cs)
        except AuthenticationError:
            return Reply(Status.UNAUTHORIZED, reason="flight 6 failed authentication")
        except DecodeError as exc:
            return Reply(Status.BAD_REQUEST, reason=str(exc))

        repo = self.repository
        found = repo.lookup_confirm(controller_id, tid)
        if found is None:
            return Reply(Status.NOT_FOUND, reason="unknown transaction")
        record, node_status = found
        if compact:
            ack = seal_compact_confirmed(sk_cs, controller_id, tid, record.node_id)
        else:
            ack = seal_flight7(sk_cs, controller_id, tid, record.node_id)

        def refuse(status: Status, reason: str) -> Reply:
            event = BootstrapRefused(record.node_id, controller_id, tid, 6, reason)
            return Reply(status, reason=reason, event=event, node_id=event.node_id)

        if record.status is TransactionStatus.CONFIRMED:
            return Reply(Status.OK, ack)
        if record.status is TransactionStatus.SUPERSEDED or record.psk is None:
            return refuse(Status.CONFLICT, "another bootstrap of this node completed")
        if node_status is None or node_status is NodeStatus.REVOKED:
            return refuse(Status.FORBIDDEN, "node revoked")
        # The server checks the node's proof itself rather than trusting the
        # controller's word: only a holder of PSK_i can have sealed RN_c.
        try:
            if compact:
                check_compact_proof(
                    compact_proof, record.psk, controller_id, tid, record.node_id, record.rn_c
                )
            elif not constant_time_equal(
                proof.open(record.psk, controller_id, record.node_id), record.rn_c
            ):
                return refuse(Status.FORBIDDEN, "node proof carries another RN_c")
        except AuthenticationError:
            return refuse(Status.UNAUTHORIZED, "node proof (flight 5) failed")
        repo.confirm(controller_id, tid)
        event = NodeActivated(record.node_id, controller_id, tid)
        return Reply(Status.OK, ack, event=event)

    # -- flight 9 -> flight 10 ---------------------------------------------------

    def _handle_revocation_query(self, data: bytes) -> Reply:
        try:
            controller_id = RevocationQuery.peek_controller(data)
        except DecodeError as exc:
            return Reply(Status.BAD_REQUEST, reason=str(exc))
        sk_cs = self.controllers.get(controller_id)
        if sk_cs is None:
            return Reply(Status.UNAUTHORIZED, reason="unknown controller")
        try:
            query = RevocationQuery.decode(data, sk_cs)
        except AuthenticationError:
            return Reply(Status.UNAUTHORIZED, reason="revocation query failed authentication")
        entries = self.repository.revocations_after(query.after, MAX_REVOCATIONS)
        next_after = entries[-1][0] if entries else query.after
        answer = RevocationList(query.challenge, next_after, tuple(entries))
        return Reply(Status.OK, answer.encode(sk_cs, controller_id))
