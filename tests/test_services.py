"""The deployable processes, for real: server and controller on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from pathlib import Path

import aiocoap
import pytest

from keystrap.ids import parse_eui64
from keystrap.services.node_agent import bootstrap_node
from keystrap.store.keyfile import read_key_file
from keystrap.store.node_file import load_node_file
from keystrap.wire import Flight1, Flight2
from keystrap_lab.site import Site

from .services_helpers import (
    assert_all_rekeyed,
    bootstrap_all,
    pending_candidates,
    post,
    run,
    server_keys,
    shared_ik,
)


async def started_site(root: Path, count: int, **relay: object) -> tuple[Site, list[Path]]:
    """A site whose out-of-band frames travel raw: these tests are about the services;
    tests/test_oob_end_to_end.py runs the physical media."""
    site = Site(root, channels=("raw", "raw"))
    await site.prepare(**relay)  # type: ignore[arg-type]
    site.register_controller()
    nodes = site.enrol(count)
    await site.start()
    return site, nodes


def test_hundred_nodes_bootstrap_concurrently(tmp_path: Path) -> None:
    async def scenario() -> None:
        site, nodes = await started_site(tmp_path, 100)
        try:
            # A generous linger: on a busy machine (other tests run beside this one)
            # a hundred confirmations can take longer than the default 15 s.
            results = await bootstrap_all(nodes, linger=60)
            assert [r.outcome for r in results] == ["confirmed"] * 100
            assert len({r.tid for r in results}) == 100
            assert_all_rekeyed(site, nodes, shared_ik(site))
            assert site.admin("nodes").strip().endswith("100 node(s): 100 active")
            for path in nodes:
                state = load_node_file(path).state
                assert state.rn_i is None and state.session_key is not None
        finally:
            site.stop()
        log = site.server.log_text() if site.server else ""
        controller_log = site.controller.log_text() if site.controller else ""
        ik_hex = shared_ik(site).hex()
        assert ik_hex not in log and ik_hex not in controller_log

    run(scenario())


def test_reinstallation_through_the_services(tmp_path: Path) -> None:
    async def scenario() -> None:
        site, nodes = await started_site(tmp_path, 2)
        try:
            await bootstrap_all(nodes)
            first = server_keys(site)
            again = await bootstrap_node(nodes[0], reinstall=True, timeout=20, linger=5)
            assert again.outcome == "confirmed"
            second = server_keys(site)
            node_id = load_node_file(nodes[0]).state.node_id
            assert second[node_id] != first[node_id]
            assert second[node_id] == load_node_file(nodes[0]).state.key
        finally:
            site.stop()

    run(scenario())


@pytest.mark.parametrize("victim", ["server", "controller"])
@pytest.mark.parametrize("after", [0.3])
def test_sigkill_and_restart_loses_no_key(tmp_path: Path, victim: str, after: float) -> None:
    """Kill a service with SIGKILL while 30 bootstraps run, restart it, let every
    node retry from its persisted state: all finish, nobody is left on IK."""

    async def scenario() -> None:
        site, nodes = await started_site(tmp_path, 30)
        try:
            running = asyncio.ensure_future(bootstrap_all(nodes, timeout=40, linger=3))
            await asyncio.sleep(after)
            service = site.server if victim == "server" else site.controller
            assert service is not None
            service.kill()
            await asyncio.sleep(0.5)
            await (site.start_server() if victim == "server" else site.start_controller())
            results = await running
            for _ in range(5):  # nodes cut off by the crash retry, as a device would
                todo = [p for p, r in zip(nodes, results, strict=True) if r.outcome != "confirmed"]
                if not todo:
                    break
                results = [r for r in results if r.outcome == "confirmed"]
                results += await bootstrap_all(todo, timeout=40, linger=3)
                nodes = [p for p in nodes if p not in todo] + todo
            assert all(r.outcome == "confirmed" for r in results), [
                r.outcome for r in results if r.outcome != "confirmed"
            ]
            deadline = time.monotonic() + 30
            while pending_candidates(site) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)  # the controller is still confirming
            assert_all_rekeyed(site, nodes, shared_ik(site))
        finally:
            site.stop()

    run(scenario())


def test_bad_requests_get_4xx_and_change_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        site, nodes = await started_site(tmp_path, 1)
        try:
            before = server_keys(site)
            random_payload = await post(site, secrets.token_bytes(40))
            assert str(random_payload.code).startswith("4.00")
            assert random_payload.payload  # a short reason
            empty = await post(site, b"")
            assert str(empty.code).startswith("4.00")
            wrong_format = await post(site, b"\x12" * 66, content_format=50)
            assert str(wrong_format.code).startswith("4.15")
            get = await post(site, b"", method=aiocoap.GET)
            assert str(get.code).startswith("4.05")

            node_id = load_node_file(nodes[0]).state.node_id
            flight1 = Flight1(node_id, secrets.token_bytes(16))
            stranger = Flight2(
                bytes(8), 1, int(time.time()), secrets.token_bytes(16), flight1
            ).seal(secrets.token_bytes(16))
            assert str((await post(site, stranger)).code).startswith("4.01")
            sk_cs = read_key_file(site.root / "data" / "controller-sk.key")
            cid = parse_eui64(site.controller_id)
            wrong_key = Flight2(cid, 1, int(time.time()), secrets.token_bytes(16), flight1).seal(
                secrets.token_bytes(16)
            )
            assert str((await post(site, wrong_key)).code).startswith("4.01")
            stale = Flight2(
                cid, 900, int(time.time()) - 600, secrets.token_bytes(16), flight1
            ).seal(sk_cs)
            reply = await post(site, stale)
            assert str(reply.code).startswith("4.03") and b"stale" in reply.payload
            assert server_keys(site) == before and pending_candidates(site) == 0

            fresh = Flight2(cid, 901, int(time.time()), secrets.token_bytes(16), flight1).seal(
                sk_cs
            )
            first, again = await post(site, fresh), await post(site, fresh)
            assert str(first.code).startswith("2.04") and first.payload == again.payload
            reused = Flight2(cid, 901, int(time.time()), secrets.token_bytes(16), flight1).seal(
                sk_cs
            )
            reply = await post(site, reused)
            assert str(reply.code).startswith("4.03") and b"TID" in reply.payload
            unknown_node = Flight2(
                cid, 902, int(time.time()), secrets.token_bytes(16), Flight1(b"\x02" * 8, bytes(16))
            ).seal(sk_cs)
            assert str((await post(site, unknown_node)).code).startswith("4.04")
            assert server_keys(site) == before  # a grant alone changes no key
        finally:
            site.stop()

    run(scenario())


def test_server_survives_a_flood_and_keeps_serving(tmp_path: Path) -> None:
    async def scenario() -> None:
        site, nodes = await started_site(tmp_path, 3)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for i in range(3000):
                    size = 1 + i % 120
                    sock.sendto(os.urandom(size), ("127.0.0.1", site.server_port))
                    if i % 200 == 0:
                        await asyncio.sleep(0)
            context = await aiocoap.Context.create_client_context()
            try:
                futures = [
                    asyncio.ensure_future(
                        context.request(
                            aiocoap.Message(
                                code=aiocoap.POST,
                                payload=os.urandom(66),
                                uri=f"coap://127.0.0.1:{site.server_port}/bs",
                                transport_tuning=aiocoap.Unreliable,
                            )
                        ).response
                    )
                    for _ in range(300)
                ]
                await asyncio.wait(futures, timeout=20)
                for future in futures:
                    future.cancel()
                answers = await asyncio.gather(*futures, return_exceptions=True)
                codes = {str(a.code)[:4] for a in answers if isinstance(a, aiocoap.Message)}
                assert codes <= {"4.00", "4.01"}, codes
            finally:
                await context.shutdown()
            assert site.server is not None and site.server.process.poll() is None
            results = await bootstrap_all(nodes)
            assert all(r.outcome == "confirmed" for r in results)
        finally:
            site.stop()

    run(scenario())


def test_installer_holding_ik_cannot_bootstrap_again(tmp_path: Path) -> None:
    async def scenario() -> None:
        site, nodes = await started_site(tmp_path, 2)
        try:
            await bootstrap_all(nodes)
            before = server_keys(site)
            copies = site.root / "copies"
            site.install(site.root / "nodes-bundle.json", copies)
            attempt = await bootstrap_node(copies / nodes[0].name, timeout=3, linger=0)
            assert attempt.outcome.startswith("failed")
            assert "authentication" in attempt.outcome
            assert server_keys(site) == before
        finally:
            site.stop()

    run(scenario())
