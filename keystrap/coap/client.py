"""The SBR's CoAP client to the SBS: confirmable POSTs, so CoAP retransmits on loss."""

from __future__ import annotations

import aiocoap

from keystrap.coap.codes import FROM_COAP, OCTET_STREAM
from keystrap.protocol import Reply, Status


class ServerUnreachable(Exception):
    """No CoAP answer at all (after CoAP's own retransmissions)."""


class SbsClient:
    def __init__(self, context: aiocoap.Context, base_uri: str) -> None:
        self._context = context
        self._uri = base_uri.rstrip("/") + "/bs"

    async def post(self, data: bytes) -> Reply:
        message = aiocoap.Message(
            code=aiocoap.POST, payload=data, uri=self._uri, content_format=OCTET_STREAM
        )
        try:
            response = await self._context.request(message).response
        except aiocoap.error.Error as exc:
            raise ServerUnreachable(str(exc)) from exc
        status = FROM_COAP.get(response.code)
        if status is None:
            # An answer we did not expect (e.g. 5.00 from a crashing server): retry later.
            return Reply(Status.UNAVAILABLE, reason=f"unexpected CoAP code {response.code}")
        if status is Status.OK:
            return Reply(status, response.payload)
        return Reply(status, reason=response.payload.decode("utf-8", "replace"))
