"""Tell the node why (issue #11, item 6): flight 12, from the server's refusal to
the node's log, within seconds instead of after its timeout."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from pathlib import Path

import pytest

from keystrap.protocol import Reply, Status, ToNode, TransactionStage
from keystrap.services.node_agent import bootstrap_node
from keystrap.store.node_file import load_node_file, save_node_file
from keystrap.wire import DecodeError, Flight12, FlightType, RefusalReason
from keystrap_lab.site import Site

from .conftest import node_id
from .stepper import NOW, Parties


def test_flight12_bytes_and_strict_decoder() -> None:
    record = Flight12(node_id(1), RefusalReason.UNKNOWN_NODE)
    data = record.encode()
    assert data == bytes([0x1C]) + node_id(1) + b"\x01" and len(data) == Flight12.SIZE
    assert Flight12.decode(data) == record
    for bad in (data[:-1], data + b"\x00", b"\x1b" + data[1:], data[:-1] + b"\x09", b""):
        with pytest.raises(DecodeError):
            Flight12.decode(bad)


@pytest.mark.parametrize(
    ("status", "reason", "code"),
    [
        (Status.NOT_FOUND, "unknown node", RefusalReason.UNKNOWN_NODE),
        (Status.FORBIDDEN, "node revoked", RefusalReason.REVOKED),
        (Status.UNAUTHORIZED, "unknown controller", RefusalReason.CONTROLLER_REFUSED),
        (Status.FORBIDDEN, "stale timestamp", RefusalReason.OTHER),
    ],
)
def test_controller_core_passes_a_refusal_on(status: Status, reason: str, code: int) -> None:
    p = Parties()
    p.run_until(FlightType.F2_REQUEST)
    p.controller.data_to_send()
    p.controller.receive_from_server(p.tid, Reply(status, reason=reason), NOW)
    refusal = Flight12(p.nid, RefusalReason(code)).encode()
    assert p.controller.data_to_send() == [ToNode(p.nid, refusal)]
    assert p.controller.state.transactions[p.tid].stage is TransactionStage.FAILED


def test_transient_answers_and_unreachable_server_keep_the_transaction_open() -> None:
    p = Parties()
    p.run_until(FlightType.F2_REQUEST)
    p.controller.data_to_send()
    p.controller.receive_from_server(p.tid, Reply(Status.UNAVAILABLE, reason="busy"), NOW)
    assert p.controller.data_to_send() == []
    p.controller.server_unreachable(p.tid)
    unreachable = Flight12(p.nid, RefusalReason.SERVER_UNREACHABLE).encode()
    assert p.controller.data_to_send() == [ToNode(p.nid, unreachable)]
    assert p.controller.state.transactions[p.tid].stage is TransactionStage.AWAITING_GRANT


def test_a_node_hears_the_reason_within_seconds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Real server and controller processes; three nodes the server refuses: one
    never enrolled, one revoked, and one whose initial key is wrong (the server
    grants, the node finds flight 4 unopenable: it says so itself)."""

    async def scenario() -> float:
        site = Site(tmp_path, channels=("raw", "raw"))
        await site.prepare()
        site.register_controller()
        enrolled = site.enrol(2)
        await site.start()
        try:
            unknown = tmp_path / "unknown.json"
            stored = load_node_file(enrolled[0])
            save_node_file(
                unknown, replace(stored, state=replace(stored.state, node_id=node_id(9)))
            )
            revoked = enrolled[1]
            site.admin(
                "revoke", ":".join(f"{b:02x}" for b in load_node_file(revoked).state.node_id)
            )
            wrong_key = enrolled[0]
            save_node_file(wrong_key, replace(stored, state=replace(stored.state, key=bytes(16))))
            start = time.time()
            results = await asyncio.gather(
                *(bootstrap_node(p, timeout=6, linger=0) for p in (unknown, revoked, wrong_key))
            )
            assert all(not r.ok for r in results)
            return start
        finally:
            site.stop()

    caplog.set_level(logging.WARNING, logger="keystrap.node")
    start = asyncio.run(scenario())
    said = {r.getMessage(): r.created for r in caplog.records}
    expect = ["unknown node (unverified)", "revoked (unverified)", "flight 4"]
    for text in expect:
        hits = [when for message, when in said.items() if text in message]
        assert hits and min(hits) - start < 4.0, (text, list(said))
    server_log = (tmp_path / "server.log").read_text()
    assert "WARNING refused node=02:00:00:00:00:00:00:09" in server_log
    assert "unknown node" in server_log and "node revoked" in server_log


def test_a_node_hears_that_the_server_is_unreachable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A real controller process whose server is not running. Its log says so once,
    not once per try of each open bootstrap (every 2-3 s each: hundreds of lines a
    second in an outage with many nodes waiting)."""
    controller_log = ""

    async def scenario() -> float:
        nonlocal controller_log
        site = Site(tmp_path, channels=("raw", "raw"))
        await site.prepare()
        site.register_controller()
        nodes = site.enrol(2)
        await site.start_controller()
        try:
            start = time.time()
            results = await asyncio.gather(
                *(bootstrap_node(node, timeout=6, linger=0) for node in nodes)
            )
            for result in results:
                assert not result.ok and "server unreachable" in result.outcome
            return start
        finally:
            site.stop()
            assert site.controller is not None
            controller_log = site.controller.log_text()

    caplog.set_level(logging.WARNING, logger="keystrap.node")
    start = asyncio.run(scenario())
    hits = [
        r.created for r in caplog.records if "server unreachable (unverified)" in r.getMessage()
    ]
    assert hits and min(hits) - start < 4.0
    assert controller_log.count("server unreachable") == 1, controller_log
