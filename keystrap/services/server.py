"""``keystrap server``: the SBS process."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar, overload

import aiocoap.resource

from keystrap.coap.fast_path import Screen, Submit
from keystrap.coap.fast_path import install as install_fast_path
from keystrap.coap.server import Answer, Observer, open_server_context, serve_core
from keystrap.config import ServerConfig
from keystrap.hostport import format_host_port
from keystrap.metrics import Metrics, TimedRepository, serve_metrics
from keystrap.protocol import Reply, Server, ServerPolicy, Status
from keystrap.services.instance import InstanceLock
from keystrap.services.lifetime import wait_for_signal
from keystrap.services.logs import Outage
from keystrap.store.activity import ActivityLog
from keystrap.store.errors import StoreError, StoreInterrupted
from keystrap.store.keyfile import open_with_master_key
from keystrap.store.open import Repository, local_state, open_repository
from keystrap.store.postgres_url import redacted
from keystrap.store.sqlite import refuse_tableless
from keystrap.store.sqlite_repository import SERVER_STORE
from keystrap.store.worker import StoreClosed, StoreThread
from keystrap.wire import Flight9

log = logging.getLogger("keystrap.server")
BATCH_ATTEMPTS = 3
GC_YOUNG_THRESHOLD = 200_000
"""Allocations between two collections of the youngest generation (Python's default
is 700). Each collection walks every object still alive from the requests in
flight, about 20 per request, and finds next to no garbage: the server makes
almost no reference cycles (12 objects collected over two bursts of 6,000
bootstraps). At the default the collector took about a sixth of the event
loop's CPU; at 50,000 two such bursts still paid five to seven collections of
35-45 ms each, 15-23 µs per bootstrap (docs/performance.md §3). At 200,000 they
pay none; a burst of 24,000 paid two, of about 80 ms each: a pause well inside
CoAP's first retransmission timeout (2-3 s)."""
T = TypeVar("T")
Requests = StoreThread[tuple[bytes, float], Reply]
"""The store's thread as the server uses it: (request, wall-clock time) -> reply."""


class LiveControllers(Mapping[bytes, bytes]):
    """``ID_c -> SK_cs`` held in memory, reloaded when the database changed.

    The check (SQLite's data_version, no table read) runs at most once a second,
    so a flood of forged packets costs no repository access at all. Looked up
    twice per request on the store's thread, hence :meth:`get` of its own (the
    Mapping's goes through ``__getitem__`` and an exception for a miss).
    ``clock`` is the monotonic clock the interval is measured on, so that a
    test can step it rather than sleep and hope the machine kept up.
    """

    def __init__(
        self,
        repository: Repository,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._repository = repository
        self._interval = interval
        self._clock = clock
        self._checked = 0.0
        self._version = -1
        self._keys: dict[bytes, bytes] = {}
        self.refresh(force=True)

    def snapshot(self) -> Mapping[bytes, bytes]:
        """The table as last loaded, for another thread: replaced whole on each
        reload, never changed in place."""
        return self._keys

    def refresh(self, force: bool = False) -> None:
        """On the store's thread only: it reads the store's connection."""
        now = self._clock()
        if not force and now - self._checked < self._interval:
            return
        self._checked = now
        version = self._repository.data_version()
        if force or version != self._version:
            self._version = version
            self._keys = self._repository.controller_keys()

    def __getitem__(self, controller_id: bytes) -> bytes:
        self.refresh()
        return self._keys[controller_id]

    @overload
    def get(self, controller_id: bytes, /) -> bytes | None: ...

    @overload
    def get(self, controller_id: bytes, /, default: bytes | T) -> bytes | T: ...

    def get(self, controller_id: bytes, /, default: object = None) -> object:
        self.refresh()
        return self._keys.get(controller_id, default)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


async def serve(config: ServerConfig, ready: asyncio.Event | None = None) -> None:
    """The port and the lock on the database are taken first: a port in use, or
    a second instance, stops here before any file is written."""
    async with contextlib.AsyncExitStack() as held:
        site = aiocoap.resource.Site()
        context = await open_server_context(site, config.host, config.port)
        held.push_async_callback(context.shutdown)
        held.callback(InstanceLock.acquire(local_state(config), "server").release)
        await _serve(config, site, context, ready)


async def _serve(
    config: ServerConfig,
    site: aiocoap.resource.Site,
    context: aiocoap.Context,
    ready: asyncio.Event | None,
) -> None:
    async with server_core(config) as serving:
        resource = serve_core(site, serving.answer, serving.observe)
        controllers = serving.controllers
        install_fast_path(
            context,
            serving.screen,
            serving.submit,
            resource.report,
        )
        # Start-up is over: what it made lives as long as the server, so the
        # collector need not walk it again (gc.freeze), and collects the young
        # generation less often.
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD)
        log.info(
            "listening on coap://%s/bs (database %s, %s profile, %d controller(s))",
            format_host_port(config.host, config.port),
            redacted(str(config.database)),  # a PostgreSQL URL without its password
            config.profile,
            len(controllers),
        )
        try:
            async with resource.reply_log.summaries():
                await wait_for_signal(ready)
        finally:
            served = ", ".join(f"{k}={v}" for k, v in sorted(resource.counters.items()))
            log.info(
                "shutting down; replies sent: %s; %d request(s) in %d commit(s)",
                served or "none",
                serving.store.requests,
                serving.store.batches,
            )


