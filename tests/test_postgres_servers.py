"""Two real ``keystrap server`` processes over one PostgreSQL database (the
session's private cluster), reached by a controller that fails over between
them: the same flight 2 on both, a server killed and PostgreSQL restarted
during concurrent bootstraps."""

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from keystrap.coap.client import SbsClient
from keystrap.config import DEFAULT_CONTROLLER_ID
from keystrap.ids import parse_eui64
from keystrap.protocol import (
    Controller,
    ControllerState,
    Node,
    NodeState,
    Reply,
    Status,
    ToNode,
    ToServer,
)
from keystrap.store.keyfile import read_key_file
from keystrap.wire import Flight1, Flight2
from keystrap_lab.pg_cluster import PrivateCluster
from keystrap_lab.processes import Service, free_udp_port, start_service, wait_for_server
from keystrap_lab.site import Site

from .services_helpers import run

CID = parse_eui64(DEFAULT_CONTROLLER_ID)
T = TypeVar("T")


async def two_servers(site: Site, held: contextlib.ExitStack) -> tuple[Service, Service, int]:
    """The site's server and a second one on another port, same database; both
    stopped when ``held`` closes."""
    held.callback(site.stop)
    await site.start_server()
    port = free_udp_port()
    second = site.root / "server-b.toml"
    second.write_text(
        site.server_config.read_text().replace(f"port = {site.server_port}", f"port = {port}")
    )
    other = start_service(
        "server", ["server", "--config", str(second)], site.root, site.root / "b.log"
    )
    held.callback(other.stop)
    await wait_for_server("127.0.0.1", port, other)
    assert site.server is not None
    return site.server, other, port


async def prepared(root: Path, url: str, nodes: int) -> tuple[Site, bytes, list[bytes]]:
    site = Site(root, store=url)
    await site.prepare()
    site.register_controller()
    bundle = site.order(nodes)
    import json

    data = json.loads(bundle.read_text())
    ids = [parse_eui64(n["id"]) for n in data["nodes"]]
    return site, bytes.fromhex(data["shared_key"]), ids


async def bootstrap_all(
    client: SbsClient,
    sk_cs: bytes,
    ik: bytes,
    ids: list[bytes],
    midway: Callable[[], Awaitable[None]],
) -> int:
    """Every node through the controller core, flights 2 and 6 over CoAP, all at
    once; ``midway`` runs once half of them hold their flight 3."""
    core = Controller(
        ControllerState(CID, sk_cs, next_tid=secrets.randbelow(1 << 20) + 1), secrets.token_bytes
    )
    granted = 0
    half = asyncio.Event()

    def step(action: Callable[[], object], kind: type[T]) -> T:
        """The core's output for this one call (drained at once, no other node's)."""
        action()
        return next(item for item in core.data_to_send() if isinstance(item, kind))

    async def post(data: bytes, tid: int) -> Reply:
        """As the controller core does: a transient answer (5.03 while the database
        is away) is asked again with the same bytes, which the server answers alike."""
        for _ in range(30):
            reply = await client.post(data, lane=tid)
            if not reply.status.transient:
                return reply
            await asyncio.sleep(1)
        return reply

    async def one(node_id: bytes) -> bool:
        nonlocal granted
        node = Node(NodeState(node_id, CID, ik), secrets.token_bytes)
        node.start(time.time())
        hello = node.data_to_send()[0]
        flight2 = step(lambda: core.receive_from_node(hello, time.time()), ToServer)
        reply = await post(flight2.data, flight2.tid)
        if reply.status is not Status.OK:
            return False
        challenge = step(lambda: core.receive_from_server(flight2.tid, reply, time.time()), ToNode)
        granted += 1
        if granted == len(ids) // 2:
            half.set()
        await half.wait()
        node.receive(challenge.data, time.time())
        proof = node.data_to_send()[0]
        flight6 = step(lambda: core.receive_from_node(proof, time.time()), ToServer)
        reply = await post(flight6.data, flight6.tid)
        core.receive_from_server(flight6.tid, reply, time.time())
        core.data_to_send()
        return reply.status is Status.OK

    async def trigger() -> None:
        await half.wait()
        await midway()

    results = await asyncio.gather(*(one(n) for n in ids), trigger())
    return sum(1 for r in results[:-1] if r)


def settled(site: Site, ids: list[bytes]) -> tuple[list[str], int]:
    with site.repository() as repository:
        states = [repository.get_node(n) for n in ids]
        return [s.status.value for s in states if s], repository.count_all_pending()


def test_same_flight2_on_two_server_processes(tmp_path: Path, pg_url: str) -> None:
    async def scenario() -> None:
        site, _, ids = await prepared(tmp_path, pg_url, 1)
        with contextlib.ExitStack() as held:
            _, _, port = await two_servers(site, held)
            sk = read_key_file(site.root / "data" / "controller-sk.key")
            hello = Flight1(ids[0], secrets.token_bytes(16))
            flight2 = Flight2(CID, 77, int(time.time()), secrets.token_bytes(16), hello).seal(sk)
            a = await SbsClient.create(f"coap://127.0.0.1:{site.server_port}")
            b = await SbsClient.create(f"coap://127.0.0.1:{port}")
            replies = await asyncio.gather(a.post(flight2), b.post(flight2), a.post(flight2))
            await a.shutdown()
            await b.shutdown()
            assert [r.status for r in replies] == [Status.OK] * 3
            assert replies[0].payload == replies[1].payload == replies[2].payload
            _, pending = settled(site, ids)
            assert pending == 1

    run(scenario())


def test_killing_one_of_two_servers_during_50_bootstraps(tmp_path: Path, pg_url: str) -> None:
    """The controller knows both servers; the first dies (SIGKILL) once half the
    nodes hold flight 3: every bootstrap completes through the second, none is
    left with an open candidate."""

    async def scenario() -> None:
        site, ik, ids = await prepared(tmp_path, pg_url, 50)
        with contextlib.ExitStack() as held:
            first, _, port = await two_servers(site, held)
            sk = read_key_file(site.root / "data" / "controller-sk.key")
            client = await SbsClient.create(
                f"coap://127.0.0.1:{site.server_port}, coap://127.0.0.1:{port}", endpoints=8
            )

            async def kill_first() -> None:
                first.kill()

            done = await bootstrap_all(client, sk, ik, ids, kill_first)
            await client.shutdown()
            assert first.process.returncode == -9  # every flight 6 went to the second
            assert done == 50
            statuses, pending = settled(site, ids)
            assert statuses == ["active"] * 50 and pending == 0

    run(scenario())


def test_postgres_restart_during_bootstraps(
    tmp_path: Path, pg_url: str, pg_cluster: PrivateCluster
) -> None:
    """PostgreSQL restarts (every connection cut) while 20 bootstraps are half
    done: the servers reconnect, nothing committed is lost, all complete."""

    async def scenario() -> None:
        site, ik, ids = await prepared(tmp_path, pg_url, 20)
        with contextlib.ExitStack() as held:
            _, _, port = await two_servers(site, held)
            sk = read_key_file(site.root / "data" / "controller-sk.key")
            client = await SbsClient.create(
                f"coap://127.0.0.1:{site.server_port},coap://127.0.0.1:{port}", endpoints=8
            )

            async def restart() -> None:
                await asyncio.to_thread(pg_cluster.restart)

            done = await bootstrap_all(client, sk, ik, ids, restart)
            await client.shutdown()
            assert done == 20
            statuses, pending = settled(site, ids)
            assert statuses == ["active"] * 20 and pending == 0

    run(scenario())
