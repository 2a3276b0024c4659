"""``keystrap``: one command, one subcommand per task."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import signal
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import NoReturn

from keystrap import __version__
from keystrap.cli import admin, console, oob
from keystrap.coap.client import ServerUnresolvable
from keystrap.coap.node_client import NodeRefused, NodeUnreachable
from keystrap.coap.server import BindError
from keystrap.config import ConfigError, ControllerConfig, ServerConfig, load_config, render_config
from keystrap.hostport import format_host_port, parse_host_port
from keystrap.ids import eui64
from keystrap.oob import OobError
from keystrap.oob.medium import MEDIA
from keystrap.services.instance import AlreadyRunning
from keystrap.store.errors import StoreError


class UsageError(Exception):
    """A command line argparse refused; its message is argparse's."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is a :class:`UsageError` like any other
    input error -- one line, status 2 -- instead of a usage screen on stderr.
    (Subparsers are made of the same class.)"""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = Parser(
        prog="keystrap",
        description="Secure bootstrapping for the Internet of small things "
        "(Kang's PSK reconfiguration scheme).",
    )
    parser.add_argument("--version", action="version", version=f"keystrap {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="enrol and bootstrap nodes through real processes")
    demo.add_argument("--nodes", type=int, default=20, help="how many nodes (default: 20)")
    demo.add_argument(
        "--in-process",
        action="store_true",
        help="run the three state machines in one process instead, narrated",
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

    server = sub.add_parser(
        "server",
        help="run the authentication server (SBS)",
        description="Serve flights 2 and 6 over CoAP at /bs.",
    )
    server.add_argument("--config", type=Path, help="TOML file with a [server] table")
    server.add_argument("--host", help="address to bind (default 127.0.0.1)")
    server.add_argument("--port", type=int, help="UDP port (default 5683)")
    server.add_argument("--database", help="SQLite file or postgresql:// URL of the key repository")
    server.add_argument("--master-key", type=Path, help="0600 master key file")
    server.add_argument("--window", type=int, help="timestamp window in seconds (default 120)")
    server.add_argument(
        "--profile",
        choices=("paper", "hardened"),
        help="hardened: controllers get PSK_i and a sealed flight 4, never IK",
    )
    server.add_argument("--log-level", help="debug, info, warning, error")
    server.add_argument("--metrics", metavar="[HOST:]PORT", help="serve GET /metrics there")
    server.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective configuration as TOML and exit",
    )

    ctl = sub.add_parser(
        "controller",
        help="run the controller (SBR)",
        description="Take flights 1 and 5 out of band, talk to the server "
        "over CoAP, hand flight 4 back to the node.",
    )
    ctl.add_argument("--config", type=Path, help="TOML file with a [controller] table")
    ctl.add_argument("--id", help="this controller's EUI-64")
    ctl.add_argument("--server", help="CoAP URI of the server (default coap://127.0.0.1:5683)")
    ctl.add_argument("--key-file", type=Path, help="0600 file holding SK_cs")
    ctl.add_argument("--state", type=Path, help="SQLite file for TIDs and transactions")
    ctl.add_argument("--master-key", type=Path, help="0600 master key file")
    ctl.add_argument("--oob", help="out-of-band endpoint, e.g. unix:keystrap-data/oob.sock")
    ctl.add_argument("--channel-from-node", choices=MEDIA, help="medium of flights 1 and 5")
    ctl.add_argument("--channel-to-node", choices=MEDIA, help="medium of flight 4")
    ctl.add_argument("--capture-dir", help="also write every out-of-band signal here")
    ctl.add_argument("--window", type=int, help="seconds to wait for flight 3 (default 120)")
    ctl.add_argument("--log-level", help="debug, info, warning, error")
    ctl.add_argument("--metrics", metavar="[HOST:]PORT", help="serve GET /metrics there")
    ctl.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective configuration as TOML and exit",
    )
    _add_controller_actions(ctl)

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
        help="give up after this many seconds without a valid flight 4",
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
        help="where the node core runs: in this process, or inside MicroPython 1.27 "
        "(WebAssembly, under Node.js; this process only carries its bytes)",
    )
    node.add_argument(
        "--serve",
        metavar="[HOST:]PORT",
        help="after bootstrapping (or at once, if already confirmed), serve the node's "
        "settings over CoAPS with its PSK until stopped",
    )
    node.add_argument(
        "--factory-reset",
        action="store_true",
        help="erase every key and setting; the node then needs enrolment again",
    )

    install = sub.add_parser("install", help="installer: turn a bundle into node files")
    install.add_argument("bundle", type=Path, help="the bundle from keystrap admin order create")
    install.add_argument("--out", type=Path, required=True, help="directory for node files")
    install.add_argument(
        "--channel-up",
        choices=MEDIA,
        default="qr",
        help="the devices' medium towards the controller (default qr)",
    )
    install.add_argument(
        "--channel-down",
        choices=MEDIA,
        default="qr",
        help="the devices' medium from the controller (default qr)",
    )
    install.add_argument(
        "--force",
        action="store_true",
        help="replace existing node files that hold no PSK (one that does is never replaced)",
    )

    admin.add_parser(sub)
    console.add_parser(sub)
    oob.add_parser(sub)
    attack = sub.add_parser(
        "attack",
        help="run the attack scenarios and the paper's baselines",
        description="Replays, bit flips, impersonation, a man in the middle, "
        "the installer holding IK_N and a rogue node, against real "
        "processes; and the 2014 draft and Jennings's QR enrolment.",
    )
    attack.add_argument("--workdir", type=Path, help="keep the sites' files here")
    return parser


def _add_controller_actions(ctl: argparse.ArgumentParser) -> None:
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


TYPED_ERRORS = (
    UsageError,
    ConfigError,
    StoreError,
    OobError,
    ValueError,
    NodeUnreachable,
    NodeRefused,
    AlreadyRunning,
    BindError,
    ServerUnresolvable,
)
EXIT_ERROR = 2
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # what a shell reports for a reader that went away
EXIT_INTERRUPTED = 128 + signal.SIGINT


def main(argv: Sequence[str] | None = None) -> int:
    """Every failure ends here as one line on stderr and status 2, never a traceback.

    The typed errors carry a message written where the problem was found; an
    OSError or SQLite error that escaped them still gets one line naming the
    file or the database, so an unforeseen condition is a message too.
    """
    command = "keystrap"
    try:
        args = build_parser().parse_args(argv)
        command = f"keystrap {args.command}"
        return _run(args)
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except TYPED_ERRORS as exc:
        message = str(exc)
    except OSError as exc:
        message = _os_error(exc)
    except sqlite3.DatabaseError as exc:
        message = f"database error: {exc}"
    print(f"{command}: error: {_one_line(message)}", file=sys.stderr)
    return EXIT_ERROR


def _os_error(exc: OSError) -> str:
    what = exc.strerror or str(exc) or type(exc).__name__
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    return f"{what}: {' -> '.join(names)}" if names else what


def _one_line(text: str) -> str:
    """Control characters (a newline in a file name, say) shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text) or "failed"


