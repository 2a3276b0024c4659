"""The node's CoAPS face after bootstrapping: DTLS 1.2, PSK mode, with PSK_i.

tinydtls (through aiocoap's ``tinydtls_server`` transport) offers exactly one
PSK suite, TLS_PSK_WITH_AES_128_CCM_8 -- the suite the paper names -- and the
node answers nothing in plain CoAP: this is the only transport it binds.

The PSK identity is the node's EUI-64 as text (``02:00:...:01``), which is what
an operator types after ``coap-client -u``.

Resources:
  ``/config``  GET: the settings as JSON; POST: merge an update, answer with
               what was applied (2.04), or 4.00 and the reason, nothing changed.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import aiocoap
import aiocoap.resource as resource
from aiocoap.credentials import CredentialsMap

from keystrap.coap.server import BindError
from keystrap.hostport import format_host_port
from keystrap.ids import eui64
from keystrap.settings import NodeSettings, SettingsError, apply_update, parse_update
from keystrap.store.errors import StoreError

log = logging.getLogger("keystrap.node")

JSON = 50
CONFIG_PATH = ("config",)


class ConfigResource(resource.Resource):
    def __init__(self, settings: NodeSettings, save: Callable[[NodeSettings], None]) -> None:
        super().__init__()
        self.settings = settings
        self._save = save
        self._lock = asyncio.Lock()

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(
            code=aiocoap.CONTENT, payload=self.settings.to_json(), content_format=JSON
        )

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        fmt = request.opt.content_format
        if fmt is not None and int(fmt) != JSON:
            return _refuse(aiocoap.UNSUPPORTED_CONTENT_FORMAT, "send application/json")
        async with self._lock:  # read-modify-write of the whole settings
            try:
                updated = apply_update(self.settings, parse_update(request.payload))
            except SettingsError as exc:
                log.info("configuration refused: %s", exc)
                return _refuse(aiocoap.BAD_REQUEST, str(exc))
            try:
                self._save(updated)  # persisted (atomically) before it is applied or confirmed
            except (OSError, StoreError) as exc:
                # The node file cannot be written (a full disk, a directory made
                # read-only, a file edited by hand): nothing is applied, and the
                # controller is told so rather than left with aiocoap's bare 5.00
                # and a traceback in the node's log.
                log.error("configuration not applied: the node file cannot be saved: %s", exc)
                return _refuse(aiocoap.INTERNAL_SERVER_ERROR, "settings not saved; nothing changed")
            self.settings = updated
        log.info("configuration applied: %s", updated.to_json().decode())
        return aiocoap.Message(code=aiocoap.CHANGED, payload=updated.to_json(), content_format=JSON)


def _refuse(code: aiocoap.numbers.codes.Code, reason: str) -> aiocoap.Message:
    return aiocoap.Message(code=code, payload=reason.encode()[:200])


def psk_identity(node_id: bytes) -> bytes:
    return eui64(node_id).encode()


@dataclass
class NodeCoapsServer:
    context: aiocoap.Context
    host: str
    port: int
    config: ConfigResource

    @property
    def uri(self) -> str:
        return f"coaps://{format_host_port(self.host, self.port)}"

    async def shutdown(self) -> None:
        await self.context.shutdown()


async def serve_coaps(
    node_id: bytes,
    psk: bytes,
    host: str,
    port: int,
    settings: NodeSettings,
    save: Callable[[NodeSettings], None],
) -> NodeCoapsServer:
    """Serve ``/config`` over DTLS-PSK on ``host:port`` (UDP)."""
    site = resource.Site()
    config = ConfigResource(settings, save)
    site.add_resource(list(CONFIG_PATH), config)
    site.add_resource(
        [".well-known", "core"], resource.WKCResource(site.get_resources_as_linkheader)
    )
    credentials = CredentialsMap()
    credentials.load_from_dict(
        {":node-owner": {"dtls": {"psk": psk, "client-identity": psk_identity(node_id)}}}
    )
    # A port in use is refused, as the SBS's is (keystrap.coap.server.open_server_context):
    # with aiocoap's default SO_REUSEPORT a second node agent on the port started and
    # shared its datagrams, so a DTLS handshake reached the node holding the other PSK.
    os.environ["AIOCOAP_REUSE_PORT"] = "0"
    try:
        # aiocoap binds a coaps transport one above the port it is given (5683 -> 5684).
        context = await aiocoap.Context.create_server_context(
            site,
            bind=(host, port - 1),
            transports=["tinydtls_server"],
            server_credentials=credentials,
        )
    except OSError as exc:
        where = format_host_port(host, port)
        if exc.errno == errno.EADDRINUSE:
            raise BindError(f"UDP {where} is in use by another process") from None
        raise BindError(f"cannot bind UDP {where}: {exc.strerror or exc}") from None
    return NodeCoapsServer(context, host, port, config)
