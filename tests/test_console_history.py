"""A node's history through real server and controller processes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from keystrap.console import history, queries
from keystrap.services.node_agent import bootstrap_node
from keystrap.store.node_file import load_node_file, save_node_file
from keystrap_lab.site import Site

from .services_helpers import run


def test_history_of_a_node_imprinted_with_another_key(tmp_path: Path) -> None:
    """The issue's example, end to end: the server grants the bootstrap, the node
    cannot open flight 4, no proof follows; once the window has passed the node's
    history says that its initial key does not match the order."""

    async def scenario() -> None:
        site = Site(tmp_path, channels=("raw", "raw"), window=3)
        await site.prepare()
        site.register_controller()
        (path,) = site.enrol(1)
        node = load_node_file(path)
        wrong = replace(node.state, key=bytes(16))
        save_node_file(path, replace(node, state=wrong))
        await site.start()
        try:
            result = await bootstrap_node(path, timeout=2, linger=0)
        finally:
            site.stop()
        assert result.outcome != "confirmed"
        db = queries.open_store(site.database)
        node_id = node.state.node_id
        log = [
            (e.at, e.controller_id, e.tid, e.flight, e.outcome, e.cause)
            for e in queries.node_log(db, node_id)
        ]
        granted = queries.node_transactions(db, node_id)
        db.close()
        assert {outcome for *_, outcome, _ in log} == {"granted"}
        later = max(created for *_, created in granted) + site.window + 1
        tries = history.attempts(log, granted, later, site.window)
        assert tries and all(a.outcome == "failed" for a in tries)
        assert "the node's initial key does not match the order" in tries[0].cause

    run(scenario())