@dataclass(frozen=True)
class ServingCore:
    """The SBS's core as the services reach it: its answers come from the store's
    thread, awaited (:data:`keystrap.coap.server.Answer`)."""

    answer: Answer
    submit: Submit
    """:data:`answer` as a callback, for a service that answers datagrams."""
    screen: Screen
    """The core's stateless checks of a flight 2, on the loop, before any store work."""
    observe: Observer
    controllers: LiveControllers
    store: Requests
    count_pending: Callable[[], Awaitable[int]]
    """Bootstraps started and not finished, counted on the store's thread."""


@contextlib.asynccontextmanager
async def server_core(config: ServerConfig) -> AsyncIterator[ServingCore]:
    """The SBS's core over its store, with its metrics and activity log: what the
    CoAP face serves, and what a controller that includes the server
    (:mod:`keystrap.services.small_network`) calls in memory. The caller holds
    the instance lock on ``config.database``.

    The metrics address is bound first: one in use stops the start before a
    store or a master key is made."""
    metrics = Metrics("server")
    serving: ServingCore | None = None

    async def refresh_gauges() -> None:
        if serving is not None:  # always, once a scrape can reach it (below)
            metrics.open_transactions.set(await serving.count_pending())

    exporter = (
        await serve_metrics(metrics, config.metrics, refresh_gauges) if config.metrics else None
    )
    try:
        async with _serving_core(config, metrics) as serving:
            try:
                yield serving
            finally:
                # Closed before the store: a scrape meanwhile read the gauges from
                # a closed store, and logged a warning at every shutdown.
                if exporter is not None:
                    exporter.close()
    finally:
        if exporter is not None:
            exporter.close()


@contextlib.asynccontextmanager
async def _serving_core(config: ServerConfig, metrics: Metrics) -> AsyncIterator[ServingCore]:
    if isinstance(config.database, Path) and config.database.exists():
        refuse_tableless(config.database, SERVER_STORE)  # only `admin controller add` adopts it
    repository, created = open_with_master_key(
        local_state(config),
        config.master_key,
        secrets.token_bytes,
        partial(open_repository, config),
    )
    if created:
        log.info("created the wrapping file the configuration names (mode 0600)")
    activity = ActivityLog(local_state(config))
    # Read after the last write of start-up: an idle server's polls of the
    # controller table then find nothing new and leave even SQLite's -shm alone.
    controllers = LiveControllers(repository)
    hardened, compact = config.profile == "hardened", config.compact == "accept"
    policy = ServerPolicy(config.window, config.max_pending, hardened, compact)
    core = Server(TimedRepository(repository, metrics), controllers, policy)
    # From here on, the repository and the activity log are touched only on the
    # store's thread.
    store: Requests = StoreThread(partial(answer_batch, core), "keystrap-store")
    # The store failing (another process holding its write lock, a full disk,
    # PostgreSQL away): every request meets it again, and each wrote a line.
    outage = Outage(log, "store available again")

    async def answer(data: bytes, now: float) -> Reply:
        try:
            reply = await store.ask((data, now))
        except _STORE_FAILURES as exc:
            return _unavailable(outage, exc)
        outage.works()
        return reply

    def screen(data: bytes) -> Reply | None:
        return core.screen(data, controllers.snapshot())

    def submit(data: bytes, now: float, answered: Callable[[Reply], None]) -> None:
        try:
            store.submit((data, now), partial(_deliver, outage, answered))  # see fast_path
        except StoreClosed as exc:
            answered(_unavailable(outage, exc))

    flusher = asyncio.create_task(_flush_loop(activity, controllers, store))
    try:
        yield ServingCore(
            answer,
            submit,
            screen,
            observer(metrics, activity),
            controllers,
            store,
            partial(store.call, repository.count_all_pending),
        )
    finally:
        flusher.cancel()
        last = activity.take()

        def close() -> None:
            activity.write(last)
            activity.close()
            repository.close()

        await store.close(close)


