"""After bootstrapping: CoAPS with PSK_i, configuration, interoperability with an
independent DTLS stack, and the node's lifecycle -- all with real processes."""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import subprocess
import sys
from pathlib import Path

import aiocoap
import pytest

from keystrap.coap.node_client import NodeClient, NodeRefused, NodeUnreachable
from keystrap.coap.node_server import serve_coaps
from keystrap.coap.server import BindError
from keystrap.ids import eui64
from keystrap.services.configure import ConfigUpdate
from keystrap.settings import NodeSettings
from keystrap.store.controller_store import ControllerStore
from keystrap.store.keyfile import read_key_file
from keystrap.store.node_file import load_node_file
from keystrap_lab.independent import KeyNotExpressible, coap_client_get, independent_get
from keystrap_lab.processes import free_udp_port, keystrap_command
from keystrap_lab.site import Site

from .services_helpers import run, shared_ik

HOST = "127.0.0.1"


async def started_site(root: Path, count: int = 1) -> tuple[Site, list[Path]]:
    site = Site(root, channels=("raw", "raw"), revocation_poll=1)
    await site.prepare()
    site.register_controller()
    nodes = site.enrol(count)
    await site.start()
    return site, nodes


def keystrap(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI as an operator would; the caller checks the exit status."""
    return subprocess.run(
        keystrap_command(*args), cwd=cwd, capture_output=True, text=True, check=False
    )


def node_id_text(path: Path) -> str:
    return eui64(load_node_file(path).state.node_id)


def settings_of(site: Site, path: Path) -> dict[str, object]:
    shown: dict[str, object] = json.loads(site.controller_cli("show", node_id_text(path)))
    return shown


async def read_with(path: Path, key: bytes, port: int) -> bytes:
    client = await NodeClient.connect(load_node_file(path).state.node_id, key, HOST, port, 3)
    try:
        return await client.read_config()
    finally:
        await client.close()


def test_configure_and_read_back_by_controller_and_coap_client(tmp_path: Path) -> None:
    async def scenario() -> None:
        site, (path,) = await started_site(tmp_path)
        port = free_udp_port()
        node = await site.start_node(path, port)
        try:
            nid = node_id_text(path)
            psk = load_node_file(path).state.key
            applied = json.loads(
                site.controller_cli(
                    "configure",
                    nid,
                    "--address",
                    f"{HOST}:{port}",
                    "--domain",
                    "plant.example.org",
                    "--gateway",
                    "2001:db8::1",
                    "--proxy",
                    "coap://proxy.example.org:5683",
                    "--set",
                    "report_interval=60",
                    "--set",
                    "name=boiler-3",
                )
            )
            assert applied == {
                "network": {
                    "domain": "plant.example.org",
                    "gateway": "2001:db8::1",
                    "proxy": "coap://proxy.example.org:5683",
                },
                "application": {"name": "boiler-3", "report_interval": 60},
            }
            assert settings_of(site, path) == applied
            assert load_node_file(path).settings.to_dict() == applied  # persisted on the node

            # libcoap (OpenSSL) reads the same resource with the PSK...
            body = await asyncio.to_thread(independent_get, HOST, port, nid, psk)
            assert json.loads(body) == applied
            # ...but gets no data with IK, or with the right key and another identity.
            ik = shared_ik(site)
            assert await asyncio.to_thread(independent_get, HOST, port, nid, ik) == ""
            other = "02:00:00:00:00:00:00:99"
            assert await asyncio.to_thread(independent_get, HOST, port, other, psk) == ""

            # Bad input: 4.00 with a reason, and the previous configuration stays.
            client = await NodeClient.connect(load_node_file(path).state.node_id, psk, HOST, port)
            try:
                for update, reason in [
                    (b'{"network":{"gateway":"10.0.0.300"}}', "not an IPv4 or IPv6 address"),
                    (b'{"application":{"colour":"red"}}', "unknown application setting"),
                    (b'{"application":{"location":"' + b"x" * 80 + b'"}}', "at most 64"),
                    (b'{"network":{"domain":"ok.example","proxy":"gopher://x"}}', "must be a URI"),
                ]:
                    with pytest.raises(NodeRefused, match=reason) as refused:
                        await client.update_config(update)
                    assert refused.value.code == aiocoap.BAD_REQUEST
            finally:
                await client.close()
            assert settings_of(site, path) == applied
            controller_cli = ("controller", "--config", str(site.controller_config))
            failed = keystrap(*controller_cli, "configure", nid, "--gateway", "not-an-address")
            assert failed.returncode == 2 and "4.00" in failed.stderr
            assert "not an IPv4 or IPv6 address" in failed.stderr
            # One setting both set and removed is refused whatever the order typed.
            for both in [
                ("--set", "name=x", "--unset", "name"),
                ("--unset", "name", "--set", "name=x"),
                ("--domain", "x.example", "--unset", "domain"),
            ]:
                clash = keystrap(*controller_cli, "configure", nid, *both)
                assert clash.returncode == 2 and "both set and removed" in clash.stderr
                assert len(clash.stderr.splitlines()) == 1
            assert settings_of(site, path) == applied

            # A restarted node serves what it persisted.
            node.stop()
            node = await site.start_node(path, port)
            assert settings_of(site, path) == applied

            # Nothing in plain CoAP on that port.
            context = await aiocoap.Context.create_client_context(transports=["udp6"])
            try:
                request = aiocoap.Message(code=aiocoap.GET, uri=f"coap://{HOST}:{port}/config")
                with pytest.raises((TimeoutError, aiocoap.error.Error)):
                    await asyncio.wait_for(context.request(request).response, 3)
            finally:
                await context.shutdown()
        finally:
            node.stop()
            site.stop()
        for log in (node.log_text(), site.controller.log_text() if site.controller else ""):
            assert psk.hex() not in log and psk.hex().upper() not in log

    run(scenario())


def test_one_setting_given_two_values_is_refused_whatever_the_flags() -> None:
    """``--domain x --set domain=y`` (or ``--set name=a --set name=b``) kept one
    of the two silently; the same value twice is no clash."""
    for pairs in [
        (("domain", "x.example"), ("domain", "y.example")),
        (("name", "a"), ("name", "b")),
        (("name", "a"), ("name", "")),
    ]:
        update = ConfigUpdate()
        update.set(*pairs[0])
        with pytest.raises(ValueError, match=f"'{pairs[0][0]}' is given two values"):
            update.set(*pairs[1])
    update = ConfigUpdate()
    for _ in range(2):
        update.set("name", "a")
        update.set("domain", None)
    assert update.to_json() == b'{"network":{"domain":null},"application":{"name":"a"}}'


def test_the_cli_refuses_two_values_for_one_setting_before_reaching_the_node(
    tmp_path: Path,
) -> None:
    nid = "02:00:00:00:00:00:00:01"
    for key, both in [
        ("domain", ("--domain", "x.example", "--set", "domain=y.example")),
        ("domain", ("--set", "domain=y.example", "--domain", "x.example")),
        ("name", ("--set", "name=a", "--set", "name=b")),
    ]:
        clash = keystrap("controller", "configure", nid, *both, cwd=tmp_path)
        assert clash.returncode == 2, clash.stderr
        assert len(clash.stderr.splitlines()) == 1
        assert f"'{key}' is given two values" in clash.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_address_no_datagram_can_be_sent_to_is_one_error_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiocoap's DTLS client fails such an address halfway through its set-up and
    its clean-up raised again ("Exception ignored in ... __del__", a traceback on
    the command's stderr), the error blaming a silent node."""
    unraisable: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)

    async def scenario() -> None:
        for host in ("nosuchhost.invalid", "255.255.255.255"):
            with pytest.raises(NodeUnreachable, match=f"cannot send to coaps://{host}:5000"):
                client = await NodeClient.connect(bytes(8), bytes(16), host, 5000, 3)
                try:
                    await client.read_config()
                finally:
                    await client.close()

    run(scenario())
    gc.collect()
    assert unraisable == []


