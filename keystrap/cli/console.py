"""``keystrap console`` (the web console) and ``keystrap admin user`` (its accounts)."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from keystrap.cli.flags import add_store_flags, store_config
from keystrap.config import ConfigError
from keystrap.extras import CONSOLE, pip_install
from keystrap.hostport import format_host_port
from keystrap.shown import escaped
from keystrap.store.errors import StoreError

if TYPE_CHECKING:
    import socket

    from keystrap.store.sqlite_repository import SqliteRepository

DEFAULT_PORT = 8080
MAX_PEM = 1024 * 1024  # bytes of --certfile or --keyfile; a long chain is some 10 KiB


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    console = sub.add_parser(
        "console",
        help="serve the operator's web console (127.0.0.1 by default)",
        description="A web console over the server's store: dashboard, nodes, orders, "
        "controllers and a live view. Log in with an account from `keystrap admin user add`.",
    )
    add_store_flags(console, database="SQLite file")
    console.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    console.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (default 8080)")
    console.add_argument("--certfile", type=Path, help="TLS certificate (PEM): serve HTTPS")
    console.add_argument("--keyfile", type=Path, help="TLS private key (PEM) for --certfile")


def add_user_parser(what: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = what.add_parser("user", help="add, list or remove the console's administrators")
    uwhat = user.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = uwhat.add_parser(
        "add",
        help="add an account; the password (10 characters or more) is asked for (or read "
        "from stdin)",
    )
    add.add_argument("name", help="the account's login name: 1-64 letters, digits or _ . @ -")
    uwhat.add_parser("list", help="list accounts")
    rm = uwhat.add_parser("remove", help="remove an account")
    rm.add_argument("name", help="the account's login name (keystrap admin user list)")


def user_command(repo: SqliteRepository, args: argparse.Namespace) -> None:
    from keystrap.console.users import Users

    users = Users(repo.path, read_only=args.action == "list")
    try:
        if args.action == "add":
            users.add(args.name, read_password())
            print(f"user {args.name!r} added")
        elif args.action == "remove":
            users.remove(args.name)
            print(f"user {args.name!r} removed")
        else:
            names = users.names()
            for name in names:
                print(escaped(name))
            print(f"{len(names)} user(s)")
    finally:
        users.close()


def read_password() -> str:
    """Twice from the terminal, or one line from a pipe (for scripts)."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from keystrap.console.app import ConsoleStore, build_app
        from keystrap.console.users import Users
    except ImportError as exc:
        raise StoreError(
            f"the console needs its extra dependencies ({exc.name}): {pip_install(CONSOLE)}"
        ) from None
    from keystrap.cli.admin_actions import open_repository
    from keystrap.store.open import CONSOLE_ON_POSTGRES, sqlite_file
    from keystrap.store.sqlite_repository import SqliteRepository

    if (args.certfile is None) != (args.keyfile is None):
        raise ValueError("give both --certfile and --keyfile, or neither")
    if not 1 <= args.port <= 65535:
        raise ValueError(f"--port must be from 1 to 65535, got {args.port}")
    config = store_config(args)
    database = sqlite_file(
        config,
        "keystrap console",
        f"the admin commands do its work there, e.g. keystrap admin nodes ({CONSOLE_ON_POSTGRES})",
    )
    repository = open_repository(config, create=False)
    if not isinstance(repository, SqliteRepository):  # sqlite_file() refused it already
        raise StoreError("the console works on a SQLite store")
    try:
        check_certificate(args.certfile, args.keyfile)
        listening = listen(args.host, args.port)
    except BaseException:
        repository.close()
        raise
    users = Users(database)
    if not users.names():
        print("no console account yet: add one with `keystrap admin user add NAME`")
    store = ConsoleStore(repository, users, config.window, secure_cookie=args.certfile is not None)
    try:
        server = uvicorn.Server(
            uvicorn.Config(
                build_app(store),
                ssl_certfile=None if args.certfile is None else str(args.certfile),
                ssl_keyfile=None if args.keyfile is None else str(args.keyfile),
                log_level="warning",
                server_header=False,
                timeout_graceful_shutdown=2,  # live views never end on their own
            )
        )
        # --host "" binds every IPv4 address: show the one bound, not "http://:8080/"
        address = format_host_port(args.host or listening.getsockname()[0], args.port)
        where = f"{'https' if args.certfile else 'http'}://{address}/"
        if args.certfile is None:
            warn_if_open(listening)
        print(f"console on {where} (store {config.database})", flush=True)
        server.run(sockets=[listening])
    finally:
        store.close()
    return 0


def check_certificate(certfile: Path | None, keyfile: Path | None) -> None:
    """Loaded once here, so that a wrong file is one error line, not uvicorn's exit.
    Each must be a regular file first: OpenSSL opens a FIFO and waits for a
    writer, so one given as either file hung the console before it listened."""
    import ssl  # not at the top: every command imports this module to build its parser

    from keystrap.store.bounded_read import InputRefused, read_bounded

    if certfile is None or keyfile is None:
        return
    try:
        for path in (certfile, keyfile):
            read_bounded(path, MAX_PEM, "file")
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError, ValueError, InputRefused) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigError(
            f"--certfile {certfile} / --keyfile {keyfile} cannot be used: {reason}"
        ) from None


def warn_if_open(listening: socket.socket) -> None:
    """Plain HTTP beyond loopback carries the operator's password and session
    cookie readable by anyone on the path: say so on stderr. Judged by the
    address actually bound, so that every spelling of "all addresses"
    (``0.0.0.0``, ``::``, and ``""``, which binds 0.0.0.0) is treated alike."""
    import ipaddress

    bound = ipaddress.ip_address(listening.getsockname()[0].partition("%")[0])
    if bound.is_loopback:
        return
    where = "every address" if bound.is_unspecified else "a network address"
    print(
        f"keystrap console: warning: plain HTTP on {where} ({bound}): passwords and session "
        "cookies cross the network unencrypted; give --certfile and --keyfile, "
        "or --host 127.0.0.1",
        file=sys.stderr,
        flush=True,
    )


def listen(host: str, port: int) -> socket.socket:
    """Bound here rather than by uvicorn, so a taken port is one clear error line."""
    import socket

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listening = socket.socket(family, socket.SOCK_STREAM)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((host, port))
        listening.listen(128)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return listening