def observer(metrics: Metrics, activity: ActivityLog) -> Observer:
    """What the server does with each reply it sends: counted into ``metrics``,
    and its event (or a controller heard from) recorded in ``activity``."""

    def observe(data: bytes, reply: Reply, seconds: float) -> None:
        metrics.server_reply(data, reply, seconds)
        if reply.event is not None:
            activity.record(reply.event, time.time())
        elif reply.status is Status.OK and data[:1] == Flight9.header():
            activity.heard_from(Flight9.peek_controller(data), time.time())

    return observe


_STORE_FAILURES = (sqlite3.Error, StoreError, StoreClosed)


def _deliver(
    outage: Outage,
    answered: Callable[[Reply], None],
    reply: Reply | None,
    error: BaseException | None,
) -> None:
    if reply is None:
        reply = _unavailable(outage, error)
    else:
        outage.works()
    answered(reply)


def _unavailable(outage: Outage, error: BaseException | None) -> Reply:
    """Each request is answered 5.03 (and counted); the log says it once."""
    reason = str(error)
    outage.failed(
        reason,
        "store unavailable: %s; answering 5.03, quietly while this lasts",
        "store still unavailable: %s",
        reason,
        level=logging.ERROR,
    )
    return Reply(Status.UNAVAILABLE, reason="store unavailable; retry")


def answer_batch(core: Server, requests: Sequence[tuple[bytes, float]]) -> list[Reply]:
    """On the store's thread: answer queued requests in one transaction, one commit.

    A request whose store work fails is answered 5.03 and its own changes are
    undone; the batch's other answers stand. A batch the store lost or undid
    whole (a PostgreSQL connection cut; on SQLite, a write that failed halfway)
    is run again: none of its answers was sent, none of its work kept."""
    attempts = 1
    while True:
        try:
            with core.repository.batch():
                return [_answer_one(core, data, now) for data, now in requests]
        except StoreInterrupted as exc:
            if attempts == BATCH_ATTEMPTS:
                raise
            attempts += 1
            log.warning("%s; the batch of %d request(s) runs again", exc, len(requests))


def _answer_one(core: Server, data: bytes, now: float) -> Reply:
    try:
        return core.handle(data, now)
    except StoreInterrupted:
        raise  # the batch's transaction is gone: none of its answers may leave
    except (sqlite3.Error, StoreError) as exc:
        log.error("store error on one request: %s", exc)
        return Reply(Status.UNAVAILABLE, reason="store error; retry")


async def _flush_loop(activity: ActivityLog, controllers: LiveControllers, store: Requests) -> None:
    """Twice a second: the activity log written, and the controller table the
    pre-filter reads kept as fresh as the core's (reloaded when it changed).

    A store that fails (PostgreSQL away longer than its reconnection time) is
    one log line per reason while it lasts, and the loop goes on: it used to end
    silently, the activity log then kept in memory, growing, until the server
    stopped. Its own :class:`Outage`, not the requests': the activity log is
    another file, which may fail while the key repository works."""
    outage = Outage(log, "activity log and controller table written and read again")
    while True:
        await asyncio.sleep(0.5)
        batch = activity.take()
        try:
            await store.call(partial(activity.write, batch))
            await store.call(controllers.refresh)
        except StoreClosed:
            return
        except (sqlite3.Error, StoreError) as exc:
            reason = str(exc)
            outage.failed(
                reason,
                "store unavailable for the activity log and controller table: %s",
                "store still unavailable for the activity log and controller table: %s",
                reason,
            )
        else:
            outage.works()
