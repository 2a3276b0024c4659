"""SBS scale: bootstraps per second per core with 10^6 nodes enrolled, as the
number of concurrent controllers grows, for both server profiles.

The real ``keystrap server`` process serves (store work on its own thread, one
commit per batch of queued requests: "per fsync" is the bootstraps each commit
served, over the whole run); each controller is a load
generator process that runs the sans-I/O controller and node cores and posts
flights 2 and 6 over CoAP (no out-of-band media, no controller state file), so
the server is the part under load. The server's CPU seconds per bootstrap come
from /proc; "per core" is 1 / that. ``--profile-server`` also runs the server
under cProfile at the largest load and prints where its time goes.

    python bench/server_scale.py [--enrolled 1000000] [--controllers 1,2,4] [--per 300]

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import pstats
import re
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services import cpu_seconds

from keystrap.coap.client import SbsClient
from keystrap.ids import eui64, parse_eui64
from keystrap.protocol import (
    Controller,
    ControllerState,
    Node,
    NodeState,
    Status,
    ToNode,
    ToServer,
)
from keystrap.services.processes import Service, start_service, wait_for_server
from keystrap.services.site import Site
from keystrap.store.keyfile import read_key_file


@dataclass(frozen=True)
class Job:
    """What one load-generating controller process does (picklable, for spawn)."""

    uri: str
    controller: str
    key_file: str
    ik: bytes
    node_ids: list[str]
    concurrency: int
    first_tid: int


def generator(job: Job, out: Any) -> None:
    """One controller: bootstrap ``job.node_ids`` against the server."""
    out.put(asyncio.run(_generate(job)))


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


def run_load(
    site: Site,
    controllers: list[tuple[str, Path]],
    ik: bytes,
    ids: list[str],
    conc: int,
    first_tid: int,
) -> tuple[int, float]:
    queue: Any = multiprocessing.get_context("spawn").Queue()
    per = len(ids) // len(controllers)
    uri = f"coap://127.0.0.1:{site.server_port}"
    procs = [
        multiprocessing.get_context("spawn").Process(
            target=generator,
            args=(
                Job(uri, cid, str(key), ik, ids[i * per : (i + 1) * per], conc, first_tid),
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


async def measure(args: argparse.Namespace, profile: str, root: Path) -> list[dict[str, Any]]:
    levels = [int(c) for c in args.controllers.split(",")]
    site = Site(root, profile=profile)
    await site.prepare()
    controllers: list[tuple[str, Path]] = []
    for n in range(max(levels)):
        cid = eui64(bytes.fromhex("0200000000000c") + bytes([n]))
        key = root / f"c{n}.key"
        site.admin("controller", "add", cid, "--name", f"load{n}", "--key-out", str(key))
        controllers.append((cid, key))
    measured = args.per * sum(levels)
    t0 = time.monotonic()
    site.order(max(0, args.enrolled - measured), "bulk", name="bulk", controller=controllers[0][0])
    site.order(measured, "load", name="load", controller=controllers[0][0])
    enrol_s = time.monotonic() - t0
    bundle = json.loads((root / "load-bundle.json").read_text())
    ik, ids = bytes.fromhex(bundle["shared_key"]), [n["id"] for n in bundle["nodes"]]
    command = ["server", "--config", str(site.server_config)]
    if args.profile_server:
        server = start_profiled(command, root)
    else:
        server = start_service("server", command, root, root / "server.log")
    await wait_for_server("127.0.0.1", site.server_port, server)
    rows = []
    try:
        offset = 0
        for level in levels:
            batch = ids[offset : offset + args.per * level]
            cpu0 = cpu_seconds(server.process.pid)
            done, elapsed = run_load(
                site, controllers[:level], ik, batch, args.concurrency, offset + 1
            )
            cpu = cpu_seconds(server.process.pid) - cpu0
            rows.append(
                {
                    "profile": profile,
                    "enrolled": args.enrolled,
                    "enrol_seconds": round(enrol_s, 1),
                    "controllers": level,
                    "bootstraps": len(batch),
                    "completed": done,
                    "per_second": round(done / elapsed, 1),
                    "server_cpu_ms_per_bootstrap": round(cpu / max(done, 1) * 1000, 3),
                    "per_core_per_second": round(max(done, 1) / cpu, 1) if cpu else None,
                    "server_cpu_share": round(cpu / elapsed, 2),
                }
            )
            offset += len(batch)
    finally:
        server.stop()
    served = re.search(r"(\d+) request\(s\) in (\d+) commit\(s\)", server.log_text())
    if served is not None:
        requests, commits = int(served[1]), int(served[2])
        for row in rows:  # two requests (flights 2 and 6) per bootstrap
            row["bootstraps_per_fsync"] = round(requests / 2 / max(commits, 1), 1)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enrolled", type=int, default=1_000_000)
    parser.add_argument("--controllers", default="1,2,4")
    parser.add_argument("--per", type=int, default=300, help="bootstraps per controller")
    parser.add_argument("--concurrency", type=int, default=8, help="per controller")
    parser.add_argument("--profiles", default="paper,hardened")
    parser.add_argument("--profile-server", action="store_true")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    print(
        f"{'profile':<9} {'enrolled':>9} {'ctrls':>5} {'done':>9} {'boot/s':>7} "
        f"{'SBS CPU ms':>10} {'per core/s':>10} {'SBS busy':>8} {'per fsync':>9}"
    )
    for profile in args.profiles.split(","):
        with tempfile.TemporaryDirectory(prefix="keystrap-scale-") as tmp:
            for row in asyncio.run(measure(args, profile, Path(tmp))):
                rows.append(row)
                print(
                    f"{row['profile']:<9} {row['enrolled']:>9} {row['controllers']:>5} "
                    f"{row['completed']:>4}/{row['bootstraps']:<4} {row['per_second']:>7} "
                    f"{row['server_cpu_ms_per_bootstrap']:>10} {row['per_core_per_second']:>10} "
                    f"{row['server_cpu_share']:>8} {row.get('bootstraps_per_fsync', '-'):>9}",
                    flush=True,
                )
            if args.profile_server:
                print(f"\nWhere the SBS spends its time ({profile} profile, cumulative):")
                stats = pstats.Stats(str(Path(tmp) / "server.prof"))
                stats.sort_stats("tottime").print_stats(15)
    print(json.dumps({"bench": "server_scale", "rows": rows}))


if __name__ == "__main__":
    main()
