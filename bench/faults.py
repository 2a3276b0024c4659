"""Faults over real processes: completion and time per bootstrap with 0-50 % loss
(plus duplication, reordering and delay) on the CoAP path, and SIGKILL of the
server or the controller right after each in-band flight. Asserts that every node
ends on the same key as the server, with no IK and no candidate left.

    python bench/faults.py [--nodes 20] [--kill-runs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

from keystrap.wire import FlightType
from keystrap_lab.attack.faults import kill_at, lossy_run
from keystrap_lab.attack.netem import Netem


async def main_async(nodes: int, kill_runs: int, losses: list[float]) -> dict[str, object]:
    loss_rows = []
    print(
        f"{'loss':>5} {'nodes':>5} {'done':>5} {'s total':>8} {'s/boot':>7} {'rounds':>6} "
        f"{'healed+ok':>10}  datagrams seen/dropped/duplicated/reordered"
    )
    for loss in losses:
        netem = Netem(
            loss=loss,
            duplicate=0.05,
            reorder=0.05,
            delay=0.005,
            jitter=0.005,
            seed=int(loss * 100) + 1,
        )
        with tempfile.TemporaryDirectory() as tmp:
            run = await lossy_run(Path(tmp), nodes, netem)
        c = netem.counts
        print(
            f"{loss:>5.0%} {nodes:>5} {run.completed:>5} {run.seconds:>8.1f} "
            f"{run.seconds / nodes:>7.2f} {run.rounds:>6} {run.consistent!s:>10}  "
            f"{c.get('seen', 0)}/{c.get('dropped', 0)}/{c.get('duplicated', 0)}/"
            f"{c.get('reordered', 0)}",
            flush=True,
        )
        loss_rows.append(
            {
                "loss": loss,
                "nodes": nodes,
                "completed": run.completed,
                "seconds": round(run.seconds, 2),
                "rounds": run.rounds,
                "consistent": run.consistent,
            }
        )
    kill_rows = []
    print(f"\n{'SIGKILL':<11} {'after flight':>12} {'runs':>5} {'done':>9} {'consistent':>10}")
    for victim in ("server", "controller"):
        for flight in (
            FlightType.F2_REQUEST,
            FlightType.F3_GRANT,
            FlightType.F6_CONFIRM,
            FlightType.F7_CONFIRMED,
        ):
            done = total = consistent = 0
            for _ in range(kill_runs):
                with tempfile.TemporaryDirectory() as tmp:
                    run = await kill_at(Path(tmp), 5, flight, victim)
                done += run.completed
                total += run.nodes
                consistent += run.consistent
            print(
                f"{victim:<11} {int(flight):>12} {kill_runs:>5} {done:>4}/{total:<4} "
                f"{consistent:>6}/{kill_runs}",
                flush=True,
            )
            kill_rows.append(
                {
                    "victim": victim,
                    "after_flight": int(flight),
                    "runs": kill_runs,
                    "completed": done,
                    "nodes": total,
                    "consistent_runs": consistent,
                }
            )
    return {"bench": "faults", "loss": loss_rows, "sigkill": kill_rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--kill-runs", type=int, default=2)
    parser.add_argument("--loss", default="0,0.1,0.2,0.3,0.5", help="loss rates to run")
    args = parser.parse_args()
    losses = [float(x) for x in args.loss.split(",")]
    print(json.dumps(asyncio.run(main_async(args.nodes, args.kill_runs, losses))))


if __name__ == "__main__":
    main()
