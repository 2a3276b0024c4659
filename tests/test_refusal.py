"""Tell the node why (issue #11, item 6): flight 12, from the server's refusal to
the node's log, within seconds instead of after its timeout."""

from __future__ import annotations

import ast
import asyncio
import logging
import time
from dataclasses import replace
from pathlib import Path

import pytest

import keystrap.protocol.server as server_core
import keystrap.services.server as server_service
from keystrap.coap.codes import MAX_PAYLOAD, MAX_REASON
from keystrap.protocol import Reply, Server, ServerPolicy, Status, ToNode, TransactionStage
from keystrap.protocol.controller import REFUSALS
from keystrap.protocol.repository import InMemoryRepository
from keystrap.services.node_agent import bootstrap_node
from keystrap.store.node_file import load_node_file, save_node_file
from keystrap.wire import (
    CompactFlight2,
    CompactFlight5,
    CompactFlight6,
    DecodeError,
    Flight,
    Flight1,
    Flight2,
    Flight5,
    Flight6,
    Flight12,
    FlightType,
    RefusalReason,
)
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


SERVER_REPLIES = (Path(server_core.__file__), Path(server_service.__file__))
NOT_WRITTEN_OUT = {"_route": "screened", "_authenticate": "screened", "_refused": "refuse(...)"}
"""Where a reason is not text in the source, and where the test finds it: what
:meth:`Server.screen` answers (driven below over every header and length), or
the reasons ``refuse`` is called with."""
BOUNDS = {"seq": str(2**63 - 1)}
"""The longest text of a value a reason formats that the screen does not reach:
a revocation's number (refused above 2^32-1) is a signed 64-bit integer in
either store."""


def _longest(reason: ast.expr) -> str | None:
    """The longest text ``reason`` can be, if it is a string or f-string whose
    values :data:`BOUNDS` knows."""
    if isinstance(reason, ast.Constant) and isinstance(reason.value, str):
        return reason.value
    if not isinstance(reason, ast.JoinedStr):
        return None
    parts = []
    for part in reason.values:
        if isinstance(part, ast.Constant):
            parts.append(str(part.value))
        elif isinstance(part, ast.FormattedValue) and ast.unparse(part.value) in BOUNDS:
            parts.append(BOUNDS[ast.unparse(part.value)])
        else:
            return None
    return "".join(parts)


def _given_reasons(path: Path) -> tuple[set[str], set[str]]:
    """The reasons ``path`` writes out, at their longest, and the functions that
    give others (a decoder's words, a value of their own)."""
    texts: set[str] = set()
    elsewhere: set[str] = set()
    for function in ast.walk(ast.parse(path.read_text())):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for call in ast.walk(function):
            if not isinstance(call, ast.Call):
                continue
            given = [k.value for k in call.keywords if k.arg == "reason"]
            if ast.unparse(call.func) in ("refuse", "_refused") and call.args:
                given.append(call.args[-1])
            for reason in given:
                text = _longest(reason)
                if text is None:
                    elsewhere.add(function.name)
                else:
                    texts.add(text)
    return texts, elsewhere


def _screened_reasons() -> set[str]:
    """Every refusal the server gives before its repository: for every first byte
    and length a request can have, each field zero, from a controller unknown
    and from one known (ID_c zero) whose tag then fails, under each profile
    setting; and for each authentic flight 2 and 6 whose sealed bytes are a
    valid one's but one, which takes every value (a flight 1 or 5 inside that is
    not one, or of another transaction)."""
    reasons: set[str] = set()
    key, controller = bytes(16), bytes(8)
    known = {controller: key}
    policies = (ServerPolicy(), ServerPolicy(compact=False), ServerPolicy(hardened=True))
    for policy in policies:
        server = Server(InMemoryRepository(), known, policy)
        for header in range(256):
            for length in range(MAX_PAYLOAD + 2):
                data = bytes([header]) + bytes(length)
                for controllers in ({}, known):
                    reply = server.screen(data, controllers)
                    if reply is not None:
                        reasons.add(reply.reason)
    server = Server(InMemoryRepository(), known)
    proof = Flight5(controller, 0, bytes(8), bytes(16)).seal(key)
    compact_proof = CompactFlight5(controller, 0, bytes(8), bytes(16)).seal(key)
    valid: list[tuple[type[Flight], bytes]] = [
        (Flight2, Flight2(controller, 0, 0, bytes(16), Flight1(bytes(8), bytes(16))).seal(key)),
        (CompactFlight2, CompactFlight2(controller, 0, 0, bytes(8), bytes(16)).seal(key)),
        (Flight6, Flight6(controller, 0, proof).seal(key)),
        (CompactFlight6, CompactFlight6(controller, 0, compact_proof).seal(key)),
    ]
    for kind, data in valid:
        assert server.screen(data, known) is None
        clear = kind.CLEAR.unpack(data)[1:]
        sealed = kind.SEALED.pack(*kind._open(data, key, controller, 0))
        for at in range(len(sealed)):
            for value in range(256):
                plain = bytearray(sealed)
                plain[at] = value
                fields = kind.SEALED.unpack(plain)
                reply = server.screen(kind._seal(key, controller, 0, clear, fields), known)
                if reply is not None:
                    reasons.add(reply.reason)
    return reasons


def test_every_refusal_reason_of_the_server_survives_coaps_cut() -> None:
    """The server's reasons travel as CoAP payload cut at MAX_REASON bytes, and the
    controller tells the node why (flight 12) by matching them whole: a hardened
    server's 83-byte refusal of the compact profile reached it cut, matched
    nothing, and the node heard "other". Every reason the server can give must
    fit, and each the controller's table names must be one the server gives."""
    given: set[str] = set()
    elsewhere: set[str] = set()
    for path in SERVER_REPLIES:
        texts, functions = _given_reasons(path)
        given |= texts
        elsewhere |= functions
    assert elsewhere <= set(NOT_WRITTEN_OUT), "a reason this test cannot enumerate"
    screened = _screened_reasons()
    assert "flight 2 failed authentication" in screened and "unknown controller" in screened
    reasons = given | screened
    too_long = {r: len(r.encode()) for r in reasons if len(r.encode()) > MAX_REASON}
    assert too_long == {}
    assert set(REFUSALS) <= reasons, "the controller matches a reason the server never gives"
    for reason in reasons:
        heard = reason.encode()[:MAX_REASON].decode()
        assert REFUSALS.get(heard) == REFUSALS.get(reason)
