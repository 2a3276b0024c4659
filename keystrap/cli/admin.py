"""``keystrap admin``: the administrator's commands against the server's repository.

This module is only their command line; what they do is in
:mod:`keystrap.cli.admin_actions`, imported when one runs: it loads the store,
the protocol and the crypto, which every other command's start (``--help``
included) does without -- building ``keystrap``'s parser imports this module.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from keystrap.cli.arg_types import whole_number
from keystrap.cli.console import add_user_parser
from keystrap.cli.flags import add_store_flags
from keystrap.config import RANGES
from keystrap.order_options import KEY_MODES, PROFILE_NAMES

FORCE_HELP = "replace FILE if it exists (keystrap never overwrites a file it did not create)"

ORDER_ID = whole_number(1, 2**63 - 1, "an order number")
PORT = whole_number(*RANGES["port"], "a port")  # the bounds the TOML file's ports have


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    admin = sub.add_parser(
        "admin",
        help="enrol nodes, register controllers, inspect and revoke (server side)",
        description="Administrator commands. They act on the server's store (SQLite or "
        "PostgreSQL), "
        "located by --config (the server's TOML file) or --database/--master-key.",
    )
    add_store_flags(admin)
    what = admin.add_subparsers(dest="admin_command", required=True, metavar="WHAT")

    controller = what.add_parser("controller", help="register, list or remove controllers")
    cwhat = controller.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = cwhat.add_parser("add", help="register a controller and write its SK_cs key file")
    add.add_argument("id", help="the controller's EUI-64, e.g. 02:00:00:00:00:00:00:c0")
    add.add_argument(
        "--host", default="127.0.0.1", help="its address (the nodes' NID; default 127.0.0.1)"
    )
    add.add_argument(
        "--port", type=PORT, default=5684, help="its port (the nodes' NID; default 5684)"
    )
    add.add_argument("--name", default="", help="a label for listings")
    add.add_argument(
        "--key-out",
        type=Path,
        required=True,
        help="where to write SK_cs (0600) for the controller to read",
    )
    add.add_argument(
        "--force",
        action="store_true",
        help="replace --key-out if it exists (keystrap never overwrites a file it did not create)",
    )
    rotate = cwhat.add_parser(
        "rotate-key",
        help="give a controller a new SK_cs; its orders and nodes stay",
        description="Writes the new SK_cs to --key-out, then the server uses only it: "
        "restart the controller with the new key file. Refused while the controller "
        "has unfinished bootstraps at the server (their flight 6 is sealed with the "
        "old key), unless --force.",
    )
    rotate.add_argument("id", help="the controller's EUI-64")
    rotate.add_argument("--key-out", type=Path, required=True, help="where to write the new SK_cs")
    rotate.add_argument(
        "--force",
        action="store_true",
        help="replace --key-out if it exists, and rotate even with unfinished bootstraps",
    )
    cwhat.add_parser("list", help="list registered controllers")
    rm = cwhat.add_parser("remove", help="remove a controller (it must have no orders)")
    rm.add_argument("id", help="the controller's EUI-64")

    order = what.add_parser("order", help="create, list or remove orders of nodes")
    owhat = order.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = owhat.add_parser("create", help="enrol nodes for one installer, write its bundle")
    create.add_argument("--installer", required=True, help="the installer's name")
    create.add_argument("--controller", required=True, help="EUI-64 of the nodes' controller")
    ids = create.add_mutually_exclusive_group(required=True)
    ids.add_argument("--count", type=int, help="N nodes with random EUI-64s")
    ids.add_argument("--range", dest="id_range", help="FIRST-LAST EUI-64s, inclusive")
    ids.add_argument("--csv", type=Path, help="CSV file whose first column lists EUI-64s")
    create.add_argument(
        "--key-mode",
        choices=KEY_MODES,
        default="shared",
        help="shared: one IK_N for all nodes (paper's default); diversified: "
        "one IK_N, each node imprinted with KDF(IK_N, ID); per-node: "
        "independent random keys",
    )
    create.add_argument(
        "--profile",
        choices=PROFILE_NAMES,
        default="paper",
        help="wire profile the nodes speak: paper (version 1, the paper's flights) or "
        "compact (version 2, fewer bytes; the server must accept it)",
    )
    create.add_argument(
        "--oob",
        default="unix:keystrap-data/oob.sock",
        help="how the nodes reach the controller out of band (default unix:keystrap-data/oob.sock)",
    )
    create.add_argument(
        "--out",
        type=Path,
        required=True,
        help="where to write the installer's bundle (0600; holds the keys)",
    )
    create.add_argument(
        "--re-enrol",
        action="store_true",
        help="enrol again nodes that were revoked (e.g. after a factory reset)",
    )
    create.add_argument("--force", action="store_true", help="replace --out if it exists")
    owhat.add_parser("list", help="list orders")
    orm = owhat.add_parser(
        "remove", help="remove an order and its nodes (none may be bootstrapping or active)"
    )
    orm.add_argument(
        "order_id", type=ORDER_ID, help="the order's number (keystrap admin order list)"
    )

    installer = what.add_parser("installer", help="list or remove installers")
    iwhat = installer.add_subparsers(dest="action", required=True, metavar="ACTION")
    iwhat.add_parser("list", help="list installers")
    irm = iwhat.add_parser("remove", help="remove an installer (it must have no orders)")
    irm.add_argument("name", help="the installer's name (keystrap admin installer list)")

    what.add_parser("nodes", help="list nodes and their state")
    revoke = what.add_parser("revoke", help="make the server refuse a node from now on")
    target = revoke.add_mutually_exclusive_group(required=True)
    target.add_argument("node", nargs="?", help="the node's EUI-64")
    target.add_argument("--order", type=ORDER_ID, help="every node of this order")

    backup = what.add_parser(
        "backup",
        help="copy the server's store to FILE while the server runs (keys stay wrapped)",
        description="A consistent copy (SQLite's online backup API). The master key is "
        "not in it: keep the master key file safe separately.",
    )
    backup.add_argument(
        "file", type=Path, metavar="FILE", help="where to write the copy (a SQLite file)"
    )
    backup.add_argument("--force", action="store_true", help=FORCE_HELP)
    restore = what.add_parser(
        "restore",
        help="make FILE (a backup) the server's store; stop the server first",
        description="Refused unless every key in FILE unwraps under the configured master key.",
    )
    restore.add_argument(
        "file", type=Path, metavar="FILE", help="the backup (a file keystrap admin backup wrote)"
    )
    restore.add_argument("--force", action="store_true", help="replace an existing store")
    what.add_parser(
        "check",
        help="verify the store: SQLite integrity, every key unwraps, nodes per state",
    )
    what.add_parser(
        "migrate",
        help="bring the store's schema up to this keystrap's version (back it up first)",
    )
    move = what.add_parser(
        "migrate-store",
        help="copy the whole store into an empty one (SQLite <-> PostgreSQL)",
        description="Every controller, order, node key and transaction is copied as it "
        "is stored (keys stay wrapped under the same master key): no node needs "
        "enrolling again. The target must be empty; stop the servers first.",
    )
    move.add_argument("--to", required=True, help="postgresql://... URL or a new SQLite file")
    add_user_parser(what)


def run(args: argparse.Namespace) -> int:
    from keystrap.cli import admin_actions

    return admin_actions.run(args)
