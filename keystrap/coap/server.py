"""The SBS's CoAP face: ``POST /`` (or ``/bs``) with flight 2 or 6, answered with flight 3 or 7.

The resource is a thin adapter: it hands the payload and the wall clock to an
answering function (the sans-I/O :class:`keystrap.protocol.Server` on the store's
thread, see :mod:`keystrap.services.server`), awaits its reply without blocking
the loop, and maps the reply to a CoAP response. Error responses carry the
reason as text (never key material).

A plain bootstrap request never gets this far on a running server: it is
answered on the raw datagram (:mod:`keystrap.coap.fast_path`). This resource
answers what that path leaves to aiocoap (a request with options aiocoap must
judge), and every reply from either path is reported here (:meth:`report`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiocoap
import aiocoap.resource as resource

from keystrap.coap.codes import (
    BOOTSTRAP_PATH,
    BOOTSTRAP_ROOT,
    HEALTH_PATH,
    MAX_PAYLOAD,
    MAX_REASON,
    OCTET_STREAM,
    TO_COAP,
)
from keystrap.ids import eui64
from keystrap.protocol import (
    BootstrapGranted,
    NodeActivated,
    Reply,
    RevocationUnsendable,
    Status,
)

log = logging.getLogger("keystrap.server")

Answer = Callable[[bytes, float], Awaitable[Reply]]
"""A request and the wall-clock time it arrived -> the reply, durable once returned."""

Observer = Callable[[bytes, Reply, float], None]
"""Told of each request the core answered, with the reply and the seconds it took."""


SUMMARY_INTERVAL = 10.0
"""Seconds between the server's summary lines."""


_STEPS = (BootstrapGranted, NodeActivated)
_STATUS_NAMES = {status: status.name for status in Status}  # Enum.name is a descriptor call


class ReplyLog:
    """What the server logs of its replies.

    A line per bootstrap (granted, activated) is DEBUG: at thousands of
    bootstraps a second such lines would cost more CPU than the bootstraps
    (about 50 µs each) and bury everything else, and each node's history is
    kept anyway, in the activity log the console and ``keystrap admin`` read.
    INFO gets a summary every :data:`SUMMARY_INTERVAL` seconds instead. A
    refusal naming a node is a WARNING of its own: it needs an authentic
    request, so only a registered controller can cause one. A refusal naming
    none (malformed, unknown controller, forged) is what a flood is made of, so
    it is only counted, with the latest one shown in the summary. A revocation
    the store numbers beyond what flight 10 carries is an ERROR once, not at
    every controller's every poll.
    """

    def __init__(self) -> None:
        self._counts = {"granted": 0, "activated": 0, "refused": 0}
        self._latest_anonymous = ""
        self._unsendable = 0  # the revocation number last logged as unsendable

    def reply(self, reply: Reply, remote: str) -> None:
        event = reply.event
        if isinstance(event, _STEPS):
            what = "granted" if isinstance(event, BootstrapGranted) else "activated"
            self._counts[what] += 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "%s node=%s controller=%s tid=%d%s",
                    what,
                    eui64(event.node_id),
                    eui64(event.controller_id),
                    event.tid,
                    " (bootstrap complete)" if what == "activated" else "",
                )
        elif reply.status is not Status.OK:
            self._counts["refused"] += 1
            if isinstance(event, RevocationUnsendable) and event.seq != self._unsendable:
                self._unsendable = event.seq
                log.error(
                    "revocation feed: revocation %d (node=%s) is numbered above 2^32-1, more "
                    "than flight 10 carries (was the store edited?); no controller is told of "
                    "it, or of any revocation after it, until the store is mended (keystrap "
                    "admin check names them)",
                    event.seq,
                    eui64(event.node_id),
                )
            if reply.node_id is None:
                self._latest_anonymous = f"{remote}: {reply.status.value} {reply.reason}"
            else:
                log.warning(
                    "refused node=%s from %s: %s %s",
                    eui64(reply.node_id),
                    remote,
                    reply.status.value,
                    reply.reason,
                )

    @contextlib.asynccontextmanager
    async def summaries(self) -> AsyncIterator[None]:
        """A summary every :data:`SUMMARY_INTERVAL` seconds while inside; the last
        one on the way out."""

        async def every_interval() -> None:
            while True:
                await asyncio.sleep(SUMMARY_INTERVAL)
                self.summary()

        task = asyncio.create_task(every_interval())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self.summary()

    def summary(self) -> None:
        """One INFO line with the counts since the last one, if anything happened."""
        if not any(self._counts.values()):
            return
        counts = ", ".join(f"{n} {what}" for what, n in self._counts.items())
        latest = self._latest_anonymous
        log.info(
            "since the last summary: %s%s",
            counts,
            f" (latest refusal naming no node, from {latest})" if latest else "",
        )
        self._counts = dict.fromkeys(self._counts, 0)
        self._latest_anonymous = ""


