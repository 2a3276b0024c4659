"""The node agent's two clocks: its retransmission timer runs on the loop's
monotonic clock, so a step of the wall clock cannot stall it."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import pytest

from keystrap.oob import OobLink
from keystrap.oob.unix import UnixListener
from keystrap.protocol import NodeStage, NodeState
from keystrap.protocol.timers import Backoff
from keystrap.services.node_agent import bootstrap_node
from keystrap.store.node_file import NodeFile, save_node_file
from keystrap.wire import Flight4, Flight5

from .conftest import CONTROLLER_ID, node_id


def test_a_wall_clock_step_backwards_does_not_stall_the_node_agents_retransmission(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, socket = tmp_path / "node.json", tmp_path / "oob.sock"
    state = NodeState(node_id(1), CONTROLLER_ID, secrets.token_bytes(16))
    save_node_file(path, NodeFile(state, "127.0.0.1", 5683, f"unix:{socket}", "raw", "raw"))
    wall, heard = time.time, list[bytes]()
    monkeypatch.setattr(time, "time", lambda: wall() - 3600 if heard else wall())

    async def silent_controller(link: OobLink) -> None:
        """Hears flight 1 twice, answers nothing, then hangs up."""
        while len(heard) < 2:
            data = await link.receive()
            if data is not None:
                heard.append(data)  # from the first, the wall clock is an hour back

    async def scenario() -> str:
        listener = UnixListener(socket)
        await listener.start(silent_controller)
        try:
            result = await bootstrap_node(path, timeout=Backoff().initial + 3, linger=0)
        finally:
            await listener.stop()
        return result.outcome

    outcome = asyncio.run(scenario())
    assert len(heard) == 2 and heard[0] == heard[1]  # the same flight 1, repeated on time
    assert outcome == "failed: controller closed the session"


def test_a_node_resumed_holding_its_psk_says_it_sent_flight_5_again(tmp_path: Path) -> None:
    """The agent's first progress line said "flight 1 sent" whatever it sent: a
    node resumed after its PSK re-sends its flight 5, and the log must say so."""
    path, socket = tmp_path / "node.json", tmp_path / "oob.sock"
    proof = bytes([Flight5.header()[0]]) + secrets.token_bytes(Flight5.SIZE - 1)
    state = NodeState(
        node_id(1),
        CONTROLLER_ID,
        secrets.token_bytes(16),
        NodeStage.KEYED,
        tid=7,
        session_key=secrets.token_bytes(16),
        challenge=secrets.token_bytes(Flight4.SIZE),
        proof=proof,
    )
    save_node_file(path, NodeFile(state, "127.0.0.1", 5683, f"unix:{socket}", "raw", "raw"))
    heard: list[bytes] = []
    steps: list[str] = []

    async def controller(link: OobLink) -> None:
        """Hears one message, then hangs up."""
        while not heard:
            data = await link.receive()
            if data is not None:
                heard.append(data)

    async def scenario() -> str:
        listener = UnixListener(socket)
        await listener.start(controller)
        try:
            result = await bootstrap_node(path, linger=5, on_progress=steps.append)
        finally:
            await listener.stop()
        return result.outcome

    assert asyncio.run(scenario()) == "keyed"
    assert len(heard) == 1 and proof in heard[0]  # the stored flight 5, in its raw frame
    assert steps == ["flight 5 sent again; waiting for flight 11"]
