"""``keystrap server``: the authentication server (SBS)."""

from __future__ import annotations

import argparse

from keystrap.cli.flags import add_config_flags, config_from_args, print_config
from keystrap.config import ServerConfig


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    server = sub.add_parser(
        "server",
        help="run the authentication server (SBS)",
        description="Serve flights 2 and 6 over CoAP at / (or /bs).",
    )
    add_config_flags(server, ServerConfig)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(ServerConfig, args)
    if args.print_config:
        return print_config(config)
    import asyncio

    from keystrap.services.logs import setup_logging
    from keystrap.services.server import serve

    setup_logging(config.log_level, "sbs")
    asyncio.run(serve(config))
    return 0
