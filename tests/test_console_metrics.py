"""``GET /metrics`` of the real server and controller processes, scraped before and
after nodes bootstrap."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import socket
import struct
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from keystrap.config import ServerConfig
from keystrap.ids import eui64
from keystrap.metrics import MAX_SCRAPES, MAX_SERIES, REFRESH_SECONDS, Metrics, serve_metrics
from keystrap.protocol import Reply, Status
from keystrap.services.node_agent import bootstrap_node
from keystrap.services.server import server_core
from keystrap.store.errors import StoreError
from keystrap.store.node_file import load_node_file
from keystrap.store.worker import StoreThread
from keystrap_lab.pg_cluster import PrivateCluster
from keystrap_lab.processes import free_udp_port
from keystrap_lab.site import Site

from .services_helpers import run

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def with_metrics(config: Path, port: int) -> None:
    config.write_text(config.read_text() + f'metrics = "{port}"\n')


def test_metrics_follow_bootstraps(tmp_path: Path) -> None:
    async def scenario() -> None:
        site = Site(tmp_path, channels=("raw", "raw"))
        await site.prepare()
        server_port, controller_port = free_udp_port(), free_udp_port()
        with_metrics(site.server_config, server_port)
        with_metrics(site.controller_config, controller_port)
        site.register_controller()
        nodes = site.enrol(6)
        revoked = nodes.pop()
        site.admin("revoke", eui64(load_node_file(revoked).state.node_id))
        await site.start()
        try:
            before = scrape(server_port), scrape(controller_port)
            for samples in before:
                assert value(samples, "keystrap_bootstraps_started_total") == 0
                assert value(samples, "keystrap_open_transactions") == 0
            results = await asyncio.gather(
                *(bootstrap_node(p, timeout=30, linger=1) for p in nodes),
                bootstrap_node(revoked, timeout=3, linger=0),
            )
            assert [r.outcome for r in results[:5]] == ["confirmed"] * 5
            server, controller = scrape(server_port), scrape(controller_port)
        finally:
            site.stop()
        failed = "server refused: N.N node revoked"
        refusals = value(controller, "keystrap_bootstraps_failed_total", cause=failed)
        assert refusals >= 1  # the revoked node tries again until its timeout
        assert value(controller, "keystrap_bootstraps_started_total") == 5 + refusals
        assert value(server, "keystrap_bootstraps_started_total") == 5
        assert value(server, "keystrap_bootstraps_failed_total", cause="node revoked") == refusals
        assert value(server, "keystrap_flights_rejected_total", reason="node revoked") == refusals
        assert value(server, "keystrap_flights_received_total", flight="2") == 5 + refusals
        for samples in (server, controller):
            assert value(samples, "keystrap_bootstraps_confirmed_total") == 5
            assert value(samples, "keystrap_bootstrap_seconds_count") == 5
            assert value(samples, "keystrap_open_transactions") == 0
            assert (
                value(samples, "keystrap_store_seconds_count", operation="save")
                + value(samples, "keystrap_store_seconds_count", operation="confirm")
                >= 5
            )
        assert value(server, "keystrap_flights_received_total", flight="6") == 5
        assert value(server, "keystrap_flight_seconds_count", flight="6") == 5
        assert value(controller, "keystrap_flights_received_total", flight="1") >= 5 + refusals
        assert value(controller, "keystrap_flights_received_total", flight="5") >= 5
        assert value(controller, "keystrap_flights_received_total", flight="3") == 5
        assert value(controller, "keystrap_flights_received_total", flight="7") == 5
        assert value(controller, "keystrap_flights_received_total", flight="refusal") == refusals

    run(scenario())


def test_metrics_answer_nothing_else(tmp_path: Path) -> None:
    async def scenario() -> None:
        port = free_udp_port()
        server = await serve_metrics(Metrics("server"), str(port))
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /secrets HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = await reader.read()
            writer.close()
            assert answer.startswith(b"HTTP/1.1 404 ")
        finally:
            server.close()

    run(scenario())


def test_idle_connections_to_the_metrics_port_cannot_take_the_servers_descriptors(
    tmp_path: Path,
) -> None:
    """A server with 256 file descriptors (what many hosts give a service) and
    400 connections to its metrics port that send nothing: it holds at most
    :data:`MAX_SCRAPES` of them, says so in one line, and scrapes again once they
    are gone."""

    async def scenario() -> None:
        site = Site(tmp_path)
        await site.prepare()
        port = free_udp_port()
        with_metrics(site.server_config, port)
        server = await site.start_server()
        pid = server.process.pid
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (256, 256))
        try:
            idle = len(os.listdir(f"/proc/{pid}/fd"))
            with contextlib.ExitStack() as held:
                for _ in range(400):
                    held.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
                await asyncio.sleep(1)
                flooded = len(os.listdir(f"/proc/{pid}/fd"))
            await asyncio.sleep(1)
            assert value(await asyncio.to_thread(scrape, port), "keystrap_open_transactions") == 0
        finally:
            site.stop()
        assert flooded <= idle + MAX_SCRAPES + 4  # 4: what the server may open meanwhile
        log = (tmp_path / "server.log").read_text()
        assert "Traceback" not in log
        assert log.count("connections open at once") == 1

    run(scenario())


def test_a_client_that_asks_and_never_reads_holds_no_connection_for_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An answer larger than the socket buffers waited, for ever, for a client that
    sent ``GET /metrics`` and read nothing: :data:`MAX_SCRAPES` such clients shut
    every scrape out. The answer now has :data:`IO_SECONDS` to leave."""
    monkeypatch.setattr("keystrap.metrics.IO_SECONDS", 0.5)
    monkeypatch.setattr("keystrap.metrics.MAX_SCRAPES", 2)
    monkeypatch.setattr(Metrics, "render", lambda self: b"#" * (8 << 20))

    async def scenario() -> None:
        port = free_udp_port()
        server = await serve_metrics(Metrics("server"), str(port))
        stalled = []
        try:
            for _ in range(2):
                raw = socket.socket()
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                raw.connect(("127.0.0.1", port))
                raw.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                stalled.append(raw)  # and never read
            await asyncio.sleep(2.0)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), 10)
            assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"#" * 1000)
            writer.close()
        finally:
            for raw in stalled:
                raw.close()
            server.close()

    run(scenario())