def _discard_stdout() -> None:
    """The reader of our output went away: point stdout at /dev/null so the
    interpreter's final flush has nowhere to fail (Python's documented recipe)."""
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _controller_action(args: argparse.Namespace, config: ControllerConfig) -> int:
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
            print(f"{eui64(node_id):<24} {status:<8} {address or '-'}")
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
    print(json.dumps(settings, indent=2, sort_keys=True))
    return 0


def _service_config(args: argparse.Namespace) -> ServerConfig | ControllerConfig:
    """The service's TOML file, overridden by every flag named like one of its options."""
    if args.command == "server":
        overrides = {f.name: getattr(args, f.name, None) for f in fields(ServerConfig)}
        return load_config(ServerConfig, args.config, overrides)
    overrides = {f.name: getattr(args, f.name, None) for f in fields(ControllerConfig)}
    return load_config(ControllerConfig, args.config, overrides)


def _run(args: argparse.Namespace) -> int:
    from keystrap.services.logs import setup_logging

    if args.command == "demo":
        if args.nodes < 1:
            raise ValueError("--nodes must be at least 1")
        if args.in_process:
            from keystrap.cli.demo import run_demo

            return run_demo(args.nodes)
        from keystrap.cli.live_demo import run_live_demo

        return asyncio.run(run_live_demo(args.nodes, args.workdir, args.channel, args.store))
    if args.command in ("server", "controller"):
        config = _service_config(args)
        if args.print_config:
            print(render_config(config), end="")
            return 0
        if isinstance(config, ControllerConfig) and args.action is not None:
            return _controller_action(args, config)
        if isinstance(config, ServerConfig):
            from keystrap.services.server import serve

            setup_logging(config.log_level, "sbs")
            asyncio.run(serve(config))
        else:
            from keystrap.services.controller import ControllerService

            setup_logging(config.log_level, "sbr")
            asyncio.run(ControllerService(config).run())
        return 0
    if args.command == "node":
        from keystrap.services.node_agent import run_node_cli

        if args.factory_reset:
            from keystrap.store.node_file import factory_reset

            node_id = factory_reset(args.state)
            print(f"node {eui64(node_id)}: factory reset, all credentials erased: needs enrolment")
            return 0
        setup_logging("info", "sbi")
        channels = None
        if args.channel_up or args.channel_down:
            from keystrap.store.node_file import load_node_file

            stored = load_node_file(args.state)
            channels = (
                args.channel_up or stored.channel_up,
                args.channel_down or stored.channel_down,
            )
        return asyncio.run(
            run_node_cli(
                args.state,
                args.reinstall,
                args.timeout,
                args.linger,
                channels,
                args.capture_dir,
                None if args.serve is None else parse_host_port(args.serve),
                args.runtime,
            )
        )
    if args.command == "install":
        from keystrap.enrolment import install_bundle

        written = install_bundle(
            args.bundle, args.out, args.channel_up, args.channel_down, force=args.force
        )
        print(f"{len(written)} node file(s) written to {args.out} (mode 0600)")
        return 0
    if args.command == "admin":
        return admin.run(args)
    if args.command == "oob":
        return oob.run(args)
    if args.command == "console":
        return console.run(args)
    if args.command == "attack":
        from keystrap.attack.runner import main as attack_main

        setup_logging("warning", "attack")
        return asyncio.run(attack_main(args.workdir))
    return 2


if __name__ == "__main__":
    sys.exit(main())
