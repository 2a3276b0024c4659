"""``keystrap server``: the SBS process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Iterator, Mapping

import aiocoap.resource

from keystrap.coap.server import Observer, open_server_context, serve_core
from keystrap.config import ServerConfig
from keystrap.metrics import Metrics, TimedRepository, serve_metrics
from keystrap.protocol import Reply, Server, ServerPolicy, Status
from keystrap.services.instance import InstanceLock
from keystrap.services.lifetime import wait_for_signal
from keystrap.store.activity import ActivityLog
from keystrap.store.keyfile import load_master_key
from keystrap.store.open import Repository, local_state, open_repository
from keystrap.store.postgres_repository import redacted
from keystrap.wire import FlightType, RevocationQuery, peek_type

log = logging.getLogger("keystrap.server")


class LiveControllers(Mapping[bytes, bytes]):
    """``ID_c -> SK_cs`` held in memory, reloaded when the database changed.

    The check (SQLite's data_version, no table read) runs at most once a second,
    so a flood of forged packets costs no repository access at all.
    """

    def __init__(self, repository: Repository, clock: float = 1.0) -> None:
        self._repository = repository
        self._interval = clock
        self._checked = 0.0
        self._version = -1
        self._keys: dict[bytes, bytes] = {}
        self._refresh(force=True)

    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < self._interval:
            return
        self._checked = now
        version = self._repository.data_version()
        if force or version != self._version:
            self._version = version
            self._keys = self._repository.controller_keys()

    def __getitem__(self, controller_id: bytes) -> bytes:
        self._refresh()
        return self._keys[controller_id]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


async def serve(config: ServerConfig, ready: asyncio.Event | None = None) -> None:
    """The port and the lock on the database are taken first: a port in use, or
    a second instance, stops here before any file is written."""
    async with contextlib.AsyncExitStack() as held:
        site = aiocoap.resource.Site()
        held.push_async_callback(
            (await open_server_context(site, config.host, config.port)).shutdown
        )
        held.callback(InstanceLock.acquire(local_state(config), "server").release)
        await _serve(config, site, ready)


async def _serve(
    config: ServerConfig, site: aiocoap.resource.Site, ready: asyncio.Event | None
) -> None:
    async with server_core(config) as (core, observe):
        resource = serve_core(site, core, observe)
        log.info(
            "listening on coap://%s:%d/bs (database %s, %s profile, %d controller(s))",
            config.host,
            config.port,
            redacted(str(config.database)),  # a PostgreSQL URL without its password
            config.profile,
            len(core.controllers),
        )
        try:
            await wait_for_signal(ready)
        finally:
            served = ", ".join(f"{k}={v}" for k, v in sorted(resource.counters.items()))
            log.info("shutting down; replies sent: %s", served or "none")


@contextlib.asynccontextmanager
async def server_core(config: ServerConfig) -> AsyncIterator[tuple[Server, Observer]]:
    """The SBS's core over its store, with its metrics and activity log: what the
    CoAP face serves, and what a controller that includes the server
    (:mod:`keystrap.services.small_network`) calls in memory. The caller holds
    the instance lock on ``config.database``."""
    master_key, created = load_master_key(
        local_state(config), config.master_key, secrets.token_bytes
    )
    if created:
        log.info("created %s (mode 0600); it wraps what is stored", config.master_key)
    repository = open_repository(config, master_key)
    controllers = LiveControllers(repository)
    hardened, compact = config.profile == "hardened", config.compact == "accept"
    policy = ServerPolicy(config.window, config.max_pending, hardened, compact)
    metrics = Metrics("server")
    metrics.open_transactions.set_function(repository.count_all_pending)
    activity = ActivityLog(local_state(config))

    def observe(data: bytes, reply: Reply, seconds: float) -> None:
        metrics.server_reply(data, reply, seconds)
        if reply.event is not None:
            activity.record(reply.event, time.time())
        elif reply.status is Status.OK and peek_type(data) is FlightType.F9_REVOCATION_QUERY:
            activity.heard_from(RevocationQuery.peek_controller(data), time.time())

    core = Server(TimedRepository(repository, metrics), controllers, policy)
    exporter = await serve_metrics(metrics, config.metrics) if config.metrics else None
    flusher = asyncio.create_task(_flush_loop(activity))
    try:
        yield core, observe
    finally:
        flusher.cancel()
        if exporter is not None:
            exporter.close()
        activity.close()
        repository.close()


async def _flush_loop(activity: ActivityLog) -> None:
    while True:
        await asyncio.sleep(0.5)
        activity.flush()
