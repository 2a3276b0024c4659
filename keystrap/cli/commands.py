"""The table of ``keystrap`` subcommands: each a module with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
from typing import Protocol

from keystrap.cli import admin, attack, console, controller, demo, install, node, oob, server


class Command(Protocol):
    """A subcommand: it adds its parser to ``keystrap``'s and runs what was parsed."""

    def add_parser(self, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


COMMANDS: dict[str, Command] = {
    "demo": demo,
    "server": server,
    "controller": controller,
    "node": node,
    "install": install,
    "admin": admin,
    "console": console,
    "oob": oob,
    "attack": attack,
}
