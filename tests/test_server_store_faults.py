"""The server's store on a bad day while it runs: another process holding its
write lock. Every request is answered 5.03 while it lasts, and the log must say
so once, not once per request."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

from keystrap.services.node_agent import bootstrap_node
from keystrap_lab.processes import wait_for_log
from keystrap_lab.site import Site

from .services_helpers import run


def test_a_write_lock_held_over_many_requests_is_one_error_and_one_line_when_over(
    tmp_path: Path,
) -> None:
    """Another process holds the server's write lock past SQLite's busy timeout
    twice over while three nodes bootstrap: each request (and each of CoAP's
    retransmissions) wrote "ERROR store unavailable: database is locked", 18
    lines in 35 s, and nothing said when it was over. Now the first failure is
    one ERROR, the repeats are debug, one line says the store is back, and the
    bootstraps complete."""

    async def scenario() -> None:
        site = Site(tmp_path / "site", channels=("raw", "raw"))
        await site.prepare()
        site.register_controller()
        nodes = site.enrol(3)
        await site.start()
        assert site.server is not None
        try:
            since = site.server.log.stat().st_size
            with closing(sqlite3.connect(site.database)) as db:
                db.isolation_level = None
                db.execute("BEGIN IMMEDIATE")
                bootstraps = [bootstrap_node(node, timeout=90, linger=1) for node in nodes]
                tasks = [asyncio.create_task(bootstrap) for bootstrap in bootstraps]
                await wait_for_log(site.server, "store unavailable", since, timeout=40)
                await asyncio.sleep(12)  # the next batch, retransmissions in it, fails too
                db.execute("ROLLBACK")
            results = await asyncio.gather(*tasks)
            log = site.server.log_text()[since:]
            assert [result.outcome for result in results] == ["confirmed"] * 3, log
            errors = [line for line in log.splitlines() if " ERROR " in line]
            assert len(errors) == 1, log
            assert "store unavailable: database is locked" in errors[0]
            assert "5.03 store unavailable; retry" in log  # each request still answered, counted
            assert "INFO store available again" in log.split(errors[0])[1]
            assert "Traceback" not in log
        finally:
            site.stop()

    run(scenario())
