"""One-to-one mapping between the protocol's reply status and CoAP response codes."""

from __future__ import annotations

import aiocoap
from aiocoap.numbers.codes import Code

from keystrap.protocol import Status

TO_COAP: dict[Status, Code] = {
    Status.OK: aiocoap.CHANGED,
    Status.BAD_REQUEST: aiocoap.BAD_REQUEST,
    Status.UNAUTHORIZED: aiocoap.UNAUTHORIZED,
    Status.FORBIDDEN: aiocoap.FORBIDDEN,
    Status.NOT_FOUND: aiocoap.NOT_FOUND,
    Status.UNSUPPORTED_PROFILE: aiocoap.NOT_ACCEPTABLE,
    Status.CONFLICT: aiocoap.CONFLICT,
    Status.TOO_MANY_REQUESTS: aiocoap.TOO_MANY_REQUESTS,
    Status.UNAVAILABLE: aiocoap.SERVICE_UNAVAILABLE,
}
FROM_COAP: dict[Code, Status] = {code: status for status, code in TO_COAP.items()}

# The bootstrap resource is the server's root: a request names no Uri-Path, and,
# its path implying application/octet-stream, no Content-Format either (5 bytes
# less per request on a 6LoWPAN link). "/bs" stays as an alias for tools.
BOOTSTRAP_ROOT: tuple[str, ...] = ()
BOOTSTRAP_PATH = ("bs",)
HEALTH_PATH = ("health",)
OCTET_STREAM = 42
MAX_PAYLOAD = 256  # bytes of a request to /bs: every flight fits with room to spare
MAX_REASON = 64
"""Bytes of a refusal's reason the server sends (a diagnostic, not a document):
the rest is cut, so a reason the controller matches (keystrap.protocol.controller's
REFUSALS) must fit whole, or the node hears flight 12 "other"."""
