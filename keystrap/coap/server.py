"""The SBS's CoAP face: ``POST /bs`` with flight 2 or 6, answered with flight 3 or 7.

The resource is a thin adapter: it hands the payload and the wall clock to the
sans-I/O :class:`keystrap.protocol.Server` and maps its reply to a CoAP response.
Error responses carry the reason as text (never key material).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import aiocoap
import aiocoap.resource as resource

from keystrap.coap.codes import BOOTSTRAP_PATH, HEALTH_PATH, OCTET_STREAM, TO_COAP
from keystrap.ids import eui64
from keystrap.protocol import BootstrapGranted, NodeActivated, Reply, Server, Status

log = logging.getLogger("keystrap.server")

Observer = Callable[[bytes, Reply, float], None]
"""Told of each request the core answered, with the reply and the seconds it took."""

MAX_PAYLOAD = 256


class BootstrapResource(resource.Resource):
    def __init__(self, core: Server, observe: Observer | None = None) -> None:
        super().__init__()
        self.core = core
        self.counters: dict[str, int] = {}
        self._observe = observe

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        remote = request.remote.hostinfo
        fmt = request.opt.content_format
        if fmt is not None and int(fmt) != OCTET_STREAM:
            return self._refuse(aiocoap.UNSUPPORTED_CONTENT_FORMAT, "use application/octet-stream")
        if len(request.payload) > MAX_PAYLOAD:
            return self._refuse(aiocoap.REQUEST_ENTITY_TOO_LARGE, "payload too large")
        begun = time.perf_counter()
        reply = self.core.handle(request.payload, time.time())
        if self._observe is not None:
            self._observe(request.payload, reply, time.perf_counter() - begun)
        self.counters[reply.status.name] = self.counters.get(reply.status.name, 0) + 1
        event = reply.event
        if isinstance(event, BootstrapGranted):
            log.info(
                "granted node=%s controller=%s tid=%d",
                eui64(event.node_id),
                eui64(event.controller_id),
                event.tid,
            )
        elif isinstance(event, NodeActivated):
            log.info(
                "activated node=%s controller=%s tid=%d (initial key replaced)",
                eui64(event.node_id),
                eui64(event.controller_id),
                event.tid,
            )
        elif reply.status is not Status.OK:
            log.debug("refused %s from %s: %s", reply.status.value, remote, reply.reason)
        if reply.status is Status.OK:
            return aiocoap.Message(
                code=TO_COAP[reply.status], payload=reply.payload, content_format=OCTET_STREAM
            )
        return self._refuse(TO_COAP[reply.status], reply.reason)

    @staticmethod
    def _refuse(code: aiocoap.numbers.codes.Code, reason: str) -> aiocoap.Message:
        return aiocoap.Message(code=code, payload=reason.encode()[:64])


class HealthResource(resource.Resource):
    """``GET /health`` -> 2.05 "ok": lets scripts wait until the server is up."""

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(code=aiocoap.CONTENT, payload=b"ok")


class StatsResource(resource.Resource):
    """``GET /stats`` -> JSON counts of the replies sent, by status (no identifiers)."""

    def __init__(self, bootstrap: BootstrapResource) -> None:
        super().__init__()
        self.bootstrap = bootstrap

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        body = json.dumps(self.bootstrap.counters, sort_keys=True).encode()
        return aiocoap.Message(code=aiocoap.CONTENT, payload=body, content_format=50)


def build_site(
    core: Server, observe: Observer | None = None
) -> tuple[resource.Site, BootstrapResource]:
    site = resource.Site()
    bootstrap = BootstrapResource(core, observe)
    site.add_resource(list(BOOTSTRAP_PATH), bootstrap)
    site.add_resource(list(HEALTH_PATH), HealthResource())
    site.add_resource(["stats"], StatsResource(bootstrap))
    return site, bootstrap
