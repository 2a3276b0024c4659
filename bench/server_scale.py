"""SBS scale: bootstraps per second per core with 10^6 nodes enrolled, as the
number of concurrent controllers grows, for both server profiles; on SQLite or,
with ``--store postgresql``, on a private PostgreSQL cluster with one or more
servers sharing it (``--servers 1,2``).

The real ``keystrap server`` process serves (store work on its own thread, one
commit per batch of queued requests: "per fsync" is the bootstraps each commit
served, over the whole run); each controller is a load
generator process that runs the sans-I/O controller and node cores and posts
flights 2 and 6 over CoAP (no out-of-band media, no controller state file), so
the server is the part under load. The server's CPU seconds per bootstrap come
from /proc; "per core" is 1 / that. ``--profile-server`` also runs the server
under cProfile at the largest load and prints where its time goes.

    python bench/server_scale.py [--enrolled 1000000] [--controllers 1,2,4] [--per 300]
    python bench/server_scale.py --profiles paper --controllers 2 --per 3000 --rate max
    python bench/server_scale.py --store postgresql --servers 1,2 --profiles paper

With PostgreSQL, the database's CPU per bootstrap is read from /proc too (the
postmaster, its backends, and the backends it has reaped).

"machine ms" is what one fixed piece of pure-Python work costs just before and
just after each load (``services.machine_ms``): on a shared VM it moves by a
factor of two within minutes, and the figures with it. ``--repeat N`` therefore
runs each load N times over the same enrolled store and servers, each time on
nodes of its own, and adds the median, lowest and highest of the N rounds: one
enrolment of 10^6 nodes (about a minute) serves every round.

    python bench/server_scale.py --profiles paper --controllers 2 --per 3000 --rate max --repeat 7

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing
import os
import pstats
import re
import secrets
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services import cpu_seconds, interpreter, machine_ms, positive

from keystrap.coap.client import SbsClient
from keystrap.coap.codes import TO_COAP
from keystrap.ids import eui64, parse_eui64
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
from keystrap_lab.pg_cluster import PrivateCluster, private_cluster
from keystrap_lab.processes import Service, free_udp_port, start_service, wait_for_server
from keystrap_lab.site import Site


@dataclass(frozen=True)
class Job:
    """What one load-generating controller process does (picklable, for spawn)."""

    uri: str  # one or several (comma-separated) server URIs
    controller: str
    key_file: str
    ik: bytes
    node_ids: list[str]
    concurrency: int
    first_tid: int
    rate: int = 0  # > 0: raw CoAP datagrams, flights 2 then flights 6, at this rate


def generator(job: Job, out: Any) -> None:
    """One controller: bootstrap ``job.node_ids`` against the server."""
    out.put(_generate_raw(job) if job.rate else asyncio.run(_generate(job)))


async def _generate(job: Job) -> tuple[int, int]:
    controller, conc, ik = job.controller, job.concurrency, job.ik
    cid = parse_eui64(controller)
    state = ControllerState(cid, read_key_file(Path(job.key_file)), next_tid=job.first_tid)
    core = Controller(state, secrets.token_bytes)
    client = await SbsClient.create(job.uri, endpoints=conc)
    gate = asyncio.Semaphore(conc)

    async def post(out: ToServer) -> bool:
        reply = await client.post(out.data, lane=out.tid)
        core.receive_from_server(out.tid, reply, time.time())
        if reply.status is not Status.OK:
            print(f"{controller}: {reply.status.value} {reply.reason}", file=sys.stderr)
        return reply.status is Status.OK

    def take(kind: type[ToServer] | type[ToNode]) -> Any:
        for item in core.data_to_send():
            if isinstance(item, kind):
                return item
        raise RuntimeError("controller produced nothing")

    async def one(text: str) -> bool:
        async with gate:
            node = Node(NodeState(parse_eui64(text), cid, ik), secrets.token_bytes)
            node.start(time.time())
            core.receive_from_node(node.data_to_send()[0], time.time())
            if not await post(take(ToServer)):
                return False
            node.receive(take(ToNode).data, time.time())
            core.receive_from_node(node.data_to_send()[0], time.time())
            return await post(take(ToServer))

    results = await asyncio.gather(*(one(t) for t in job.node_ids))
    await client.shutdown()
    return sum(results), len(results)


def _generate_raw(job: Job) -> tuple[int, int]:
    """The same cores as :func:`_generate`, but the flights go as raw CoAP datagrams
    from one socket, every flight 2 first and then every flight 6, paced at
    ``job.rate`` a second: an aiocoap client spends several times the server's
    CPU on each request, so on a small machine it cannot offer the load that
    shows what one server core sustains. The server does the same work per
    bootstrap either way."""
    cid = parse_eui64(job.controller)
    state = ControllerState(cid, read_key_file(Path(job.key_file)), next_tid=job.first_tid)
    core = Controller(state, secrets.token_bytes)
    host, port = job.uri.split(",")[0].removeprefix("coap://").rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.connect((host, int(port)))
    nodes: dict[int, Node] = {}
    flights2: dict[int, bytes] = {}
    for text in job.node_ids:
        node = Node(NodeState(parse_eui64(text), cid, job.ik), secrets.token_bytes)
        node.start(time.time())
        core.receive_from_node(node.data_to_send()[0], time.time())
        for out in core.data_to_send():
            if isinstance(out, ToServer):
                nodes[out.tid], flights2[out.tid] = node, out.data
    grants = _exchange(sock, flights2, job.rate)
    flights6: dict[int, bytes] = {}
    for tid, reply in grants.items():
        core.receive_from_server(tid, reply, time.time())
        outgoing = core.data_to_send()
        while outgoing:
            out = outgoing.pop(0)
            if isinstance(out, ToNode):
                nodes[tid].receive(out.data, time.time())
                core.receive_from_node(nodes[tid].data_to_send()[0], time.time())
                outgoing += core.data_to_send()
            elif isinstance(out, ToServer):
                flights6[out.tid] = out.data
    confirmed = _exchange(sock, flights6, job.rate)
    sock.close()
    for tid, reply in list(grants.items()) + list(confirmed.items()):
        if reply.status is not Status.OK:
            print(
                f"{job.controller} TID {tid}: {reply.status.value} {reply.payload!r}",
                file=sys.stderr,
            )
    return sum(r.status is Status.OK for r in confirmed.values()), len(job.node_ids)


def post_datagram(tid: int, payload: bytes) -> bytes:
    """A confirmable ``POST /`` carrying ``payload``, the TID as its token and
    (its low 16 bits) as its Message ID."""
    return (
        bytes((0x44, 0x02))
        + (tid & 0xFFFF).to_bytes(2, "big")
        + tid.to_bytes(4, "big")
        + b"\xff"
        + payload
    )


def _exchange(sock: socket.socket, requests: dict[int, bytes], rate: int) -> dict[int, Reply]:
    """Each request as a confirmable ``POST /`` (token = TID), paced; repeated
    after 2 s unanswered; the replies by TID once all have come (or 30 s)."""
    codes = {int(code): status for status, code in TO_COAP.items()}
    sent: dict[int, float] = {}
    replies: dict[int, Reply] = {}
    queue, begun = list(requests), time.monotonic()
    deadline, checked = begun + 30 + len(requests) / rate, begun
    first_sends = 0
    while len(replies) < len(requests) and time.monotonic() < deadline:
        now = time.monotonic()
        due = int((now - begun) * rate) + 1 - first_sends
        if now - checked > 1:
            queue += [t for t, at in sent.items() if t not in replies and now - at > 2]
            checked = now
        while queue and due > 0:
            tid = queue.pop(0)
            sock.send(post_datagram(tid, requests[tid]))
            first_sends += tid not in sent
            sent[tid], due = time.monotonic(), due - 1
        if select.select([sock], [], [], 0.001)[0]:
            with contextlib.suppress(BlockingIOError):
                while True:
                    data = sock.recv(2048, socket.MSG_DONTWAIT)
                    if data[1] == 0:  # an empty ACK: the answer follows on its own
                        continue
                    if data[0] >> 4 & 3 == 0:  # that separate answer, confirmable: ACK it
                        sock.send(bytes((0x60, 0)) + data[2:4])
                    tid = int.from_bytes(data[4:8], "big")
                    replies[tid] = Reply(codes[data[1]], payload=data[9:])
    if len(replies) < len(requests):
        print(f"{len(requests) - len(replies)} unanswered, {len(sent)} sent", file=sys.stderr)
    return replies


def failover_order(ports: list[int], i: int) -> str:
    """Controller ``i`` starts on server ``i mod n`` and fails over to the others."""
    turn = ports[i % len(ports) :] + ports[: i % len(ports)]
    return ",".join(f"coap://127.0.0.1:{port}" for port in turn)


def postgres_cpu_seconds(postmaster: int) -> float:
    """The cluster's CPU: the postmaster, its live children, and the children it
    has already reaped (their time is added to its cutime/cstime)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        pid = int(stat.parent.name)
        if pid == postmaster:
            total += (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / tick
        elif int(fields[1]) == postmaster:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def run_load(
    ports: list[int],
    controllers: list[tuple[str, Path]],
    ik: bytes,
    ids: list[str],
    conc: int,
    first_tid: int,
    rate: int = 0,
) -> tuple[int, float]:
    queue: Any = multiprocessing.get_context("spawn").Queue()
    per = len(ids) // len(controllers)

    def batch(i: int) -> list[str]:
        return ids[i * per : (i + 1) * per]

    procs = [
        multiprocessing.get_context("spawn").Process(
            target=generator,
            args=(
                Job(
                    failover_order(ports, i),
                    cid,
                    str(key),
                    ik,
                    batch(i),
                    conc,
                    first_tid,
                    rate // len(controllers),
                ),
                queue,
            ),
        )
        for i, (cid, key) in enumerate(controllers)
    ]
    start = time.monotonic()
    for p in procs:
        p.start()
    done = sum(queue.get()[0] for _ in procs)
    elapsed = time.monotonic() - start
    for p in procs:
        p.join()
    return done, elapsed


def start_profiled(args: list[str], root: Path) -> Service:
    """The server under cProfile; it writes ``server.prof`` when it stops (SIGTERM)."""
    log = root / "server.log"
    command = [sys.executable, "-m", "cProfile", "-o", str(root / "server.prof")]
    command += ["-m", "keystrap.cli.main", *args]
    with open(log, "ab") as handle:
        process = subprocess.Popen(command, cwd=root, stdout=handle, stderr=subprocess.STDOUT)
    return Service("server", process, log)


def add_controllers(site: Site, count: int) -> list[tuple[str, Path]]:
    """Register ``count`` load controllers; their IDs and key files."""
    controllers = []
    for n in range(count):
        cid = eui64(bytes.fromhex("0200000000000c") + bytes([n]))
        key = site.root / f"c{n}.key"
        site.admin("controller", "add", cid, "--name", f"load{n}", "--key-out", str(key))
        controllers.append((cid, key))
    return controllers


def enrol(site: Site, owner: str, enrolled: int, fresh: int) -> tuple[bytes, list[str]]:
    """``enrolled`` nodes in all, the last ``fresh`` of them in an order of their own
    to bootstrap: their shared initial key and their IDs."""
    if enrolled > fresh:
        site.order(enrolled - fresh, "bulk", name="bulk", controller=owner)
    site.order(fresh, "load", name="load", controller=owner)
    bundle = json.loads((site.root / "load-bundle.json").read_text())
    return bytes.fromhex(bundle["shared_key"]), [n["id"] for n in bundle["nodes"]]


async def measure(
    args: argparse.Namespace, profile: str, root: Path, cluster: PrivateCluster | None
) -> list[dict[str, Any]]:
    levels = [int(c) for c in args.controllers.split(",")]
    server_levels = [int(n) for n in args.servers.split(",")]
    url = "" if cluster is None else cluster.create_database(f"scale_{profile}")
    site = Site(root, profile=profile, store=url)
    await site.prepare()
    controllers = add_controllers(site, max(levels))
    measured = args.per * sum(levels) * len(server_levels) * args.repeat
    t0 = time.monotonic()
    ik, ids = enrol(site, controllers[0][0], args.enrolled, measured)
    enrol_s = time.monotonic() - t0
    servers: list[tuple[int, Service]] = []
    rows = []
    try:
        offset = 0
        for count in server_levels:
            while len(servers) < count:
                servers.append(await start_server(args, site, len(servers)))
            ports = [port for port, _ in servers[:count]]
            for level, round_ in itertools.product(levels, range(1, args.repeat + 1)):
                batch = ids[offset : offset + args.per * level]
                machine = [machine_ms()]
                cpu0 = [cpu_seconds(s.process.pid) for _, s in servers[:count]]
                # The main thread runs the event loop; the other is the store's.
                loop0 = [cpu_seconds(s.process.pid, s.process.pid) for _, s in servers[:count]]
                db0 = 0.0 if cluster is None else postgres_cpu_seconds(cluster.postmaster_pid())
                done, elapsed = run_load(
                    ports, controllers[:level], ik, batch, args.concurrency, offset + 1, args.rate
                )
                cpu = sum(cpu_seconds(s.process.pid) for _, s in servers[:count]) - sum(cpu0)
                machine.append(machine_ms())
                loop = sum(cpu_seconds(p.process.pid, p.process.pid) for _, p in servers[:count])
                loop -= sum(loop0)
                db = (
                    0.0 if cluster is None else postgres_cpu_seconds(cluster.postmaster_pid()) - db0
                )
                rows.append(
                    {
                        "profile": profile,
                        "store": args.store,
                        "enrolled": args.enrolled,
                        "enrol_seconds": round(enrol_s, 1),
                        "servers": count,
                        "controllers": level,
                        "round": round_,
                        "bootstraps": len(batch),
                        "completed": done,
                        "per_second": round(done / elapsed, 1),
                        "server_cpu_ms_per_bootstrap": round(cpu / max(done, 1) * 1000, 3),
                        "loop_cpu_ms_per_bootstrap": round(loop / max(done, 1) * 1000, 3),
                        "store_cpu_ms_per_bootstrap": round((cpu - loop) / max(done, 1) * 1000, 3),
                        "db_cpu_ms_per_bootstrap": round(db / max(done, 1) * 1000, 3),
                        "per_core_per_second": round(max(done, 1) / cpu, 1) if cpu else None,
                        "server_cpu_share": round(cpu / elapsed, 2),
                        "machine_ms_before_after": [round(ms) for ms in machine],
                    }
                )
                offset += len(batch)
    finally:
        for _, server in servers:
            server.stop()
    requests = commits = 0
    for _, server in servers:
        served = re.search(r"(\d+) request\(s\) in (\d+) commit\(s\)", server.log_text())
        if served is not None:
            requests, commits = requests + int(served[1]), commits + int(served[2])
    if commits:
        for row in rows:  # two requests (flights 2 and 6) per bootstrap
            row["bootstraps_per_fsync"] = round(requests / 2 / commits, 1)
    return rows


async def start_server(args: argparse.Namespace, site: Site, n: int) -> tuple[int, Service]:
    """Server ``n`` of the site: the first on the site's port, the others on
    their own ports with the same store (PostgreSQL) and master key."""
    config, port = site.server_config, site.server_port
    if n:
        port = free_udp_port()
        config = site.root / f"server-{n}.toml"
        config.write_text(
            site.server_config.read_text().replace(f"port = {site.server_port}", f"port = {port}")
        )
    command = ["server", "--config", str(config)]
    if args.profile_server and n == 0:
        server = start_profiled(command, site.root)
    else:
        server = start_service("server", command, site.root, site.root / f"server-{n}.log")
    await wait_for_server("127.0.0.1", port, server)
    return port, server


MAX_RATE = 10**9
"""``--rate max``: every flight sent at once, the server's socket queue holding them."""


def offered_rate(text: str) -> int:
    return MAX_RATE if text == "max" else int(text)


def rounds_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per profile, store, servers and controllers: the median, lowest and highest
    SBS CPU per bootstrap of its rounds (``--repeat``)."""
    groups: dict[tuple[Any, ...], list[float]] = {}
    for row in rows:
        key = (row["profile"], row["store"], row["servers"], row["controllers"])
        groups.setdefault(key, []).append(row["server_cpu_ms_per_bootstrap"])
    return [
        {
            "profile": profile,
            "store": store,
            "servers": servers,
            "controllers": controllers,
            "rounds": len(figures),
            "server_cpu_ms_median": round(statistics.median(figures), 3),
            "server_cpu_ms_lowest": min(figures),
            "server_cpu_ms_highest": max(figures),
        }
        for (profile, store, servers, controllers), figures in groups.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enrolled", type=int, default=1_000_000)
    parser.add_argument("--controllers", default="1,2,4")
    parser.add_argument("--per", type=int, default=300, help="bootstraps per controller")
    parser.add_argument("--concurrency", type=int, default=8, help="per controller")
    parser.add_argument("--profiles", default="paper,hardened")
    parser.add_argument(
        "--rate",
        type=offered_rate,
        default=0,
        help="offer raw CoAP datagrams at this many bootstraps/s in all "
        "(flights 2, then flights 6) instead of aiocoap clients; 'max': all at "
        "once, so the server runs flat out (what one of its cores sustains)",
    )
    parser.add_argument("--profile-server", action="store_true")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--servers", default="1", help="servers sharing the store (PostgreSQL)")
    parser.add_argument(
        "--repeat",
        type=positive,
        default=1,
        help="rounds of each load over the same enrolled store (each on nodes of its "
        "own); the median, lowest and highest are printed after the table",
    )
    args = parser.parse_args()
    if args.store == "sqlite" and args.servers != "1":
        parser.error("several servers need a shared store: add --store postgresql")
    rows: list[dict[str, Any]] = []
    print(
        f"{'profile':<9} {'enrolled':>9} {'SBSs':>4} {'ctrls':>5} {'done':>9} {'boot/s':>7} "
        f"{'SBS CPU ms':>10} {'loop ms':>7} {'store ms':>8} {'DB CPU ms':>9} {'per core/s':>10} "
        f"{'SBS busy':>8} {'per fsync':>9} {'machine ms':>10}"
    )
    for profile in args.profiles.split(","):
        with contextlib.ExitStack() as held:
            tmp = held.enter_context(tempfile.TemporaryDirectory(prefix="keystrap-scale-"))
            cluster = held.enter_context(private_cluster()) if args.store == "postgresql" else None
            for row in asyncio.run(measure(args, profile, Path(tmp), cluster)):
                rows.append(row)
                print(
                    f"{row['profile']:<9} {row['enrolled']:>9} {row['servers']:>4} "
                    f"{row['controllers']:>5} {row['completed']:>4}/{row['bootstraps']:<4} "
                    f"{row['per_second']:>7} {row['server_cpu_ms_per_bootstrap']:>10} "
                    f"{row['loop_cpu_ms_per_bootstrap']:>7} {row['store_cpu_ms_per_bootstrap']:>8} "
                    f"{row['db_cpu_ms_per_bootstrap']:>9} {row['per_core_per_second']:>10} "
                    f"{row['server_cpu_share']:>8} {row.get('bootstraps_per_fsync', '-'):>9} "
                    f"{'/'.join(map(str, row['machine_ms_before_after'])):>10}",
                    flush=True,
                )
            if args.profile_server:
                print(f"\nWhere the SBS spends its time ({profile} profile, cumulative):")
                stats = pstats.Stats(str(Path(tmp) / "server.prof"))
                stats.sort_stats("tottime").print_stats(15)
    summary = rounds_summary(rows)
    if args.repeat > 1:
        print(
            f"\n{'profile':<9} {'SBSs':>4} {'ctrls':>5} {'rounds':>6} {'SBS CPU ms: median':>18} "
            f"{'lowest':>7} {'highest':>7}"
        )
        for group in summary:
            print(
                f"{group['profile']:<9} {group['servers']:>4} {group['controllers']:>5} "
                f"{group['rounds']:>6} {group['server_cpu_ms_median']:>18} "
                f"{group['server_cpu_ms_lowest']:>7} {group['server_cpu_ms_highest']:>7}"
            )
    print(
        json.dumps(
            {"bench": "server_scale", "interpreter": interpreter(), "rows": rows, "rounds": summary}
        )
    )


if __name__ == "__main__":
    main()