def test_a_port_nothing_serves_is_said_at_once_and_as_it_is() -> None:
    """The host's "port unreachable" came back at once, yet the error said "no
    DTLS answer ... within 30 s" and ended in aiocoap's "[NetworkError]"."""

    async def scenario() -> None:
        port = free_udp_port()
        client = await NodeClient.connect(bytes(8), bytes(16), HOST, port, 30)
        try:
            with pytest.raises(NodeUnreachable) as refused:
                await client.read_config()
        finally:
            await client.close()
        said = str(refused.value)
        assert said.startswith(f"no DTLS answer from coaps://{HOST}:{port}: ")
        assert "Connection refused" in said and "within" not in said

    run(scenario())


def test_a_second_node_on_a_port_in_use_is_refused_naming_it() -> None:
    """aiocoap sets SO_REUSEPORT by default: a second node agent on a port another
    one serves started and shared its datagrams, so a controller's handshake
    reached, now and then, the node holding another PSK."""

    async def scenario() -> None:
        port = free_udp_port()
        first = await serve_coaps(bytes(8), bytes(16), HOST, port, NodeSettings(), print)
        try:
            with pytest.raises(BindError, match=f"UDP {HOST}:{port} is in use"):
                second = await serve_coaps(bytes(8), bytes(16), HOST, port, NodeSettings(), print)
                await second.shutdown()
        finally:
            await first.shutdown()
        with pytest.raises(BindError, match=r"cannot bind UDP nosuchhost\.invalid:"):
            await serve_coaps(
                bytes(8), bytes(16), "nosuchhost.invalid", port, NodeSettings(), print
            )

    run(scenario())


