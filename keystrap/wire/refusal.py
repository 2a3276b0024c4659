"""Flight 12: the controller tells a node why its bootstrap cannot succeed.

Without it a node whose server said "unknown node" waits out its whole timeout
and learns nothing. The record is advice, not proof: nothing in it is
authenticated (the node shares no key with the controller before flight 4), so
a node only logs it and keeps to its retry policy; a forged one can make it
wait, never change its keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from keystrap.wire.errors import DecodeError, DecodeReason
from keystrap.wire.header import FlightType, check_frame, header_byte
from keystrap.wire.sizes import ID_SIZE

F12_SIZE = 1 + ID_SIZE + 1


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


@dataclass(frozen=True)
class Refusal:
    node_id: bytes
    reason: RefusalReason

    def encode(self) -> bytes:
        return header_byte(FlightType.F12_REFUSED) + self.node_id + bytes([self.reason])

    @classmethod
    def decode(cls, data: bytes) -> Refusal:
        check_frame(data, FlightType.F12_REFUSED, F12_SIZE)
        try:
            reason = RefusalReason(data[-1])
        except ValueError:
            raise DecodeError(DecodeReason.BAD_VALUE, f"refusal code {data[-1]}") from None
        return cls(data[1 : 1 + ID_SIZE], reason)


def is_refusal(data: bytes) -> bool:
    """Cheap test for the session's raw records (no medium carries 10 bytes
    starting with 0x1C)."""
    return len(data) == F12_SIZE and data[:1] == header_byte(FlightType.F12_REFUSED)
