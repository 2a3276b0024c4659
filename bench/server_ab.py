"""Two checkouts' SBS side by side: which needs less CPU per bootstrap.

Why: on a shared VM the same code's CPU per bootstrap drifts by a quarter
within minutes (docs/performance.md §3), so runs made one after the other
compare the machine's moods as much as the code. Here two servers, one per
checkout, each over its own store of ``--enrolled`` nodes, are loaded at the
same moment, round after round: whatever the machine does hits both alike, and
the median of the rounds' ratios is the figure. Run against itself (the same
checkout as A and B, ten rounds at 10⁶ nodes), the rounds' ratios lay within
0.86-1.13 and their median was 0.97: a difference under about 5 % cannot be
told, where runs made one after the other scatter by ±25 %.

    git worktree add /tmp/before <commit>
    python bench/server_ab.py /tmp/before .

Each server runs ``keystrap server`` with ``PYTHONPATH`` set to its checkout;
the load generators and this script use the installed package. Each round
starts both servers afresh and bootstraps ``--per`` new nodes per controller
through each, every flight sent at once (``server_scale.py --rate max``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from server_scale import MAX_RATE, add_controllers, enrol, run_load, start_server
from services import cpu_seconds, interpreter, positive

from keystrap_lab.processes import Service
from keystrap_lab.site import Site


class Side:
    """One checkout's site: its controllers, and the nodes enrolled for the rounds."""

    def __init__(self, checkout: Path, root: Path) -> None:
        self.checkout = checkout
        self.site = Site(root, profile="paper")
        self.controllers: list[tuple[str, Path]] = []
        self.ik = b""
        self.ids: list[str] = []

    async def enrol(self, enrolled: int, fresh: int, controllers: int) -> None:
        await self.site.prepare()
        self.controllers = add_controllers(self.site, controllers)
        self.ik, self.ids = enrol(self.site, self.controllers[0][0], enrolled, fresh)

    def load(self, port: int, r: int, per_round: int) -> int:
        """Round ``r``'s bootstraps through the server on ``port``; how many completed."""
        ids = self.ids[r * per_round : (r + 1) * per_round]
        done, _ = run_load([port], self.controllers, self.ik, ids, 8, r * per_round + 1, MAX_RATE)
        return done

    async def start(self) -> tuple[int, Service]:
        os.environ["PYTHONPATH"] = str(self.checkout)
        try:
            return await start_server(argparse.Namespace(profile_server=False), self.site, 0)
        finally:
            del os.environ["PYTHONPATH"]


async def rounds(args: argparse.Namespace, root: Path) -> list[tuple[float, float]]:
    per_round = args.per * args.controllers
    sides = [Side(Path(c).resolve(), root / name) for c, name in ((args.a, "a"), (args.b, "b"))]
    for side in sides:
        await side.enrol(args.enrolled, per_round * args.rounds, args.controllers)
    results = []
    for r in range(args.rounds):
        served: list[tuple[int, Service]] = []
        try:  # a server that started is stopped, whatever failed after it
            for side in sides:
                served.append(await side.start())
            begun = [cpu_seconds(server.process.pid) for _, server in served]
            with ThreadPoolExecutor(2) as both:  # each run_load waits on its own generators
                ports = [port for port, _ in served]
                done = list(both.map(Side.load, sides, ports, [r, r], [per_round, per_round]))
            ms = [
                (cpu_seconds(server.process.pid) - begun[i]) / max(done[i], 1) * 1000
                for i, (_, server) in enumerate(served)
            ]
        finally:
            for _, server in served:
                server.stop()
        if min(done) < per_round:
            raise RuntimeError(
                f"round {r + 1}: only {min(done)} of {per_round} bootstraps completed"
            )
        print(f"{r + 1:>5} {ms[0]:>8.3f} {ms[1]:>8.3f} {ms[1] / ms[0]:>7.2f}", flush=True)
        results.append((ms[0], ms[1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="checkout A (the baseline)")
    parser.add_argument("b", help="checkout B")
    parser.add_argument("--rounds", type=positive, default=10)
    parser.add_argument("--enrolled", type=positive, default=1_000_000)
    parser.add_argument("--controllers", type=positive, default=2)
    parser.add_argument(
        "--per", type=positive, default=3000, help="bootstraps per controller a round"
    )
    args = parser.parse_args()
    for checkout in (args.a, args.b):
        if not (Path(checkout) / "keystrap" / "__init__.py").is_file():
            parser.error(f"{checkout}: not a keystrap checkout (no keystrap/__init__.py)")
    print(f"{'round':>5} {'A ms':>8} {'B ms':>8} {'B / A':>7}   (SBS CPU per bootstrap)")
    with tempfile.TemporaryDirectory(prefix="keystrap-ab-") as tmp:
        try:
            results = asyncio.run(rounds(args, Path(tmp)))
        except RuntimeError as exc:  # a server or an admin command failed: say which, once
            parser.exit(2, f"server_ab.py: error: {str(exc).strip().splitlines()[-1]}\n")
    summary: dict[str, Any] = {
        "bench": "server_ab",
        "interpreter": interpreter(),
        "enrolled": args.enrolled,
        "rounds": len(results),
        "a_ms_median": round(statistics.median(a for a, _ in results), 3),
        "b_ms_median": round(statistics.median(b for _, b in results), 3),
        "b_over_a_median": round(statistics.median(b / a for a, b in results), 3),
        "b_over_a": [round(b / a, 3) for a, b in results],
    }
    print(
        f"median {summary['a_ms_median']:>7} {summary['b_ms_median']:>8} "
        f"{summary['b_over_a_median']:>7}"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
