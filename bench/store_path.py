"""SBS store path: the store thread's CPU and SQL statements per bootstrap.

The SBS's store thread answers queued requests in batches
(:func:`keystrap.services.server.answer_batch`): the protocol core over the
real SQLite repository (10^6 nodes enrolled by default, keys wrapped, WAL with
``synchronous=FULL``), timed into the real metrics, its events written to the
real activity log, all assembled as :func:`keystrap.services.server.server_core`
assembles them. Here that thread's work runs alone, on this thread: the
sans-I/O controller and node cores make valid flights 2 and 6 (not timed), and
batches of 1, 4, 8 and 32 of them go through ``answer_batch``. The CPU is this
thread's (``time.thread_time``), so the wait for the fsync is not in it;
statements are every one SQLite runs, ``BEGIN`` and ``COMMIT`` included. "The
core alone" is the same work over the in-memory repository (no store, no
metrics, no log): what any store would add to, "the rest" is what this one adds.

    python bench/store_path.py [--enrolled 1000000] [--bootstraps 2000] [--batches 1,4,8,32]
        [--keep DIR]

``--keep DIR`` keeps the enrolled site in DIR and reuses it on the next run
(each run enrols a fresh order of nodes to bootstrap next to it).

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from keystrap.ids import eui64, parse_eui64
from keystrap.metrics import Metrics, TimedRepository
from keystrap.protocol import (
    Controller,
    ControllerState,
    InMemoryRepository,
    Node,
    NodeState,
    Reply,
    Server,
    ServerPolicy,
    Status,
    ToNode,
    ToServer,
)
from keystrap.services.server import LiveControllers, answer_batch
from keystrap.store.activity import ActivityLog
from keystrap.store.keyfile import read_key_file
from keystrap.store.sqlite_repository import SqliteRepository
from keystrap_lab.site import Site

CONTROLLER = eui64(bytes.fromhex("02000000000000c5"))
FLUSH_EVERY = 256
"""Requests between two writes of the activity log (the server writes it twice a
second, which is a few hundred requests at the rates measured here)."""


def enrolled_site(root: Path, enrolled: int, fresh: int) -> tuple[Site, bytes, list[bytes]]:
    """The site in ``root`` with ``enrolled`` nodes (made once), plus a new order of
    ``fresh`` nodes to bootstrap; returns the site, their shared IK and their IDs."""
    site = Site(root)
    if not site.database.exists():
        if any(root.iterdir()):  # a site writes its configuration files here
            raise RuntimeError("holds files but no site this bench made: name an empty or new one")
        asyncio.run(site.prepare())
        site.admin("controller", "add", CONTROLLER, "--name", "bench", "--key-out", key(site))
        t0 = time.monotonic()
        site.order(max(0, enrolled - fresh), "bulk", name="bulk", controller=CONTROLLER)
        print(f"enrolled {enrolled - fresh:,} nodes in {time.monotonic() - t0:.1f} s")
        (root / "bulk-bundle.json").unlink()
    name = f"load-{secrets.token_hex(4)}"
    bundle = site.order(fresh, "load", name=name, controller=CONTROLLER)
    order = json.loads(bundle.read_text())
    bundle.unlink()
    ids = [parse_eui64(n["id"]) for n in order["nodes"]]
    return site, bytes.fromhex(order["shared_key"]), ids


def key(site: Site) -> str:
    return str(site.root / "bench-controller.key")


class StatementCounter:
    """Counts the statements SQLite runs on a connection (only while counting:
    the callback itself costs CPU)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.count = 0

    def _seen(self, _statement: str) -> None:
        self.count += 1

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        self.db.set_trace_callback(self._seen)
        try:
            yield
        finally:
            self.db.set_trace_callback(None)


class Flights:
    """Valid flights 2, then 6, for fresh nodes, made by the controller and node cores."""

    def __init__(self, site: Site, ik: bytes, ids: list[bytes]) -> None:
        self.cid = parse_eui64(CONTROLLER)
        sk_cs = read_key_file(Path(key(site)))
        first_tid = secrets.randbelow(2**30) + 1
        state = ControllerState(self.cid, sk_cs, next_tid=first_tid)
        self.controller = Controller(state, secrets.token_bytes)
        self.ik = ik
        self.ids = iter(ids)
        self.nodes: dict[int, Node] = {}

    def _take(self, kind: type[Any]) -> Any:
        for item in self.controller.data_to_send():
            if isinstance(item, kind):
                return item
        raise RuntimeError("the controller produced nothing")

    def requests(self, count: int) -> list[ToServer]:
        out = []
        for _ in range(count):
            node = Node(NodeState(next(self.ids), self.cid, self.ik), secrets.token_bytes)
            node.start(time.time())
            self.controller.receive_from_node(node.data_to_send()[0], time.time())
            flight2: ToServer = self._take(ToServer)
            self.nodes[flight2.tid] = node
            out.append(flight2)
        return out

    def confirms(self, sent: list[ToServer], replies: list[Reply]) -> list[ToServer]:
        out = []
        for flight2, reply in zip(sent, replies, strict=True):
            self.controller.receive_from_server(flight2.tid, reply, time.time())
            node = self.nodes.pop(flight2.tid)
            node.receive(self._take(ToNode).data, time.time())
            self.controller.receive_from_node(node.data_to_send()[0], time.time())
            out.append(self._take(ToServer))
        return out

    def confirmed(self, sent: list[ToServer], replies: list[Reply]) -> None:
        for flight6, reply in zip(sent, replies, strict=True):
            self.controller.receive_from_server(flight6.tid, reply, time.time())


