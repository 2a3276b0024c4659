"""``keystrap node``: the SBI agent, bootstrapping a node from its state file."""

from __future__ import annotations

import argparse
from pathlib import Path

from keystrap.extras import require_medium
from keystrap.hostport import parse_host_port
from keystrap.ids import eui64
from keystrap.oob.capture import capture_directory
from keystrap.oob.medium import MEDIA
from keystrap.shown import escaped

DAY_SECONDS = 86_400


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    node = sub.add_parser("node", help="bootstrap a node from its state file (SBI agent)")
    node.add_argument("state", type=Path, help="the node's state file (from keystrap install)")
    node.add_argument(
        "--reinstall",
        action="store_true",
        help="bootstrap again, the current PSK serving as the initial key",
    )
    node.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="give up after this many seconds without a valid flight 4 (default 60)",
    )
    node.add_argument(
        "--linger",
        type=float,
        default=10.0,
        help="seconds to stay reachable after flight 5 (default 10)",
    )
    node.add_argument(
        "--channel-up",
        choices=MEDIA,
        help="medium of flights 1 and 5 (default: from the node file)",
    )
    node.add_argument(
        "--channel-down", choices=MEDIA, help="medium of flight 4 (default: from the node file)"
    )
    node.add_argument(
        "--capture-dir", type=Path, help="also write every out-of-band signal (PNG, WAV...) here"
    )
    node.add_argument(
        "--runtime",
        choices=("python", "micropython"),
        default="python",
        help="where the node core runs: python, in this process (the default), or "
        "micropython, inside MicroPython 1.27 (WebAssembly, under Node.js; this process "
        "only carries its bytes)",
    )
    node.add_argument(
        "--serve",
        metavar="[HOST:]PORT",
        help="after bootstrapping (resuming one the file left unfinished; at once, if already "
        "confirmed), serve the node's settings over CoAPS with its PSK until stopped",
    )
    node.add_argument(
        "--factory-reset",
        action="store_true",
        help="erase every key and setting; the node then needs enrolment again",
    )


def run(args: argparse.Namespace) -> int:
    import asyncio

    from keystrap.services.logs import setup_logging
    from keystrap.services.node_agent import lock_node_file, run_node_cli
    from keystrap.store.node_file import factory_reset, load_node_file

    for option, value in (("--timeout", args.timeout), ("--linger", args.linger)):
        if not 0 <= value <= DAY_SECONDS:
            raise ValueError(f"{option} must be from 0 to {DAY_SECONDS} seconds, got {value}")
    if args.factory_reset:
        lock = lock_node_file(args.state)  # not while an agent runs on it: it would undo this
        try:
            node_id, already = factory_reset(args.state)
        finally:
            lock.release()
        node = escaped(str(args.state)) if node_id is None else f"node {eui64(node_id)}"
        if already:
            print(f"{node}: already factory-reset, file left as it was: needs enrolment")
        else:
            print(f"{node}: factory reset, all credentials erased: needs enrolment")
        return 0
    stored = load_node_file(args.state)
    channels = (args.channel_up or stored.channel_up, args.channel_down or stored.channel_down)
    if args.serve is None or args.reinstall or not stored.confirmed:
        for medium in channels:
            require_medium(medium)
    setup_logging("info", "sbi")
    return asyncio.run(
        run_node_cli(
            args.state,
            args.reinstall,
            args.timeout,
            args.linger,
            channels if args.channel_up or args.channel_down else None,
            None if args.capture_dir is None else capture_directory(args.capture_dir),
            None if args.serve is None else parse_host_port(args.serve),
            args.runtime,
        )
    )
