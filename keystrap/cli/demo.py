"""``keystrap demo``: the scheme shown through real processes, or in one, narrated.

The demo itself lives in the lab package (:mod:`keystrap_lab.live_demo`,
:mod:`keystrap_lab.demo`): it drives the commands an operator types, and an
operator's installation needs none of it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from keystrap.extras import require_lab, require_medium
from keystrap.oob.medium import MEDIA


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser(
        "demo", help="enrol and bootstrap nodes through real processes (needs keystrap-lab)"
    )
    demo.add_argument("--nodes", type=int, default=20, help="how many nodes (default: 20)")
    demo.add_argument(
        "--in-process",
        action="store_true",
        help="run the three state machines in one process instead, narrated",
    )
    demo.add_argument(
        "--small-network",
        action="store_true",
        help="the paper's small network: the controller includes the server "
        "(keystrap controller --with-server), one process instead of two",
    )
    demo.add_argument(
        "--workdir", type=Path, help="keep all files here instead of a temporary directory"
    )
    demo.add_argument(
        "--channel",
        choices=MEDIA,
        default="qr",
        help="out-of-band medium for flights 1, 4 and 5 (default qr)",
    )
    demo.add_argument(
        "--store",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="the server's store: a SQLite file, or a private PostgreSQL cluster",
    )


def run(args: argparse.Namespace) -> int:
    if args.nodes < 1:
        raise ValueError("--nodes must be at least 1")
    require_lab("demo")
    if args.in_process:
        from keystrap_lab.demo import run_demo

        return run_demo(args.nodes)
    require_medium(args.channel)
    import asyncio

    from keystrap_lab.live_demo import run_live_demo

    return asyncio.run(
        run_live_demo(
            args.nodes,
            args.workdir,
            args.channel,
            small_network=args.small_network,
            store=args.store,
        )
    )
