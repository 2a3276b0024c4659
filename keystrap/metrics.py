"""Prometheus metrics of the server and the controller, and the small HTTP server
that answers ``GET /metrics`` with them.

Both services count the same things under the same names (a scrape's ``job``
label tells them apart), fed from the replies and events their cores already
emit. Label values come from the cores' reasons with numbers masked, so a TID in
a message cannot grow a new time series per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from keystrap.hostport import parse_host_port
from keystrap.protocol import (
    BootstrapConfirmed,
    BootstrapGranted,
    BootstrapRefused,
    Event,
    NodeActivated,
    Rejected,
    Reply,
    Status,
    TransactionFailed,
    TransactionStarted,
)
from keystrap.protocol.repository import KeyRepository, NodeRecord, TransactionRecord
from keystrap.wire import DecodeError, flight_class

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
MAX_TRACKED = 100_000  # bootstraps whose start time is kept for the latency histogram


def label(reason: str) -> str:
    """A bounded label value: digits masked, at most 60 characters."""
    return re.sub(r"\d+", "N", reason)[:60] or "unknown"


def flight_label(data: bytes) -> str:
    try:
        return str(int(flight_class(data).TYPE))  # either profile
    except DecodeError:
        return "invalid"


class Metrics:
    def __init__(self, role: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.started = Counter(
            "keystrap_bootstraps_started", f"Bootstraps the {role} started", registry=r
        )
        self.confirmed = Counter(
            "keystrap_bootstraps_confirmed", "Bootstraps confirmed by the server", registry=r
        )
        self.failed = Counter(
            "keystrap_bootstraps_failed", "Bootstraps that failed, by cause", ["cause"], registry=r
        )
        self.flights = Counter(
            "keystrap_flights_received",
            "Flights received, by flight number",
            ["flight"],
            registry=r,
        )
        self.rejected = Counter(
            "keystrap_flights_rejected", "Flights refused, by reason", ["reason"], registry=r
        )
        self.flight_seconds = Histogram(
            "keystrap_flight_seconds",
            "Time to handle one flight, store included",
            ["flight"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.bootstrap_seconds = Histogram(
            "keystrap_bootstrap_seconds",
            "From the bootstrap's first flight here to its confirmation",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.open_transactions = Gauge(
            "keystrap_open_transactions", "Bootstraps started and not yet finished", registry=r
        )
        self.store_seconds = Histogram(
            "keystrap_store_seconds",
            "Time of one store operation",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._begun: dict[tuple[bytes, int], float] = {}

    def bootstrap_started(self, controller_id: bytes, tid: int) -> None:
        self.started.inc()
        if len(self._begun) >= MAX_TRACKED:
            self._begun.pop(next(iter(self._begun)))
        self._begun[(controller_id, tid)] = time.monotonic()

    def bootstrap_ended(self, controller_id: bytes, tid: int, failure: str | None) -> None:
        begun = self._begun.pop((controller_id, tid), None)
        if failure is None:
            self.confirmed.inc()
            if begun is not None:
                self.bootstrap_seconds.observe(time.monotonic() - begun)
        else:
            self.failed.labels(label(failure)).inc()

    def server_reply(self, data: bytes, reply: Reply, seconds: float) -> None:
        """One request the server answered (flight 2, 6 or 9) in ``seconds``."""
        self.flight_handled(data, seconds)
        if reply.status is not Status.OK:
            self.rejected.labels(label(reply.reason)).inc()
        event = reply.event
        if isinstance(event, BootstrapGranted):
            self.bootstrap_started(event.controller_id, event.tid)
        elif isinstance(event, NodeActivated):
            self.bootstrap_ended(event.controller_id, event.tid, None)
        elif isinstance(event, BootstrapRefused):
            self.bootstrap_ended(event.controller_id, event.tid, event.reason)

    def controller_event(self, controller_id: bytes, event: Event) -> None:
        """One event of the controller's core (its open transactions are counted
        here; the server's come from its store)."""
        if isinstance(event, TransactionStarted):
            self.bootstrap_started(controller_id, event.tid)
            self.open_transactions.inc()
        elif isinstance(event, BootstrapConfirmed | TransactionFailed):
            failure = event.reason if isinstance(event, TransactionFailed) else None
            self.bootstrap_ended(controller_id, event.tid, failure)
            self.open_transactions.dec()
        elif isinstance(event, Rejected):
            self.rejected.labels(label(event.reason)).inc()

    def flight_handled(self, data: bytes, seconds: float, flight: str = "") -> None:
        """``flight`` names what ``data`` is when its first byte does not (a refusal's text)."""
        flight = flight or flight_label(data)
        self.flights.labels(flight).inc()
        self.flight_seconds.labels(flight).observe(seconds)

    @contextlib.contextmanager
    def timed_store(self, operation: str) -> Iterator[None]:
        begun = time.perf_counter()
        try:
            yield
        finally:
            self.store_seconds.labels(operation).observe(time.perf_counter() - begun)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class TimedRepository:
    """The server's repository with each call timed into ``keystrap_store_seconds``."""

    def __init__(self, inner: KeyRepository, metrics: Metrics) -> None:
        self._inner = inner
        self._timed = metrics.timed_store

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Timed as a whole, its commit (the fsync) included."""
        with self._timed("batch"), self._inner.batch():
            yield

    def get_node(self, node_id: bytes) -> NodeRecord | None:
        with self._timed("get_node"):
            return self._inner.get_node(node_id)

    def get_transaction(self, controller_id: bytes, tid: int) -> TransactionRecord | None:
        with self._timed("get_transaction"):
            return self._inner.get_transaction(controller_id, tid)

    def count_pending(self, node_id: bytes) -> int:
        with self._timed("count_pending"):
            return self._inner.count_pending(node_id)

    def add_transaction(self, record: TransactionRecord) -> None:
        with self._timed("add_transaction"):
            self._inner.add_transaction(record)

    def revocations_after(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        with self._timed("revocations_after"):
            return self._inner.revocations_after(after, limit)

    def confirm(self, controller_id: bytes, tid: int) -> None:
        with self._timed("confirm"):
            self._inner.confirm(controller_id, tid)


async def serve_metrics(
    metrics: Metrics, address: str, refresh: Callable[[], Awaitable[None]] | None = None
) -> asyncio.Server:
    """``GET /metrics`` on ``[HOST:]PORT`` (HOST defaults to 127.0.0.1). One request
    per connection, nothing else answered: all a Prometheus scrape needs.
    ``refresh`` sets the gauges read from the store (on the store's thread) first."""
    host, port = parse_host_port(address)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                request = await reader.readuntil(b"\r\n\r\n")
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        method, _, rest = request.partition(b" ")
        path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
        if method == b"GET" and path == b"/metrics":
            if refresh is not None:
                await refresh()
            body, head = metrics.render(), f"200 OK\r\nContent-Type: {CONTENT_TYPE_LATEST}"
        else:
            body, head = b"not found\n", "404 Not Found\r\nContent-Type: text/plain"
        writer.write(
            f"HTTP/1.1 {head}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, host, port)
