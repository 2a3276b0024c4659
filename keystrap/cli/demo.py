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

LIVE_ONLY = ("--workdir", "--store", "--small-network", "--channel")
"""The flags of the demo through real processes. ``--in-process`` has no files,
store, processes or medium to apply them to, so it refuses them by name rather
than ignore them; --channel and --store therefore default to None (typed or
not), and their defaults are applied in :func:`run`."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser(
        "demo", help="enrol and bootstrap nodes through real processes (needs keystrap-lab)"
    )
    demo.add_argument("--nodes", type=int, default=20, help="how many nodes (default: 20)")
    demo.add_argument(
        "--in-process",
        action="store_true",
        help="run the three state machines in one process instead, narrated "
        "(no files, store or medium: it takes only --nodes)",
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
        help="out-of-band medium for flights 1, 4 and 5 (default qr)",
    )
    demo.add_argument(
        "--store",
        choices=("sqlite", "postgresql"),
        help="the server's store: a SQLite file (default), or a private PostgreSQL cluster",
    )


def run(args: argparse.Namespace) -> int:
    if args.nodes < 1:
        raise ValueError("--nodes must be at least 1")
    if args.in_process:
        for flag in LIVE_ONLY:
            if getattr(args, flag.removeprefix("--").replace("-", "_")) not in (None, False):
                raise ValueError(
                    f"--in-process runs without processes or files: it takes no {flag}"
                )
    require_lab("demo")
    if args.in_process:
        from keystrap_lab.demo import run_demo

        return run_demo(args.nodes)
    channel = args.channel or "qr"
    require_medium(channel)
    import asyncio

    from keystrap_lab.live_demo import run_live_demo

    return asyncio.run(
        run_live_demo(
            args.nodes,
            args.workdir,
            channel,
            small_network=args.small_network,
            store=args.store or "sqlite",
        )
    )