def test_reinstallation_rotates_the_psk_and_the_old_one_stops_working(tmp_path: Path) -> None:
    async def scenario() -> None:
        site, (path,) = await started_site(tmp_path)
        port = free_udp_port()
        node = await site.start_node(path, port)
        nid = node_id_text(path)
        try:
            site.controller_cli(
                "configure", nid, "--address", f"{HOST}:{port}", "--set", "units=si"
            )
            old = load_node_file(path).state.key
            node.stop()
            node = await site.start_node(path, port, "--reinstall")
            new = load_node_file(path).state.key
            assert new != old and load_node_file(path).confirmed
            assert site.server_keys()[load_node_file(path).state.node_id] == new
            with pytest.raises(NodeUnreachable):
                await read_with(path, old, port)
            assert json.loads(await read_with(path, new, port))["application"] == {"units": "si"}
            # the controller picked up the new PSK from the confirmed re-installation
            assert settings_of(site, path)["application"] == {"units": "si"}
        finally:
            node.stop()
            site.stop()

    run(scenario())


def test_revocation_reaches_server_and_controller(tmp_path: Path) -> None:
    async def scenario() -> None:
        site, paths = await started_site(tmp_path, 3)
        active, revoked, _never_bootstrapped = paths
        port = free_udp_port()
        other = await site.start_node(active, free_udp_port())
        other.stop()
        node = await site.start_node(revoked, port)
        nid = node_id_text(revoked)
        try:
            site.controller_cli("configure", nid, "--address", f"{HOST}:{port}")
            node.stop()
            site.admin("revoke", nid)
            controller = site.controller
            assert controller is not None
            for _ in range(100):
                if "revoked by the server" in controller.log_text():
                    break
                await asyncio.sleep(0.1)
            assert f"node={nid} revoked by the server" in controller.log_text()

            refused = keystrap("controller", "--config", str(site.controller_config), "show", nid)
            assert refused.returncode == 2 and "revoked" in refused.stderr
            listing = site.controller_cli("nodes")
            assert f"{nid}  revoked" in listing
            assert f"{node_id_text(active)}  active" in listing
            store = ControllerStore(
                site.root / "data" / "sbr.sqlite",
                read_key_file(site.root / "data" / "sbr-master.key"),
            )
            try:
                assert store.get_node(load_node_file(revoked).state.node_id).psk is None  # type: ignore[union-attr]
            finally:
                store.close()

            admin_nodes = site.admin("nodes")
            assert "1 active" in admin_nodes and "1 revoked" in admin_nodes
            assert "1 enrolled" in admin_nodes

            # A revoked node cannot come back by re-installing itself.
            again = keystrap("node", str(revoked), "--reinstall", "--timeout", "5", cwd=site.root)
            assert again.returncode == 1 and "failed" in again.stdout
        finally:
            node.stop()
            site.stop()

    run(scenario())


