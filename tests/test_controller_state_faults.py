"""The controller's state on a bad day while it runs: another process holding
its write lock, a full disk. Nothing that needs an unsaved change may leave
(flight 4 before RN_c and the candidate PSK are durable could brick the node),
and the controller must go on once the state can be saved again."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Collection
from contextlib import closing
from pathlib import Path

import pytest

from keystrap.config import ControllerConfig, load_config
from keystrap.protocol import ControllerState, NodeStage, Reply, Status, TransactionStage
from keystrap.services.controller import ControllerService
from keystrap.services.node_agent import bootstrap_node
from keystrap.store.controller_store import ControllerStore
from keystrap.store.node_file import load_node_file
from keystrap_lab.processes import wait_for_log
from keystrap_lab.site import Site

from .services_helpers import run


def test_a_write_lock_held_past_the_busy_timeout_delays_a_bootstrap_and_ends_nothing(
    tmp_path: Path,
) -> None:
    """Another process holds the state's write lock longer than SQLite waits (10
    s) while a node sends flight 1: the save failed, the exception closed the
    node's session ("controller closed the session") and wrote a traceback. Now
    it is one warning, the session stays, and the bootstrap completes once the
    lock is let go."""

    async def scenario() -> None:
        site = Site(tmp_path / "site", channels=("raw", "raw"))
        await site.prepare()
        site.register_controller()
        nodes = site.enrol(1)
        await site.start()
        assert site.controller is not None
        try:
            # The out-of-band socket listens before the state is opened: connecting
            # earlier would make the state file, empty, which the controller refuses.
            await wait_for_log(site.controller, "next TID", 0, 20)
            since = site.controller.log.stat().st_size
            with closing(sqlite3.connect(site.root / "data" / "sbr.sqlite")) as db:
                db.isolation_level = None
                db.execute("BEGIN IMMEDIATE")
                node = asyncio.create_task(bootstrap_node(nodes[0], timeout=60, linger=1))
                await asyncio.sleep(12)
                db.execute("ROLLBACK")
            result = await node
            assert result.outcome == "confirmed", site.controller.log_text()[since:]
            log = site.controller.log_text()[since:]
            warnings = [line for line in log.splitlines() if " WARNING " in line]
            assert len(warnings) == 1
            assert "another process has held its write lock" in warnings[0]
            assert "state read and saved again" in log
            assert "Traceback" not in log
        finally:
            site.stop()

    run(scenario())


def test_flight_4_waits_for_a_full_disk_and_the_bootstrap_completes_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The save holding RN_c and the candidate PSK fails (disk full) after flight
    3 came: the node must get no flight 4 while it fails, the controller logs one
    line however often it retries, and sends flight 4 once the save succeeds.
    The failure used to end the reply's task with "Task exception was never
    retrieved" and no line of the controller's own."""
    full = True
    refused = 0
    save = ControllerStore.save

    def save_unless_full(
        store: ControllerStore, current: ControllerState, changed: Collection[int]
    ) -> None:
        nonlocal refused
        challenged = any(
            current.transactions[tid].stage is TransactionStage.AWAITING_PROOF
            for tid in changed
            if tid in current.transactions
        )
        if full and challenged:
            refused += 1
            raise sqlite3.OperationalError("database or disk is full")
        save(store, current, changed)

    monkeypatch.setattr(ControllerStore, "save", save_unless_full)

    async def scenario() -> None:
        nonlocal full
        site = Site(tmp_path / "site", channels=("raw", "raw"))
        await site.prepare()
        site.register_controller()
        nodes = site.enrol(1)
        await site.start_server()
        monkeypatch.chdir(site.root)
        config = load_config(ControllerConfig, site.controller_config, {})
        ready = asyncio.Event()
        service = asyncio.create_task(ControllerService(config).run(ready))
        try:
            await asyncio.wait_for(ready.wait(), 30)
            node = asyncio.create_task(bootstrap_node(nodes[0], timeout=60, linger=1))
            for _ in range(300):
                if refused >= 3:
                    break
                await asyncio.sleep(0.1)
            assert refused >= 3  # flight 3's save, then the retransmissions'
            assert load_node_file(nodes[0]).state.stage is not NodeStage.KEYED
            full = False
            assert (await node).outcome == "confirmed"
        finally:
            service.cancel()
            await asyncio.gather(service, return_exceptions=True)
            site.stop()

    with caplog.at_level(logging.INFO, logger="keystrap"):
        run(scenario())
    failures = [r for r in caplog.records if "database or disk is full" in r.getMessage()]
    assert [r.levelno for r in failures if r.levelno >= logging.INFO] == [logging.WARNING]
    assert not [r for r in caplog.records if r.exc_info or "never retrieved" in r.getMessage()]
    assert "flight 3 authenticated, flight 4 sent" in caplog.text


class RefusingServer:
    """A server that refuses every flight 2 and revocation query (4.01), as one
    that no longer knows the controller's key does."""

    async def post(self, data: bytes, lane: int = 0) -> Reply:
        return Reply(Status.UNAUTHORIZED, reason="unknown controller")

    async def shutdown(self) -> None:
        return None


def test_a_refused_revocation_poll_does_not_say_saves_work_while_they_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Saves fail (disk full) while the server refuses every revocation query: a
    refused poll saves nothing, yet it logged "state read and saved again", and
    the next failed save warned anew, a pair of lines at every poll. Now the
    failure is one warning while it lasts."""
    full = False

    def save_unless_full(
        store: ControllerStore, current: ControllerState, changed: Collection[int]
    ) -> None:
        if full:
            raise sqlite3.OperationalError("database or disk is full")
        save(store, current, changed)

    save = ControllerStore.save
    monkeypatch.setattr(ControllerStore, "save", save_unless_full)

    async def scenario() -> None:
        nonlocal full
        site = Site(tmp_path / "site", channels=("raw", "raw"))
        site.revocation_poll = 1
        await site.prepare()
        site.register_controller()
        nodes = site.enrol(1)
        monkeypatch.chdir(site.root)
        config = load_config(ControllerConfig, site.controller_config, {})
        ready = asyncio.Event()
        service = asyncio.create_task(ControllerService(config, RefusingServer()).run(ready))
        try:
            await asyncio.wait_for(ready.wait(), 30)
            full = True
            node = asyncio.create_task(bootstrap_node(nodes[0], timeout=60, linger=1))
            await asyncio.sleep(8)  # polls every second; the core retries its save meanwhile
            node.cancel()
            await asyncio.gather(node, return_exceptions=True)
        finally:
            service.cancel()
            await asyncio.gather(service, return_exceptions=True)

    with caplog.at_level(logging.INFO, logger="keystrap"):
        run(scenario())
    warned = [r for r in caplog.records if "database or disk is full" in r.getMessage()]
    assert [r.levelno for r in warned if r.levelno >= logging.INFO] == [logging.WARNING]
    assert "state read and saved again" not in caplog.text
