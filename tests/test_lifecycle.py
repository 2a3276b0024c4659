"""A lifecycle without dead ends, on real server and controller processes: an
order with live nodes cannot be removed, a controller's SK_cs is rotated without
losing anything, a revoked and factory-reset node is enrolled again on purpose,
and an address the node never answered on is not remembered."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from keystrap.ids import parse_eui64
from keystrap.services.node_agent import bootstrap_node, start_coaps
from keystrap.store.keyfile import read_key_file
from keystrap.store.node_file import load_node_file
from keystrap_lab.processes import free_udp_port
from keystrap_lab.site import Site

from .services_helpers import bootstrap_all, run
from .test_dtls import HOST, keystrap, node_id_text, started_site


def test_lifecycle_without_dead_ends(tmp_path: Path) -> None:
    async def scenario() -> None:
        site, (first, second) = await started_site(tmp_path, 2)
        admin = ("admin", "--config", str(site.server_config))
        controller = ("controller", "--config", str(site.controller_config))
        with site.controller_config.open("a") as toml:
            toml.write("dtls_timeout = 1\n")
        nid = node_id_text(first)
        try:
            assert all(r.ok for r in await bootstrap_all([first, second], timeout=30, linger=1))

            # An order whose nodes are active is not removed; the message says how.
            refused = keystrap(*admin, "order", "remove", "1")
            assert refused.returncode == 2
            assert "2 bootstrapping or active" in refused.stderr
            assert "keystrap admin revoke --order 1" in refused.stderr
            assert site.node_statuses() == ["active", "active"]

            # An address nobody answered on is not remembered; one that answered is.
            dead = keystrap(*controller, "show", nid, "--address", f"{HOST}:{free_udp_port()}")
            assert dead.returncode == 2
            assert f"{nid}  active   -" in site.controller_cli("nodes")
            port = free_udp_port()
            serving = await start_coaps(first, HOST, port)
            try:
                configure = ("configure", nid, "--address", f"{HOST}:{port}", "--set", "name=b")
                await asyncio.to_thread(site.controller_cli, *configure)
            finally:
                await serving.shutdown()
            assert f"{nid}  active   {HOST}:{port}" in site.controller_cli("nodes")

            # SK_cs rotation: refused onto an existing key file, then done; the
            # controller restarts with the new key and keeps its nodes and orders.
            key_file = site.root / "data" / "controller-sk.key"
            old_key = read_key_file(key_file)
            rotate = (*admin, "controller", "rotate-key", site.controller_id, "--key-out")
            clash = keystrap(*rotate, str(key_file))
            assert clash.returncode == 2 and "--force" in clash.stderr
            assert read_key_file(key_file) == old_key
            new_file = site.root / "data" / "controller-sk.new"
            assert keystrap(*rotate, str(new_file)).returncode == 0
            with site.repository() as repository:
                stored = repository.controller_keys()[parse_eui64(site.controller_id)]
            assert stored == read_key_file(new_file) != old_key
            assert site.controller is not None
            site.controller.stop()
            os.replace(new_file, key_file)
            await site.start_controller()
            again = await bootstrap_node(second, reinstall=True, timeout=30, linger=1)
            assert again.ok and again.outcome == "confirmed"
            assert "1 order(s)" in site.admin("order", "list")

            # Re-enrolment: factory reset, revoke, then enrol again on purpose.
            assert keystrap("node", str(first), "--factory-reset").returncode == 0
            site.admin("revoke", nid)
            await _revoked_at_controller(site, nid)
            order: tuple[str, ...] = (*admin, "order", "create", "--installer", "acme")
            order += ("--controller",)
            order += (site.controller_id, "--range", f"{nid}-{nid}", "--oob")
            order += (f"unix:{site.oob_socket}", "--out", str(tmp_path / "again.json"))
            plain = keystrap(*order)
            assert plain.returncode == 2 and "--re-enrol" in plain.stderr
            assert not (tmp_path / "again.json").exists()
            assert keystrap(*order, "--re-enrol").returncode == 0
            install: tuple[str, ...] = ("install", str(tmp_path / "again.json"))
            install += ("--out", str(first.parent))
            install += ("--channel-up", "raw", "--channel-down", "raw")
            assert keystrap(*install).returncode == 2  # the reset file is not replaced silently
            assert keystrap(*install, "--force").returncode == 0
            back = await bootstrap_node(first, timeout=30, linger=1)
            assert back.ok and load_node_file(first).confirmed
            assert sorted(site.node_statuses()) == ["active", "active"]
            assert f"{nid}  active" in site.controller_cli("nodes")
        finally:
            site.stop()

    run(scenario())


async def _revoked_at_controller(site: Site, nid: str) -> None:
    """Wait until the controller has dropped the node's PSK (its revocation poll):
    a revocation it learnt only after the re-enrolment would drop the new PSK."""
    assert site.controller is not None
    for _ in range(100):
        if f"node={nid} revoked by the server" in site.controller.log_text():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the controller never learnt of the revocation")
