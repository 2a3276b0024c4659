"""A CoAPS client to one node, authenticated with the node's PSK (DTLS 1.2 PSK,
TLS_PSK_WITH_AES_128_CCM_8 through aiocoap's tinydtls transport).

A wrong key shows up as silence: tinydtls drops a Finished it cannot verify
and sends no alert, so the only signal is the timeout, which is reported as
:class:`NodeUnreachable` naming both possible causes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiocoap
from aiocoap.numbers.codes import Code

from keystrap.coap.node_server import CONFIG_PATH, JSON, psk_identity
from keystrap.hostport import format_host_port


class NodeUnreachable(Exception):
    """No DTLS-protected answer in time."""


class NodeRefused(Exception):
    """The node answered with an error code; ``str(exc)`` carries its reason."""

    def __init__(self, code: Code, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


async def _check_route(base: str, host: str, port: int) -> None:
    """Open (and close) the UDP socket aiocoap's DTLS transport will open to the
    node, so that an address no datagram can be sent to is one clear error.

    Why: aiocoap's tinydtls client fails such an address (a name that does not
    resolve, a broadcast address, an IPv6 link-local one without its zone)
    halfway through its set-up, and its clean-up then raises on what was never
    made: a traceback on stderr, and "no DTLS answer" blaming the node.
    """
    loop = asyncio.get_running_loop()
    try:
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=(host, port)
        )
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise NodeUnreachable(f"cannot send to {base}: {reason}") from None
    transport.close()


@dataclass
class NodeClient:
    context: aiocoap.Context
    base: str
    timeout: float

    @classmethod
    async def connect(
        cls, node_id: bytes, psk: bytes, host: str, port: int, timeout: float = 10.0
    ) -> NodeClient:
        base = f"coaps://{format_host_port(host, port)}"
        await _check_route(base, host, port)
        context = await aiocoap.Context.create_client_context(transports=["tinydtls"])
        context.client_credentials.load_from_dict(
            {f"{base}/*": {"dtls": {"psk": psk, "client-identity": psk_identity(node_id)}}}
        )
        return cls(context, base, timeout)

    async def close(self) -> None:
        await self.context.shutdown()

    async def request(self, code: Code, path: tuple[str, ...], payload: bytes = b"") -> bytes:
        message = aiocoap.Message(code=code, uri=f"{self.base}/{'/'.join(path)}", payload=payload)
        if payload:
            message.opt.content_format = JSON
        try:
            response = await asyncio.wait_for(self.context.request(message).response, self.timeout)
        except TimeoutError:
            raise NodeUnreachable(
                f"no DTLS answer from {self.base} within {self.timeout:g} s "
                "(node not serving, or it holds another key)"
            ) from None
        except aiocoap.error.Error as exc:
            # At once, not after the timeout: most often the host's "port
            # unreachable" (nothing serves there), which aiocoap's own text
            # ("Network error: NetworkError") does not say.
            reason = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
            raise NodeUnreachable(
                f"no DTLS answer from {self.base}: {reason} (is the node serving there?)"
            ) from None
        if not response.code.is_successful():
            raise NodeRefused(response.code, response.payload.decode("utf-8", "replace"))
        return bytes(response.payload)

    async def read_config(self) -> bytes:
        return await self.request(aiocoap.GET, CONFIG_PATH)

    async def update_config(self, update: bytes) -> bytes:
        return await self.request(aiocoap.POST, CONFIG_PATH, update)
