"""Command-line flags generated from the configuration schema.

:mod:`keystrap.config` is the one description of a service's options: a field
of :class:`~keystrap.config.ServerConfig` or
:class:`~keystrap.config.ControllerConfig` is a TOML key and, named with
dashes, a flag, with the same help text and choices. An option added there is
therefore a flag here without a second list to keep in step.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import TypeVar

from keystrap.config import (
    CHOICES,
    HELP,
    ControllerConfig,
    ServerConfig,
    load_config,
    render_config,
)

C = TypeVar("C", ServerConfig, ControllerConfig)
METAVARS = {"metrics": "[HOST:]PORT", "id": "EUI-64", "server": "coap://HOST[:PORT]"}


def add_config_flags(parser: argparse.ArgumentParser, schema: type[C]) -> None:
    """``--config FILE``, ``--print-config``, and one flag per option of ``schema``.

    A flag defaults to None, so that only the flags the user typed override
    the file (see :func:`config_from_args`).
    """
    section = "server" if schema is ServerConfig else "controller"
    parser.add_argument("--config", type=Path, help=f"TOML file with a [{section}] table")
    defaults = schema()
    for option in fields(schema):
        default = getattr(defaults, option.name)
        # A path-or-URL option (the server's database) stays text until load_config
        # tells the two apart: Path() would fold the URL's "//".
        path_only = isinstance(default, Path) and "str" not in str(option.type)
        kind = Path if path_only else int if isinstance(default, int) else str
        parser.add_argument(
            "--" + option.name.replace("_", "-"),
            type=kind,
            choices=CHOICES.get(option.name),
            metavar=METAVARS.get(option.name),
            help=f"{HELP[option.name]} (default: {default or 'none'})",
        )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective configuration as TOML and exit",
    )


def add_store_flags(
    parser: argparse.ArgumentParser, database: str = "SQLite file or postgresql:// URL"
) -> None:
    """The flags of the commands that open the server's store without running the
    server (admin, console): its TOML file, or the store and master key directly.
    ``database`` says which stores the command takes (the console: SQLite only)."""
    defaults = ServerConfig()
    parser.add_argument("--config", type=Path, help="the server's TOML configuration")
    parser.add_argument(
        "--database",
        help=f"{database} of the store (overrides --config; default {defaults.database})",
    )
    parser.add_argument(
        "--master-key",
        type=Path,
        help=f"master key file (overrides --config; default {defaults.master_key})",
    )


def store_config(args: argparse.Namespace) -> ServerConfig:
    """The server configuration named by :func:`add_store_flags`' flags."""
    overrides = {"database": args.database, "master_key": args.master_key}
    return load_config(ServerConfig, args.config, overrides)


def config_from_args(schema: type[C], args: argparse.Namespace) -> C:
    """The TOML file named by ``--config``, overridden by every flag typed."""
    overrides = {f.name: getattr(args, f.name, None) for f in fields(schema)}
    return load_config(schema, getattr(args, "config", None), overrides)


def print_config(config: ServerConfig | ControllerConfig) -> int:
    print(render_config(config), end="")
    return 0
