"""Service benchmark: bootstraps per second and latency through real SBS and SBR
processes on loopback, with 10^3, 10^5 and 10^6 nodes enrolled.

For each repository size a fresh site is built, the bulk of the nodes enrolled
with one order (as an administrator would), a measured batch installed, and the
batch bootstrapped through the out-of-band socket with a fixed concurrency.
Node agents run in this process. Prints a table, then one JSON line.

    python bench/services.py [--sizes 1000,100000,1000000] [--batch 300] [--concurrency 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from keystrap.services.node_agent import bootstrap_node
from keystrap_lab.site import Site


async def measure(size: int, batch: int, concurrency: int, channel: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="keystrap-bench-") as tmp:
        site = Site(Path(tmp), channels=(channel, channel))
        await site.prepare()
        site.register_controller()
        t0 = time.monotonic()
        if size > batch:
            site.order(size - batch, installer="bulk", name="bulk")
        nodes = site.enrol(batch)
        enrol_s = time.monotonic() - t0
        await site.start()
        gate = asyncio.Semaphore(concurrency)
        latencies: list[float] = []

        async def one(path: Path) -> bool:
            async with gate:
                result = await bootstrap_node(path, timeout=60, linger=10)
                latencies.append(result.seconds)
                return result.outcome == "confirmed"

        assert site.server is not None and site.controller is not None
        pids = {"server": site.server.process.pid, "controller": site.controller.process.pid}
        try:
            cpu0 = {role: cpu_seconds(pid) for role, pid in pids.items()}
            own0 = time.process_time()
            start = time.monotonic()
            outcomes = await asyncio.gather(*(one(p) for p in nodes))
            elapsed = time.monotonic() - start
            cpu = {role: cpu_seconds(pid) - cpu0[role] for role, pid in pids.items()}
            cpu["node agents"] = time.process_time() - own0
        finally:
            site.stop()
        latencies.sort()
        return {
            "enrolled": size,
            "enrol_seconds": round(enrol_s, 1),
            "bootstraps": batch,
            "completed": sum(outcomes),
            "per_second": round(batch / elapsed, 1),
            "p50_ms": round(statistics.median(latencies) * 1000, 1),
            "p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000, 1),
            "cpu_ms_per_bootstrap": {k: round(v / batch * 1000, 2) for k, v in cpu.items()},
        }


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU of a process (or of one of its threads) so far, from /proc
    (Linux)."""
    where = f"/proc/{pid}" if thread is None else f"/proc/{pid}/task/{thread}"
    fields = Path(f"{where}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def positive(text: str) -> int:
    """An argparse type: a whole number above 0, or a one-line usage error."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number above 0")
    return int(text)


def interpreter() -> str:
    """The Python this script runs and starts the servers with: the same code
    takes about 11 % less CPU on Debian's build than on pyenv's default one
    (docs/performance.md §3), so a figure names the build it was measured on."""
    return f"{platform.python_version()} {os.path.realpath(sys.executable)}"


def machine_ms() -> float:
    """CPU milliseconds one fixed piece of pure-Python work takes on this machine
    now. On a shared VM the same work takes twice as long in one minute as in the
    next (docs/performance.md §3); printed beside a figure, it tells the machine's
    hour from the code's."""
    begun = time.thread_time()
    total = 0
    for i in range(1_000_000):
        total += i * i % 7
    return (time.thread_time() - begun) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--batch", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument(
        "--channel",
        default="raw",
        help="out-of-band medium (default raw: measure the services alone)",
    )
    args = parser.parse_args()
    rows = []
    print(
        f"{'enrolled':>10} {'enrol s':>8} {'done':>9} {'boot/s':>8} {'p50 ms':>8} "
        f"{'p99 ms':>8}   CPU ms per bootstrap: server / controller / node agents"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        row = asyncio.run(measure(size, args.batch, args.concurrency, args.channel))
        rows.append(row)
        print(
            f"{row['enrolled']:>10} {row['enrol_seconds']:>8} "
            f"{row['completed']:>4}/{row['bootstraps']:<4} {row['per_second']:>8} "
            f"{row['p50_ms']:>8} {row['p99_ms']:>8}   "
            + " / ".join(str(v) for v in row["cpu_ms_per_bootstrap"].values()),
            flush=True,
        )
    print(
        json.dumps(
            {
                "bench": "services",
                "concurrency": args.concurrency,
                "channel": args.channel,
                "rows": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