class BindError(Exception):
    """The server's address cannot be bound: in use, not ours, or not resolvable."""


class BootstrapResource(resource.Resource):
    def __init__(self, answer: Answer, observe: Observer | None = None) -> None:
        super().__init__()
        self._answer = answer
        self.counters: dict[str, int] = {}
        self._observe = observe
        self.reply_log = ReplyLog()

    async def answer(self, payload: bytes, remote: str) -> Reply:
        """The core's reply to one request, reported; the CoAP face above, and the
        controller's in-process handover in a small network
        (:mod:`keystrap.services.small_network`), both answer through here."""
        begun = time.perf_counter()
        reply = await self._answer(payload, time.time())
        self.report(payload, reply, time.perf_counter() - begun, remote)
        return reply

    def report(self, payload: bytes, reply: Reply, seconds: float, remote: str) -> None:
        """One reply sent, here or by :mod:`keystrap.coap.fast_path`: counted,
        observed and logged."""
        if self._observe is not None:
            self._observe(payload, reply, seconds)
        name = _STATUS_NAMES[reply.status]
        self.counters[name] = self.counters.get(name, 0) + 1
        self.reply_log.reply(reply, remote)

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        remote = request.remote.hostinfo
        fmt = request.opt.content_format
        if fmt is not None and int(fmt) != OCTET_STREAM:
            return self._refuse(aiocoap.UNSUPPORTED_CONTENT_FORMAT, "use application/octet-stream")
        if len(request.payload) > MAX_PAYLOAD:
            return self._refuse(aiocoap.REQUEST_ENTITY_TOO_LARGE, "payload too large")
        reply = await self.answer(request.payload, remote)
        if reply.status is Status.OK:
            return aiocoap.Message(code=TO_COAP[reply.status], payload=reply.payload)
        return self._refuse(TO_COAP[reply.status], reply.reason)

    @staticmethod
    def _refuse(code: aiocoap.numbers.codes.Code, reason: str) -> aiocoap.Message:
        return aiocoap.Message(code=code, payload=reason.encode()[:MAX_REASON])


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


def serve_core(
    site: resource.Site, answer: Answer, observe: Observer | None = None
) -> BootstrapResource:
    """Put the server's resources into ``site`` (bound already, see below)."""
    bootstrap = BootstrapResource(answer, observe)
    site.add_resource(list(BOOTSTRAP_ROOT), bootstrap)
    site.add_resource(list(BOOTSTRAP_PATH), bootstrap)
    site.add_resource(list(HEALTH_PATH), HealthResource())
    site.add_resource(["stats"], StatsResource(bootstrap))
    return bootstrap


async def open_server_context(site: resource.Site, host: str, port: int) -> aiocoap.Context:
    """Serve ``site`` on UDP ``host:port``, alone.

    Bound before anything else starts, so that a port in use is an error before
    any file is written.

    aiocoap's udp6 transport sets SO_REUSEPORT unless ``AIOCOAP_REUSE_PORT`` is
    0, its documented switch; with it set, a second server on the port would
    start and silently share the datagrams, answering half of them from a
    database that knows none of the controllers. Only udp6 is opened: the
    protocol runs over plain CoAP, and every other listener would be a port to
    collide on.
    """
    os.environ["AIOCOAP_REUSE_PORT"] = "0"
    try:
        return await aiocoap.Context.create_server_context(
            site, bind=(host, port), transports=["udp6"]
        )
    except aiocoap.error.ResolutionError:
        raise BindError(f"cannot bind to {host}: no such local address") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise BindError(f"UDP port {port} on {host} is in use by another process") from None
        raise BindError(f"cannot bind UDP {host}:{port}: {exc.strerror or exc}") from None
