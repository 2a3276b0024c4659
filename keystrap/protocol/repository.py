"""What the server needs from its key repository, and an in-memory implementation.

The SQLite repository (with keys wrapped at rest) implements the same protocol;
the server core never knows which one it talks to.

The no-bricked-node rule lives in the shape of this interface: a fresh flight 2
only *adds* a pending transaction next to the node's current key; the key is
replaced solely by :meth:`KeyRepository.confirm`, which the server calls once it
has verified the node's own proof (flight 5) that it holds the new PSK.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from dataclasses import replace
from enum import Enum
from typing import Protocol

from keystrap.wire.frozen import frozen


class NodeStatus(Enum):
    ENROLLED = "enrolled"  # holds its initial key
    ACTIVE = "active"  # holds a PSK from a completed bootstrap
    REVOKED = "revoked"  # refused by the server


class TransactionStatus(Enum):
    PENDING = "pending"  # flight 3 sent; candidate PSK kept next to the current key
    CONFIRMED = "confirmed"  # the node proved PSK; it replaced the key
    SUPERSEDED = "superseded"  # another transaction of the same node was confirmed


@frozen
class NodeRecord:
    node_id: bytes
    key: bytes  # IK_i until the first confirmed bootstrap, then PSK_i
    status: NodeStatus


@frozen
class TransactionRecord:
    controller_id: bytes
    tid: int
    node_id: bytes
    request: bytes  # the exact flight 2, to recognise a retransmission
    grant: bytes | None  # the exact flight 3 (wiped once the transaction ends)
    rn_c: bytes
    psk: bytes | None  # candidate PSK_i (wiped once the transaction ends)
    status: TransactionStatus
    created: int


class TransactionExists(Exception):
    """(ID_c, TID) was already recorded: a TID is accepted once, ever."""


class UnknownTransaction(Exception):
    pass


class NodeBusy(Exception):
    """The node already has ``max_pending`` open candidates: raised by a repository
    that several servers share, which checks the limit under the node's lock
    (the core's own count, made before, can be overtaken by another server)."""


class KeyRepository(Protocol):
    """The seam between the server core and a store.

    Every call is made from one thread, the store's (see
    :mod:`keystrap.store.worker`), between :meth:`batch`'s enter and exit.
    """

    def batch(self) -> AbstractContextManager[None]:
        """Group commit: every change made inside becomes durable together, when the
        block exits (the server sends no answer of the batch before that); an
        exception inside undoes them all. A write method called inside is atomic on
        its own, so one request's failure leaves the others' changes: either its own
        changes alone are undone, or the whole batch is and
        :class:`~keystrap.store.errors.StoreInterrupted` asks for it to be run again
        (then each write is undone alone)."""
        ...

    def lookup_request(
        self, controller_id: bytes, tid: int, node_id: bytes
    ) -> tuple[TransactionRecord | None, NodeRecord | None, int]:
        """What a flight 2 is decided on, read together: the transaction already
        recorded under ``(ID_c, TID)`` if any, the node, and how many pending
        transactions the node has."""
        ...

    def lookup_confirm(
        self, controller_id: bytes, tid: int
    ) -> tuple[TransactionRecord, NodeStatus | None] | None:
        """What a flight 6 is decided on, read together: the transaction and the
        status of its node (None if the node is gone), or None if no such
        transaction was recorded."""
        ...

    def add_transaction(self, record: TransactionRecord) -> None:
        """Record a pending transaction atomically; raise :class:`TransactionExists`."""
        ...

    def revocations_after(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        """``(sequence number, ID_i)`` of revocations numbered above ``after``, in order."""
        ...

    def revocation_marks(self) -> tuple[int, int]:
        """The last revocation's sequence number (0 if none), and the last of the
        backup this store was restored from (0 if it records none): a restored
        store numbers new revocations from there again."""
        ...

    def confirm(self, controller_id: bytes, tid: int) -> None:
        """In one atomic step: the node's key becomes the transaction's PSK, the node
        becomes active, this transaction is confirmed and every other pending
        transaction of the node is superseded; keys in all of them are wiped."""
        ...


class InMemoryRepository:
    """A dict-backed repository for tests and the in-process demo."""

    def __init__(self) -> None:
        self.nodes: dict[bytes, NodeRecord] = {}
        self.transactions: dict[tuple[bytes, int], TransactionRecord] = {}
        self.revocations: list[bytes] = []

    def batch(self) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def enroll(self, node_id: bytes, key: bytes) -> None:
        self.nodes[node_id] = NodeRecord(node_id, key, NodeStatus.ENROLLED)

    def revoke(self, node_id: bytes) -> None:
        self.nodes[node_id] = replace(self.nodes[node_id], status=NodeStatus.REVOKED)
        self.revocations.append(node_id)

    def revocations_after(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        numbered = list(enumerate(self.revocations, start=1))
        return [(seq, node_id) for seq, node_id in numbered if seq > after][:limit]

    def revocation_marks(self) -> tuple[int, int]:
        return len(self.revocations), 0

    def get_node(self, node_id: bytes) -> NodeRecord | None:
        return self.nodes.get(node_id)

    def get_transaction(self, controller_id: bytes, tid: int) -> TransactionRecord | None:
        return self.transactions.get((controller_id, tid))

    def count_pending(self, node_id: bytes) -> int:
        return sum(
            1
            for t in self.transactions.values()
            if t.node_id == node_id and t.status is TransactionStatus.PENDING
        )

    def lookup_request(
        self, controller_id: bytes, tid: int, node_id: bytes
    ) -> tuple[TransactionRecord | None, NodeRecord | None, int]:
        previous = self.get_transaction(controller_id, tid)
        return previous, self.get_node(node_id), self.count_pending(node_id)

    def lookup_confirm(
        self, controller_id: bytes, tid: int
    ) -> tuple[TransactionRecord, NodeStatus | None] | None:
        record = self.get_transaction(controller_id, tid)
        if record is None:
            return None
        node = self.get_node(record.node_id)
        return record, None if node is None else node.status

    def add_transaction(self, record: TransactionRecord) -> None:
        key = (record.controller_id, record.tid)
        if key in self.transactions:
            raise TransactionExists(f"TID {record.tid} already recorded")
        self.transactions[key] = record

    def confirm(self, controller_id: bytes, tid: int) -> None:
        record = self.transactions.get((controller_id, tid))
        if record is None or record.psk is None:
            raise UnknownTransaction(f"no pending transaction for TID {tid}")
        node = self.nodes[record.node_id]
        self.nodes[node.node_id] = replace(node, key=record.psk, status=NodeStatus.ACTIVE)
        for key, other in list(self.transactions.items()):
            if other.node_id == record.node_id and other.status is TransactionStatus.PENDING:
                status = (
                    TransactionStatus.CONFIRMED
                    if key == (controller_id, tid)
                    else TransactionStatus.SUPERSEDED
                )
                self.transactions[key] = replace(other, status=status, psk=None, grant=None)
