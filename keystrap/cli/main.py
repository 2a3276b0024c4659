"""``keystrap``: one command, one subcommand per task."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from keystrap import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keystrap",
        description="Secure bootstrapping for the Internet of small things "
        "(Kang's PSK reconfiguration scheme).",
    )
    parser.add_argument("--version", action="version", version=f"keystrap {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="run the whole scheme and narrate it")
    demo.add_argument(
        "--nodes", type=int, default=3, help="how many nodes to bootstrap (default: 3)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from keystrap.cli.demo import run_demo

        if args.nodes < 1:
            print("keystrap demo: --nodes must be at least 1", file=sys.stderr)
            return 2
        return run_demo(args.nodes)
    return 2  # unreachable: argparse requires a command


if __name__ == "__main__":
    sys.exit(main())
