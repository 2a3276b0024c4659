"""Flight 12: the controller tells a node why its bootstrap cannot succeed.

Without it a node whose server said "unknown node" waits out its whole timeout
and learns nothing. The record is advice, not proof: nothing in it is
authenticated (the node shares no key with the controller before flight 4), so
a node only logs it and keeps to its retry policy; a forged one can make it
wait, never change its keys.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Self

from keystrap.wire.errors import DecodeError, DecodeReason
from keystrap.wire.frozen import frozen
from keystrap.wire.header import FlightType
from keystrap.wire.layout import HDR, ID_I, Flight, Layout


class RefusalReason(IntEnum):
    """Codes of docs/protocol.md § Flight 12; ``OTHER`` covers any refusal added later."""

    UNKNOWN_NODE = 1
    WRONG_KEY = 2
    REVOKED = 3
    SERVER_UNREACHABLE = 4
    CONTROLLER_REFUSED = 5
    UNSUPPORTED_PROFILE = 6
    OTHER = 255

    @property
    def text(self) -> str:
        return self.name.lower().replace("_", " ")


@frozen
class Flight12(Flight):
    """SBR -> SBI, out of band: ``hdr ID_i reason``, in the clear."""

    TYPE = FlightType.F12_REFUSED
    CLEAR = Layout(HDR, ID_I, ("reason", "B"))
    SIZE = CLEAR.size

    node_id: bytes
    reason: RefusalReason

    def encode(self) -> bytes:
        return self.CLEAR.pack(self.header()[0], self.node_id, self.reason)

    @classmethod
    def decode(cls, data: bytes) -> Self:
        node_id, code = cls.clear_fields(data)
        try:
            reason = RefusalReason(code)
        except ValueError:
            raise DecodeError(DecodeReason.BAD_VALUE, f"refusal code {code}") from None
        return cls(node_id, reason)