def test_factory_reset_returns_the_node_to_needing_enrolment(tmp_path: Path) -> None:
    async def scenario() -> None:
        site, (path,) = await started_site(tmp_path)
        node = await site.start_node(path, free_udp_port())
        serving = path.read_bytes()
        busy = keystrap("node", str(path), "--factory-reset")  # the agent would undo it
        assert busy.returncode == 2 and "another node agent" in busy.stderr
        assert path.read_bytes() == serving
        node.stop()
        site.stop()
        ik, psk = shared_ik(site), load_node_file(path).state.key
        reset = keystrap("node", str(path), "--factory-reset")
        assert reset.returncode == 0 and "factory reset" in reset.stdout
        text = path.read_text()
        assert psk.hex() not in text and ik.hex() not in text
        assert path.stat().st_mode & 0o777 == 0o600
        for extra in ([], ["--serve", str(free_udp_port())], ["--reinstall"]):
            again = keystrap("node", str(path), *extra)
            assert again.returncode == 2 and "needs enrolment" in again.stderr

    run(scenario())


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_agent_that_answered_stops_without_a_warning(
    tmp_path: Path, stop: signal.Signals
) -> None:
    """aiocoap's shutdown ends each DTLS session still open after its message
    manager has shut down: every agent that had answered a request logged
    "WARNING Internal shutdown sequence mismatch" when stopped."""
    key, node_id = bytes.fromhex("0f" * 16), bytes.fromhex("0200000000000043")

    async def scenario() -> None:
        port = free_udp_port()
        node = await Site(tmp_path).start_keyed_node(node_id, key, port)
        try:
            client = await NodeClient.connect(node_id, key, HOST, port, 3)
            try:
                applied = await client.update_config(b'{"application":{"name":"boiler-3"}}')
                assert json.loads(applied)["application"] == {"name": "boiler-3"}
            finally:
                await client.close()
            node.process.send_signal(stop)
            assert await asyncio.to_thread(node.process.wait, 10) == 0
        finally:
            node.stop()
        log = node.log_text()
        assert "configuration applied" in log
        assert "WARNING" not in log and "mismatch" not in log, log

    run(scenario())


def test_independent_peer_with_a_key_holding_zero_bytes(tmp_path: Path) -> None:
    """A PSK libcoap cannot take on its command line still interoperates, via OpenSSL."""
    key = bytes.fromhex("00112233445566778899aabbccddee00")
    node_id = bytes.fromhex("0200000000000042")

    async def scenario() -> None:
        port = free_udp_port()
        node = await Site(tmp_path).start_keyed_node(node_id, key, port)
        try:
            with pytest.raises(KeyNotExpressible):
                coap_client_get(HOST, port, eui64(node_id), key, "config")
            body = await asyncio.to_thread(independent_get, HOST, port, eui64(node_id), key)
            assert json.loads(body) == {"application": {}, "network": {}}
            wrong = bytes.fromhex("00112233445566778899aabbccddee01")
            assert await asyncio.to_thread(independent_get, HOST, port, eui64(node_id), wrong) == ""
        finally:
            node.stop()

    run(scenario())