def run_batches(
    batch: int,
    bootstraps: int,
    flights: Flights,
    handle: Callable[[list[tuple[bytes, float]]], list[Reply]],
    activity: ActivityLog | None,
    prepare: Callable[[list[ToServer]], None] = lambda sent: None,
) -> tuple[float, int]:
    """Bootstraps ``bootstraps`` nodes, ``batch`` flights at a time; returns the
    CPU seconds ``handle`` (and the activity log's writes) took and how many
    bootstraps were confirmed. ``prepare`` sees each batch's flights 2 first."""
    cpu, ok, since_flush = 0.0, 0, 0
    for _ in range(bootstraps // batch):
        sent = flights.requests(batch)
        prepare(sent)
        start = time.thread_time()
        grants = handle([(f.data, time.time()) for f in sent])
        cpu += time.thread_time() - start
        confirms = flights.confirms(sent, grants)
        start = time.thread_time()
        acks = handle([(f.data, time.time()) for f in confirms])
        cpu += time.thread_time() - start
        flights.confirmed(confirms, acks)
        ok += sum(
            a.status is Status.OK and g.status is Status.OK
            for g, a in zip(grants, acks, strict=True)
        )
        if activity is None:
            continue
        record(activity, [*grants, *acks])
        since_flush += 2 * batch
        if since_flush >= FLUSH_EVERY:
            start = time.thread_time()
            activity.flush()
            cpu += time.thread_time() - start
            since_flush = 0
    return cpu, ok


class CoreAlone:
    """The protocol core over the in-memory repository, for the part of the store
    thread's work that is not the store's (a fresh repository per batch: the
    fake scans every transaction it holds)."""

    def __init__(self, flights: Flights, ik: bytes, sk_cs: bytes) -> None:
        self.flights, self.ik = flights, ik
        self.server = Server(InMemoryRepository(), {flights.cid: sk_cs}, ServerPolicy())

    def prepare(self, sent: list[ToServer]) -> None:
        repository = InMemoryRepository()
        for flight2 in sent:
            repository.enroll(self.flights.nodes[flight2.tid].state.node_id, self.ik)
        self.server.repository = repository

    def handle(self, requests: list[tuple[bytes, float]]) -> list[Reply]:
        return [self.server.handle(data, now) for data, now in requests]


def record(activity: ActivityLog, replies: list[Reply]) -> None:
    """What the event loop does with each reply (not the store thread's work)."""
    for reply in replies:
        if reply.event is not None:
            activity.record(reply.event, time.time())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enrolled", type=int, default=1_000_000)
    parser.add_argument("--bootstraps", type=int, default=2000, help="per batch size")
    parser.add_argument("--batches", default="1,4,8,32")
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the enrolled site here")
    args = parser.parse_args()
    sizes = [int(b) for b in args.batches.split(",")]
    fresh = (args.bootstraps + max(sizes)) * len(sizes) + 64
    with contextlib.ExitStack() as held:
        if args.keep is None:
            root = Path(held.enter_context(tempfile.TemporaryDirectory(prefix="keystrap-store-")))
        else:
            root = args.keep
            root.mkdir(parents=True, exist_ok=True)
        try:
            site, ik, ids = enrolled_site(root, args.enrolled, fresh)
        except RuntimeError as exc:
            parser.exit(2, f"{root}: {str(exc).strip().splitlines()[-1]}\n")
        repository = SqliteRepository(site.database, read_key_file(site.master_key))
        held.callback(repository.close)
        enrolled = repository.count_rows("nodes")
        activity = ActivityLog(site.database)
        held.callback(activity.close)
        core = Server(
            TimedRepository(repository, Metrics("server")),
            LiveControllers(repository),
            ServerPolicy(),
        )
        counter = StatementCounter(repository._db)
        flights = Flights(site, ik, ids)
        unenrolled = [(2**62 + n).to_bytes(8, "big") for n in range(fresh)]
        alone = CoreAlone(Flights(site, ik, unenrolled), ik, read_key_file(Path(key(site))))

        def handle(requests: list[tuple[bytes, float]]) -> list[Reply]:
            return answer_batch(core, requests)

        _, ok = run_batches(32, 64, flights, handle, activity)  # warm-up
        if ok != 64:
            raise SystemExit(f"only {ok} of 64 warm-up bootstraps were confirmed")
        rows = []
        print(
            f"{'batch':>5} {'bootstraps':>10} {'CPU per bootstrap':>18} {'the core alone':>15} "
            f"{'the rest':>9} {'statements':>10}   ({enrolled:,} nodes enrolled)"
        )
        for size in sizes:
            counter.count = 0
            with counter.counting():
                run_batches(size, size, flights, handle, activity)
            statements = counter.count / size
            cpu, ok = run_batches(size, args.bootstraps, flights, handle, activity)
            core_cpu, core_ok = run_batches(
                size, args.bootstraps, alone.flights, alone.handle, None, alone.prepare
            )
            if ok != core_ok or ok != args.bootstraps - args.bootstraps % size:
                raise SystemExit(f"batch {size}: only {ok} / {core_ok} bootstraps were confirmed")
            row = {
                "batch": size,
                "bootstraps": ok,
                "cpu_ms_per_bootstrap": round(cpu / ok * 1000, 3),
                "core_alone_ms_per_bootstrap": round(core_cpu / ok * 1000, 3),
                "statements_per_bootstrap": round(statements, 2),
            }
            rows.append(row)
            print(
                f"{size:>5} {ok:>10} {row['cpu_ms_per_bootstrap']:>15} ms "
                f"{row['core_alone_ms_per_bootstrap']:>12} ms "
                f"{(cpu - core_cpu) / ok * 1000:>6.3f} ms {row['statements_per_bootstrap']:>10}"
            )
    print(
        json.dumps(
            {
                "bench": "store_path",
                "enrolled": enrolled,
                "rows": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
