"""The server's answer to one request, independent of the transport.

The CoAP layer maps :class:`Status` to response codes one to one.
"""

from __future__ import annotations

from enum import Enum

from keystrap.protocol.events import Event
from keystrap.wire.frozen import frozen


class Status(Enum):
    OK = "2.04"  # Changed
    BAD_REQUEST = "4.00"
    UNAUTHORIZED = "4.01"
    FORBIDDEN = "4.03"
    NOT_FOUND = "4.04"
    UNSUPPORTED_PROFILE = "4.06"  # Not Acceptable: a wire version this server does not speak
    CONFLICT = "4.09"
    TOO_MANY_REQUESTS = "4.29"
    UNAVAILABLE = "5.03"

    # Members are singletons, equal only to themselves: the identity hash (C) keeps
    # that, where Enum's own __hash__ is a Python call, and each reply is looked
    # up by its status in two tables.
    __hash__ = object.__hash__

    @property
    def transient(self) -> bool:
        """Worth retrying unchanged: the server may answer differently later."""
        return self is Status.UNAVAILABLE


@frozen
class Reply:
    status: Status
    payload: bytes = b""
    reason: str = ""
    event: Event | None = None
    node_id: bytes | None = None  # whom a refusal is about, once the server knows
