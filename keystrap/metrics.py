"""Prometheus metrics of the server and the controller, and the small HTTP server
that answers ``GET /metrics`` with them.

Both services count the same things under the same names (a scrape's ``job``
label tells them apart), fed from the replies and events their cores already
emit. Label values come from the cores' reasons with numbers masked, so a TID in
a message cannot grow a new time series per request.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import itertools
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from typing import ParamSpec, TypeVar

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.utils import floatToGoString

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
from keystrap.protocol.repository import KeyRepository
from keystrap.wire import DecodeError, flight_class

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
MAX_SERIES = 256
MAX_TRACKED = 100_000  # bootstraps whose start time is kept for the latency histogram
REFRESH_SECONDS = 3.0  # a scrape waits this long for the gauges read from the store
IO_SECONDS = 5.0  # a client has this long to send its request, and to take the answer
MAX_SCRAPES = 16  # connections the metrics port serves at once
CROWDED_LOG_INTERVAL = 60.0  # seconds between log lines about connections turned away

log = logging.getLogger("keystrap.metrics")


@functools.lru_cache(maxsize=256)
def label(reason: str) -> str:
    """A bounded label value: digits masked, at most 60 characters."""
    return re.sub(r"\d+", "N", reason)[:60] or "unknown"


def flight_label(data: bytes) -> str:
    try:
        return str(int(flight_class(data).TYPE))  # either profile
    except DecodeError:
        return "invalid"


class _PlainSeries:
    """One labelled series of a :class:`_PlainFamily`: a count, and for a
    histogram the sum and the count per bucket."""

    __slots__ = ("_bounds", "buckets", "count", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.count = 0
        self.total = 0.0
        self.buckets = [0] * (len(bounds) + 1)
        self._bounds = bounds

    def inc(self) -> None:
        self.count += 1

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        self.buckets[bisect.bisect_left(self._bounds, seconds)] += 1


class _PlainFamily:
    """A labelled counter or histogram kept as plain numbers, for the metrics fed
    once per request: prometheus_client takes a lock and builds its label tuple
    on every update, which at thousands of requests a second costs more than the
    request's own work. Each series is updated by one thread only (the event
    loop's, or the store's); handed to Prometheus as a collector at scrape time,
    when a histogram's sum may be one observation ahead of its buckets. At most
    :data:`MAX_SERIES` label values, the rest counted under "other", so a
    varying reason cannot grow it."""

    def __init__(
        self, name: str, documentation: str, label: str = "", buckets: tuple[float, ...] = ()
    ) -> None:
        """No ``label``: one series, :meth:`only`."""
        self.name, self.documentation, self.label = name, documentation, label
        self._buckets = buckets
        self.series: dict[str, _PlainSeries] = {}

    def only(self) -> _PlainSeries:
        """The series of a family without a label (exported from the start, at 0)."""
        return self.labels("")

    def labels(self, value: str) -> _PlainSeries:
        found = self.series.get(value)
        if found is None:
            if len(self.series) >= MAX_SERIES:
                value = "other"
                found = self.series.get(value)
            if found is None:
                found = self.series[value] = _PlainSeries(self._buckets)
        return found

    def collect(self) -> Iterator[Metric]:
        names = [self.label] if self.label else []
        if not self._buckets:
            counter = CounterMetricFamily(self.name, self.documentation, labels=names)
            for value, series in list(self.series.items()):
                counter.add_metric([value] if names else [], series.count)
            yield counter
            return
        histogram = HistogramMetricFamily(self.name, self.documentation, labels=names)
        bounds = [*map(floatToGoString, self._buckets), "+Inf"]
        for value, series in list(self.series.items()):
            cumulative = list(itertools.accumulate(series.buckets))
            buckets = list(zip(bounds, cumulative, strict=True))
            histogram.add_metric([value] if names else [], buckets, series.total)
        yield histogram


class Metrics:
    def __init__(self, role: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._started = _PlainFamily(
            "keystrap_bootstraps_started", f"Bootstraps the {role} started"
        )
        self._confirmed = _PlainFamily(
            "keystrap_bootstraps_confirmed", "Bootstraps confirmed by the server"
        )
        self.failed = _PlainFamily(
            "keystrap_bootstraps_failed", "Bootstraps that failed, by cause", "cause"
        )
        self.flights = _PlainFamily(
            "keystrap_flights_received", "Flights received, by flight number", "flight"
        )
        self.rejected = _PlainFamily(
            "keystrap_flights_rejected", "Flights refused, by reason", "reason"
        )
        self.flight_seconds = _PlainFamily(
            "keystrap_flight_seconds",
            "Time to handle one flight, store included",
            "flight",
            LATENCY_BUCKETS,
        )
        self.store_seconds = _PlainFamily(
            "keystrap_store_seconds", "Time of one store operation", "operation", LATENCY_BUCKETS
        )
        self._bootstrap_seconds = _PlainFamily(
            "keystrap_bootstrap_seconds",
            "From the bootstrap's first flight here to its confirmation",
            buckets=LATENCY_BUCKETS,
        )
        for family in (
            self._started,
            self._confirmed,
            self.failed,
            self.flights,
            self.rejected,
            self.flight_seconds,
            self._bootstrap_seconds,
            self.store_seconds,
        ):
            r.register(family)
        self.started = self._started.only()
        self.confirmed = self._confirmed.only()
        self.bootstrap_seconds = self._bootstrap_seconds.only()
        self.open_transactions = Gauge(
            "keystrap_open_transactions", "Bootstraps started and not yet finished", registry=r
        )
        # An OrderedDict: dropping a dict's oldest entry again and again makes
        # each next drop walk every slot freed before it.
        self._begun: OrderedDict[tuple[bytes, int], float] = OrderedDict()
        self._by_header: dict[bytes, tuple[_PlainSeries, _PlainSeries]] = {}

    def bootstrap_started(self, controller_id: bytes, tid: int) -> None:
        self.started.inc()
        if len(self._begun) >= MAX_TRACKED:
            self._begun.popitem(last=False)
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
        if flight:
            count, histogram = self.flights.labels(flight), self.flight_seconds.labels(flight)
        else:
            count, histogram = self._flight_series(data[:1])
        count.inc()
        histogram.observe(seconds)

    def _flight_series(self, header: bytes) -> tuple[_PlainSeries, _PlainSeries]:
        """The two series of a flight's header byte, looked up once per header (a
        handful of values: the flight types and "invalid")."""
        found = self._by_header.get(header)
        if found is None:
            flight = flight_label(header)
            found = self._by_header[header] = (
                self.flights.labels(flight),
                self.flight_seconds.labels(flight),
            )
        return found

    @contextlib.contextmanager
    def timed_store(self, operation: str) -> Iterator[None]:
        begun = time.perf_counter()
        try:
            yield
        finally:
            self.store_seconds.labels(operation).observe(time.perf_counter() - begun)

    def render(self) -> bytes:
        return generate_latest(self.registry)


P = ParamSpec("P")
T = TypeVar("T")


def _timed(histogram: _PlainSeries, call: Callable[P, T]) -> Callable[P, T]:
    """``call``, each run observed into ``histogram`` (bound to its labels once)."""

    def timed(*args: P.args, **kwargs: P.kwargs) -> T:
        begun = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            histogram.observe(time.perf_counter() - begun)

    return timed


class TimedRepository:
    """The server's repository with each call timed into ``keystrap_store_seconds``.

    Each operation's histogram is looked up once, here: these calls are on the
    store thread's path of every request."""

    def __init__(self, inner: KeyRepository, metrics: Metrics) -> None:
        self._inner = inner
        seconds = metrics.store_seconds
        self._batch = seconds.labels("batch")
        self.lookup_request = _timed(seconds.labels("lookup_request"), inner.lookup_request)
        self.lookup_confirm = _timed(seconds.labels("lookup_confirm"), inner.lookup_confirm)
        self.add_transaction = _timed(seconds.labels("add_transaction"), inner.add_transaction)
        self.confirm = _timed(seconds.labels("confirm"), inner.confirm)
        self.revocations_after = _timed(
            seconds.labels("revocations_after"), inner.revocations_after
        )
        self.revocation_marks = _timed(seconds.labels("revocation_marks"), inner.revocation_marks)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Timed as a whole, its commit (the fsync) included."""
        begun = time.perf_counter()
        try:
            with self._inner.batch():
                yield
        finally:
            self._batch.observe(time.perf_counter() - begun)


async def serve_metrics(
    metrics: Metrics, address: str, refresh: Callable[[], Awaitable[None]] | None = None
) -> asyncio.Server:
    """``GET /metrics`` on ``[HOST:]PORT`` (HOST defaults to 127.0.0.1). One request
    per connection, nothing else answered: all a Prometheus scrape needs.
    ``refresh`` sets the gauges read from the store (on the store's thread) first.

    At most :data:`MAX_SCRAPES` connections are served at once; more are closed
    as they come: each idle one is held for seconds, and without a bound a
    client opening connections took every file descriptor of the service (its
    store's, its nodes'), with a traceback in the log per refused accept."""
    host, port = parse_host_port(address)
    refreshing: asyncio.Task[None] | None = None
    serving = 0
    warned = -CROWDED_LOG_INTERVAL

    async def refreshed(refresh: Callable[[], Awaitable[None]]) -> None:
        """The gauges read again, one read at a time however many scrapes ask. A
        store that does not answer within :data:`REFRESH_SECONDS` (down, or closing
        at shutdown) leaves the gauges as last read: the scrape still gets the
        other series (the service is up, its refusals say why), and the failed
        read costs one line in the log."""
        nonlocal refreshing
        if refreshing is None or refreshing.done():
            refreshing = asyncio.create_task(_read_gauges(refresh))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REFRESH_SECONDS):
                await asyncio.shield(refreshing)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal serving, warned
        if serving >= MAX_SCRAPES:
            writer.close()
            if time.monotonic() - warned >= CROWDED_LOG_INTERVAL:
                warned = time.monotonic()
                log.warning(
                    "metrics: %d connections open at once; closing further ones", MAX_SCRAPES
                )
            return
        serving += 1
        try:
            await answer_one(reader, writer)
        finally:
            serving -= 1

    async def answer_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(IO_SECONDS):
                request = await reader.readuntil(b"\r\n\r\n")
        except (
            TimeoutError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,  # reset by the client before its request ended
        ):
            writer.close()
            return
        method, _, rest = request.partition(b" ")
        path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
        if method == b"GET" and path == b"/metrics":
            if refresh is not None:
                await refreshed(refresh)
            body, head = metrics.render(), f"200 OK\r\nContent-Type: {CONTENT_TYPE_LATEST}"
        else:
            body, head = b"not found\n", "404 Not Found\r\nContent-Type: text/plain"
        writer.write(
            f"HTTP/1.1 {head}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        try:
            async with asyncio.timeout(IO_SECONDS):
                await writer.drain()
        except TimeoutError:
            # A client that asks and never reads held its connection, one of
            # MAX_SCRAPES, and the answer's bytes, for as long as it liked.
            writer.transport.abort()
            return
        except ConnectionError:
            pass
        writer.close()

    try:
        return await asyncio.start_server(answer, host, port)
    except OSError as exc:  # a name that does not resolve, an address in use or not ours
        reason = exc.strerror or str(exc)
        raise OSError(exc.errno, f"metrics address {address}: {reason}") from None


async def _read_gauges(refresh: Callable[[], Awaitable[None]]) -> None:
    try:
        await refresh()
    except Exception as exc:
        log.warning("metrics: gauges not read from the store: %s", exc)
