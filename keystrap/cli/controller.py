"""``keystrap controller``: the controller (SBR), and its actions on bootstrapped nodes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from keystrap.cli.flags import add_config_flags, config_from_args, print_config
from keystrap.config import (
    NID_IS_REGISTERED,
    ControllerConfig,
    ServerConfig,
    in_process_server,
    render_config,
    unused_in_process,
)
from keystrap.extras import require_medium
from keystrap.hostport import format_host_port, parse_host_port
from keystrap.shown import escaped, shown_id

SEPARATE_SERVER_ONLY = ("server", "coap_endpoints")
"""The options that say how to reach a separate server. Typed with --with-server
they would be ignored, the server being this process, so they are refused; a
configuration file may still hold them, for the day the site runs two processes."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ctl = sub.add_parser(
        "controller",
        help="run the controller (SBR)",
        description="Take flights 1 and 5 out of band, talk to the server "
        "over CoAP, hand flight 4 back to the node.",
    )
    add_config_flags(ctl, ControllerConfig)
    for retired in ("--host", "--port"):  # not in --help; refused with the reason
        ctl.add_argument(retired, action=_Refused, help=argparse.SUPPRESS)
    ctl.add_argument(
        "--with-server",
        action="store_true",
        help="the paper's small network: also be the server, in this process over its "
        "store; flights 2, 3, 6 and 7 never leave the process",
    )
    ctl.add_argument(
        "--server-config",
        type=Path,
        metavar="FILE",
        help="with --with-server: the server's TOML file (default: the server's defaults)",
    )
    _add_actions(ctl)


class _Refused(argparse.Action):
    """An option the controller once listed but never used (see
    :data:`~keystrap.config.NID_IS_REGISTERED`): typed, it is one error line
    saying where the nodes' address is set, rather than argparse's
    "unrecognized arguments"."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        parser.error(f"{option_string}: {NID_IS_REGISTERED}")


def _add_actions(ctl: argparse.ArgumentParser) -> None:
    """``keystrap controller`` alone runs the service; these act on bootstrapped nodes."""
    actions = ctl.add_subparsers(dest="action", metavar="ACTION")
    configure = actions.add_parser(
        "configure",
        help="push settings to a node over CoAPS with its PSK; print what it applied",
        description="Without any setting, reads the node's settings back.",
    )
    show = actions.add_parser("show", help="read a node's settings over CoAPS")
    for action in (configure, show):
        action.add_argument("node", help="the node's EUI-64")
        action.add_argument(
            "--address",
            metavar="HOST:PORT",
            help="the node's CoAPS endpoint (remembered once the node answered on it)",
        )
        action.add_argument(
            "--config", type=Path, default=argparse.SUPPRESS, help="controller TOML file"
        )
    configure.add_argument("--domain", help="network: DNS domain name")
    configure.add_argument("--gateway", help="network: default gateway (IPv4 or IPv6 address)")
    configure.add_argument("--proxy", help="network: proxy URI, e.g. coap://proxy.example:5683")
    configure.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="application setting (repeatable): name, location, sample_interval, "
        "report_interval, units, log_level",
    )
    configure.add_argument(
        "--unset", action="append", default=[], metavar="KEY", help="remove a setting"
    )
    nodes = actions.add_parser("nodes", help="list the nodes this controller bootstrapped")
    nodes.add_argument(
        "--config", type=Path, default=argparse.SUPPRESS, help="controller TOML file"
    )


def run(args: argparse.Namespace) -> int:
    if args.server_config is not None and not args.with_server:
        raise ValueError("--server-config needs --with-server")
    for option in SEPARATE_SERVER_ONLY:
        if args.with_server and getattr(args, option) is not None:
            flag = "--" + option.replace("_", "-")
            raise ValueError(f"--with-server: the server is this process; it takes no {flag}")
    config = config_from_args(ControllerConfig, args)
    if args.print_config and args.with_server:
        return _print_small_network(config, in_process_server(args.server_config))
    if args.print_config:
        return print_config(config)
    if args.action is not None:
        if args.with_server:
            raise ValueError(f"--with-server runs the service; it takes no {args.action}")
        return _action(args, config)
    require_medium(config.channel_from_node)
    require_medium(config.channel_to_node)
    import asyncio

    from keystrap.services.logs import setup_logging

    setup_logging(config.log_level, "sbr")
    if args.with_server:
        from keystrap.services.small_network import run_small_network

        server = in_process_server(args.server_config)
        asyncio.run(run_small_network(config, server))
        return 0
    from keystrap.services.controller import ControllerService

    asyncio.run(ControllerService(config).run())
    return 0


def _print_small_network(controller: ControllerConfig, server: ServerConfig) -> int:
    """Both roles' effective configuration, checked as a start checks it: one TOML
    document whose [controller] table is the --config file's and whose [server]
    table is the --server-config file's, without the options refused there."""
    print(render_config(controller), end="")
    print("\n# the server, in this process: the --server-config file's table")
    print(render_config(server, omit=unused_in_process(server)), end="")
    return 0


def _action(args: argparse.Namespace, config: ControllerConfig) -> int:
    import asyncio

    from keystrap.ids import parse_eui64
    from keystrap.services.configure import (
        ConfigUpdate,
        configure_node,
        list_nodes,
        parse_assignment,
    )

    if args.action == "nodes":
        rows = list_nodes(config)
        print(f"{'node':<24} {'status':<8} coaps endpoint")
        for node_id, status, address in rows:
            shown = f"{shown_id(node_id):<24} {escaped(status):<8} {escaped(address or '-')}"
            print(shown)
        return 0
    update = ConfigUpdate()
    if args.action == "configure":
        for key in ("domain", "gateway", "proxy"):
            if getattr(args, key) is not None:
                update.set(key, getattr(args, key))
        for text in args.set:
            update.set(*parse_assignment(text))
        for key in args.unset:
            update.set(key, None)
    address = None if args.address is None else format_host_port(*parse_host_port(args.address))
    settings = asyncio.run(configure_node(config, parse_eui64(args.node), update, address))
    applied = json.dumps(settings, indent=2, sort_keys=True)  # the node's settings, no secret
    print(applied)
    return 0
