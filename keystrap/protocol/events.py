"""Events the state machines report. None carries key material, so any of them
may be logged as it is."""

from __future__ import annotations

from keystrap.wire.frozen import frozen


@frozen
class Rejected:
    """An input was refused; no state changed."""

    role: str
    reason: str


@frozen
class TransactionStarted:
    node_id: bytes
    tid: int


@frozen
class ChallengeIssued:
    """The controller authenticated flight 3 and produced flight 4."""

    node_id: bytes
    tid: int


@frozen
class NodeKeyed:
    """The node authenticated the controller, derived PSK_i and SK_i, and erased IK."""

    node_id: bytes
    tid: int


@frozen
class NodeConfirmed:
    """The node verified flight 11: the server holds its PSK_i (flight 7 arrived)."""

    node_id: bytes
    tid: int


@frozen
class NodeProved:
    """The controller verified flight 5: the node holds PSK_i."""

    node_id: bytes
    tid: int


@frozen
class BootstrapConfirmed:
    """The server acknowledged the commit: it now holds PSK_i and no IK for this node."""

    node_id: bytes
    tid: int


@frozen
class TransactionFailed:
    node_id: bytes
    tid: int
    reason: str


@frozen
class BootstrapGranted:
    """The server answered a fresh flight 2 (a pending candidate PSK now exists)."""

    node_id: bytes
    controller_id: bytes
    tid: int


@frozen
class NodeActivated:
    """The server replaced the node's key with PSK_i."""

    node_id: bytes
    controller_id: bytes
    tid: int


@frozen
class BootstrapRefused:
    """The server refused an authenticated flight 2 or 6 of a known controller; the
    operator's console shows ``reason`` in the node's history."""

    node_id: bytes
    controller_id: bytes
    tid: int
    flight: int
    reason: str


@frozen
class RevocationUnsendable:
    """The store numbers a revocation beyond what flight 10 carries (only a hand
    edit or a foreign tool can): no controller can be told of it, or of any
    numbered after it, until the store is mended."""

    seq: int
    node_id: bytes


Event = (
    Rejected
    | TransactionStarted
    | ChallengeIssued
    | NodeKeyed
    | NodeConfirmed
    | NodeProved
    | BootstrapConfirmed
    | TransactionFailed
    | BootstrapGranted
    | NodeActivated
    | BootstrapRefused
    | RevocationUnsendable
)
