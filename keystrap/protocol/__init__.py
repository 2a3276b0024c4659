"""Sans-I/O state machines of the three roles: :class:`Node` (SBI),
:class:`Controller` (SBR) and :class:`Server` (SBS).

Bytes, the current time and a random source go in; bytes and events come out.
Nothing here opens a socket, reads a clock or draws global randomness, so every
retransmission timer and the timestamp window can be tested without sleeping.

Persistence rule for the layers that drive these machines: after any call that
queued output, store ``machine.state`` durably *before* transmitting. That is
what makes "restart from persisted state" safe at every point.
"""

from keystrap.protocol.controller import (
    Controller,
    ControllerState,
    ControllerTransaction,
    ToNode,
    ToServer,
    TransactionStage,
)
from keystrap.protocol.events import (
    BootstrapConfirmed,
    BootstrapGranted,
    BootstrapRefused,
    ChallengeIssued,
    Event,
    NodeActivated,
    NodeConfirmed,
    NodeKeyed,
    NodeProved,
    Rejected,
    RevocationUnsendable,
    TransactionFailed,
    TransactionStarted,
)
from keystrap.protocol.keys import derive_psk
from keystrap.protocol.node import Node, NodeStage, NodeState
from keystrap.protocol.replies import Reply, Status
from keystrap.protocol.repository import (
    InMemoryRepository,
    KeyRepository,
    NodeRecord,
    NodeStatus,
    TransactionExists,
    TransactionRecord,
    TransactionStatus,
)
from keystrap.protocol.server import Server, ServerPolicy

__all__ = [
    "BootstrapConfirmed",
    "BootstrapGranted",
    "BootstrapRefused",
    "ChallengeIssued",
    "Controller",
    "ControllerState",
    "ControllerTransaction",
    "Event",
    "InMemoryRepository",
    "KeyRepository",
    "Node",
    "NodeActivated",
    "NodeConfirmed",
    "NodeKeyed",
    "NodeProved",
    "NodeRecord",
    "NodeStage",
    "NodeState",
    "NodeStatus",
    "Rejected",
    "Reply",
    "RevocationUnsendable",
    "Server",
    "ServerPolicy",
    "Status",
    "ToNode",
    "ToServer",
    "TransactionExists",
    "TransactionFailed",
    "TransactionRecord",
    "TransactionStage",
    "TransactionStarted",
    "TransactionStatus",
    "derive_psk",
]
