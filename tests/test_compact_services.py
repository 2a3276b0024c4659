"""The compact profile (version 2) through the real processes: ordered per order
with ``--profile compact``, carried by bundle and node file, spoken by the node
agent, the controller and a server that accepts it, and refused clearly by one
that does not."""

from __future__ import annotations

import json
from pathlib import Path

import aiocoap
import pytest

from keystrap.services.node_agent import bootstrap_node
from keystrap.store.node_file import load_node_file
from keystrap_lab.relay import Outgoing
from keystrap_lab.site import Site

from .services_helpers import assert_all_rekeyed, bootstrap_all, run, shared_ik


async def _site(
    root: Path,
    count: int,
    compact: str = "accept",
    seen: list[bytes] | None = None,
    profile: str = "paper",
) -> tuple[Site, list[Path]]:
    """``seen`` collects every in-band datagram (a relay between controller and server)."""

    def record(_direction: str, datagram: bytes) -> list[Outgoing]:
        if seen is not None:
            seen.append(datagram)
        return [datagram]

    site = Site(root, channels=("raw", "raw"), compact=compact, profile=profile)
    await site.prepare(relay_hook=record)
    site.register_controller()
    site.enrol(1, installer="old", name="paper")  # a paper order beside it
    nodes = site.enrol(count, profile="compact")
    await site.start()
    return site, nodes


def test_a_compact_order_bootstraps_to_active(tmp_path: Path) -> None:
    seen: list[bytes] = []

    async def scenario() -> None:
        site, nodes = await _site(tmp_path, 3, seen=seen)
        try:
            results = await bootstrap_all(nodes, timeout=30, linger=5)
            assert [r.outcome for r in results] == ["confirmed"] * 3
            # Every flight the node saw and sent was a version 2 one, of its size.
            assert all(r.flight_bytes == {1: 25, 4: 29, 5: 13, 11: 13} for r in results)
            assert_all_rekeyed(site, nodes, shared_ik(site))
            assert sorted(site.node_statuses()) == ["active"] * 3 + ["enrolled"]
        finally:
            site.stop()
        bundle = json.loads((tmp_path / "nodes-bundle.json").read_text())
        assert (bundle["profile"], bundle["version"]) == ("compact", 2)
        for path in nodes:
            node = load_node_file(path)
            assert node.state.version == 2 and node.confirmed
            assert node.state.challenge is not None and node.state.challenge[0] == 0x24
        orders = site.admin("order", "list").splitlines()
        assert " paper " in orders[1] and " compact " in orders[2]
        # The CoAP binding adds nothing but its header and token: the bootstrap
        # resource is the root (no Uri-Path) and no Content-Format is sent.
        decoded = [(len(d), aiocoap.Message.decode(d)) for d in seen]
        bootstrap = [(n, m) for n, m in decoded if m.payload and m.payload[0] >> 4 == 2]
        assert {m.payload[0] for _, m in bootstrap if m.code.is_request()} == {0x22, 0x26}
        for size, m in bootstrap:
            assert list(m.opt.option_list()) == [], m.opt
            assert size == 4 + len(m.token) + 1 + len(m.payload)

    run(scenario())


@pytest.mark.parametrize(
    ("compact", "profile", "why"), [("refuse", "paper", "off"), ("accept", "hardened", "hardened")]
)
def test_a_server_without_compact_refuses_and_the_node_hears_why(
    tmp_path: Path, compact: str, profile: str, why: str
) -> None:
    """A hardened server refuses the compact profile too (its flight 3 would carry
    IK); the node must hear "unsupported profile" from either, not "other"."""

    async def scenario() -> None:
        site, [node] = await _site(tmp_path, 1, compact=compact, profile=profile)
        try:
            result = await bootstrap_node(node, timeout=5, linger=0)
        finally:
            site.stop()
        assert not result.ok
        assert "the controller said: unsupported profile" in result.outcome
        assert load_node_file(node).state.key == shared_ik(site)  # nothing changed
        server_log = (tmp_path / "server.log").read_text()
        assert f"compact profile (version 2) not spoken by this server: {why}" in server_log
        assert site.node_statuses() == ["enrolled", "enrolled"]

    run(scenario())