def test_a_client_that_resets_its_connection_costs_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        port = free_udp_port()
        server = await serve_metrics(Metrics("server"), str(port))
        try:
            for _ in range(3):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /metr")
                await writer.drain()
                raw = writer.get_extra_info("socket")
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()  # a reset, not a FIN
            await asyncio.sleep(0.5)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await reader.read()).startswith(b"HTTP/1.1 200 ")
            writer.close()
        finally:
            server.close()

    with caplog.at_level(logging.WARNING, logger="keystrap"):
        run(scenario())
    assert caplog.records == []


def test_a_scrape_while_the_database_is_down_is_answered_at_once(
    tmp_path: Path, pg_url: str, pg_cluster: PrivateCluster
) -> None:
    """The store waits out a database restart for a minute; a scrape does not
    (Prometheus gives up after 10 s by default and would call the server down)."""

    async def scenario() -> None:
        site = Site(tmp_path, store=pg_url)
        await site.prepare()
        port = free_udp_port()
        with_metrics(site.server_config, port)
        await site.start_server()
        try:
            assert value(await asyncio.to_thread(scrape, port), "keystrap_open_transactions") == 0
            pg_cluster.stop()
            try:
                begun = time.monotonic()
                down = await asyncio.to_thread(scrape, port)
                waited = time.monotonic() - begun
            finally:
                pg_cluster.start()
        finally:
            site.stop()
        assert waited < REFRESH_SECONDS + 2
        assert value(down, "keystrap_open_transactions") == 0  # as last read
        assert "Traceback" not in (tmp_path / "server.log").read_text()

    run(scenario())


def test_a_store_that_fails_costs_a_scrape_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    """A gauge's store read that fails (the database gone for good, the store
    closing at shutdown) leaves no connection open and no traceback."""

    async def failing() -> None:
        raise StoreError("postgresql://keystrap@/db: database unreachable")

    async def scenario() -> None:
        port = free_udp_port()
        server = await serve_metrics(Metrics("server"), str(port), failing)
        try:
            for _ in range(2):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                async with asyncio.timeout(5):
                    answer = await reader.read()
                writer.close()
                assert answer.startswith(b"HTTP/1.1 200 ")
                assert b"keystrap_open_transactions 0.0" in answer
        finally:
            server.close()

    with caplog.at_level(logging.WARNING, logger="keystrap"):
        run(scenario())
    assert [r.getMessage() for r in caplog.records] == [
        "metrics: gauges not read from the store: postgresql://keystrap@/db: database unreachable"
    ] * 2


def test_per_request_metrics_keep_prometheus_semantics_and_bound_their_series() -> None:
    metrics = Metrics("server")
    flight2, refused = b"\x12" + bytes(65), Reply(Status.UNAUTHORIZED, reason="no")
    for seconds in (0.001, 0.0011, 40.0):  # on a bound, just above it, past the last
        metrics.server_reply(flight2, refused, seconds)
    for n in range(MAX_SERIES + 5):
        metrics.flight_handled(b"", 0.0, flight=f"kind {chr(65 + n % 26)}{n // 26}")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for sample in family.samples
    }
    bucket = "keystrap_flight_seconds_bucket"
    assert samples[(bucket, (("flight", "2"), ("le", "0.001")))] == 1  # le: less or equal
    assert samples[(bucket, (("flight", "2"), ("le", "0.0025")))] == 2
    assert samples[(bucket, (("flight", "2"), ("le", "30.0")))] == 2
    assert samples[(bucket, (("flight", "2"), ("le", "+Inf")))] == 3
    assert samples[("keystrap_flight_seconds_sum", (("flight", "2"),))] == pytest.approx(40.0021)
    assert samples[("keystrap_flights_received_total", (("flight", "2"),))] == 3
    assert samples[("keystrap_flights_rejected_total", (("reason", "no"),))] == 3
    flights = [k for k in samples if k[0] == "keystrap_flights_received_total"]
    assert len(flights) == MAX_SERIES + 1  # the rest counted together
    assert samples[("keystrap_flights_received_total", (("flight", "other"),))] == 6


def test_the_server_closes_its_metrics_port_before_its_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The store was closed first: a scrape that came while the port was still
    open read the gauges from a closed store and logged "gauges not read"."""
    port = free_udp_port()
    config = ServerConfig(
        database=tmp_path / "sbs.sqlite", master_key=tmp_path / "mk.key", metrics=str(port)
    )
    late: list[bytes | None] = []
    close = StoreThread.close

    async def close_then_scrape(store: StoreThread[Any, Any], last: Callable[[], None]) -> None:
        await close(store, last)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except ConnectionRefusedError:
            late.append(None)
            return
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(5):
            late.append(await reader.read())
        writer.close()

    monkeypatch.setattr(StoreThread, "close", close_then_scrape)

    async def scenario() -> None:
        async with server_core(config):
            assert value(await asyncio.to_thread(scrape, port), "keystrap_open_transactions") == 0

    with caplog.at_level(logging.WARNING, logger="keystrap"):
        run(scenario())
    assert late == [None]
    assert caplog.records == []
