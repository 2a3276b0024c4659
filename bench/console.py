"""The console over a large store: how long the server takes to answer its pages
with 10^6 enrolled nodes (target: under 200 ms each).

The store is made the way an operator would (``keystrap admin order create``,
two orders), then some history is added: revoked nodes and bootstrap log rows.
Each page is requested through the console's ASGI app in this process (no
network, no browser), so the time is the server's: query plus rendering.

    python bench/console.py [--enrolled 1000000] [--repeat 20]

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from keystrap.console.app import ConsoleStore, build_app
from keystrap.console.users import Users
from keystrap.ids import eui64, parse_eui64
from keystrap.protocol import (
    BootstrapGranted,
    BootstrapRefused,
    NodeActivated,
    TransactionRecord,
    TransactionStatus,
)
from keystrap.store.activity import ActivityLog
from keystrap.store.keyfile import read_key_file
from keystrap.store.sqlite_repository import SqliteRepository
from keystrap_lab.site import Site

PASSWORD = "benchmark password"
TARGET_MS = 200.0
PENDING = TransactionStatus.PENDING


def make_store(root: Path, enrolled: int) -> tuple[Site, float]:
    site = Site(root)
    asyncio.run(site.prepare())
    site.register_controller()
    t0 = time.monotonic()
    site.order(enrolled - enrolled // 10, "bulk", name="bulk")
    site.order(enrolled // 10, "field", name="field")
    enrol_s = time.monotonic() - t0
    site.order(20, "spares", name="spares")  # a small installer among 10^6 nodes
    with site.repository() as repository:
        ids = random.sample([n.node_id for n in repository.list_nodes()], 2000)
        for node_id in ids[:200]:
            repository.revoke(node_id)
        cid = parse_eui64(site.controller_id)
        for tid, node_id in enumerate(ids[1000:1010], 1):  # bootstrapping right now
            repository.add_transaction(
                TransactionRecord(
                    cid, tid, node_id, bytes(40), None, bytes(16), None, PENDING, int(time.time())
                )
            )
    log = ActivityLog(site.database)
    now = time.time()
    for n, node_id in enumerate(ids):
        at = now - 1800 + n
        log.record(BootstrapGranted(node_id, cid, n + 1), at)
        if n % 10:
            log.record(NodeActivated(node_id, cid, n + 1), at + 0.5)
        else:
            log.record(BootstrapRefused(node_id, cid, n + 1, 6, "node proof (flight 5) failed"), at)
    log.close()
    return site, enrol_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enrolled", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument(
        "--workdir", type=Path, help="keep the store here, and reuse it if it is there"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.workdir or Path(tmp)
        if (root / "data" / "sbs.sqlite").exists():
            site, enrol_s = Site(root), 0.0
        else:
            site, enrol_s = make_store(root, args.enrolled)
        repository = SqliteRepository(site.database, read_key_file(site.master_key))
        users = Users(site.database)
        if "bench" not in users.names():
            users.add("bench", PASSWORD)
        t0 = time.monotonic()
        store = ConsoleStore(repository, users, window=120, secure_cookie=False)
        index_s = time.monotonic() - t0
        t0 = time.monotonic()
        late = args.enrolled // 10
        site.order(late, "late", name="late")  # an order placed once the indexes exist
        late_s = time.monotonic() - t0
        client = TestClient(build_app(store))
        client.post("/login", data={"user": "bench", "password": PASSWORD})
        middle = eui64(bytes.fromhex("02") + bytes.fromhex("80") + bytes(6))
        some = store.repository.list_controllers()[0].controller_id
        pages = {
            "dashboard": "/",
            "nodes, first page": "/nodes",
            "nodes, a later page": f"/nodes?after={middle.replace(':', '')}",
            "search, one EUI-64": "/nodes?q=" + middle,
            "search, a prefix": "/nodes?q=02:80:00",
            "filter: revoked": "/nodes?state=revoked",
            "filter: bootstrapping": "/nodes?state=bootstrapping",
            "filter: installer": "/nodes?installer=field",
            "filter: small installer": "/nodes?installer=spares",
            "filter: controller": f"/nodes?controller={eui64(some)}",
            "controller + revoked": f"/nodes?controller={eui64(some)}&state=revoked",
            "filter: order 2": "/nodes?order=2",
        }
        rows: list[dict[str, Any]] = []
        for name, path in pages.items():
            times = []
            for _ in range(args.repeat):
                begun = time.perf_counter()
                answer = client.get(path)
                times.append((time.perf_counter() - begun) * 1000)
                assert answer.status_code == 200, (path, answer.status_code)
            rows.append(
                {
                    "page": name,
                    "median_ms": round(statistics.median(times), 1),
                    "max_ms": round(max(times), 1),
                }
            )
        store.close()
    first_rate = args.enrolled / max(enrol_s, 1e-9)
    print(
        f"{args.enrolled} nodes enrolled in {enrol_s:.0f} s ({first_rate:.0f}/s); console "
        f"indexes built in {index_s:.1f} s; then {late} more in {late_s:.0f} s "
        f"({late / late_s:.0f}/s, with the console's indexes and counters)"
    )
    print(f"{'page':<24} {'median ms':>10} {'max ms':>8}  under {TARGET_MS:.0f} ms")
    for row in rows:
        ok = "yes" if row["max_ms"] < TARGET_MS else "NO"
        print(f"{row['page']:<24} {row['median_ms']:>10} {row['max_ms']:>8}  {ok}")
    print(
        json.dumps(
            {
                "bench": "console",
                "enrolled": args.enrolled,
                "enrol_seconds": round(enrol_s, 1),
                "index_seconds": round(index_s, 1),
                "late_order": late,
                "late_order_seconds": round(late_s, 1),
                "pages": rows,
                "all_under_target": all(r["max_ms"] < TARGET_MS for r in rows),
            }
        )
    )


if __name__ == "__main__":
    main()
