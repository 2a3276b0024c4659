"""``keystrap admin``: the administrator's commands against the server's repository."""

from __future__ import annotations

import argparse
import secrets
from collections.abc import Callable
from pathlib import Path

from keystrap.cli.console import add_user_parser, user_command
from keystrap.config import ServerConfig, load_config
from keystrap.enrolment import (
    KEY_MODES,
    create_order,
    ids_from_count,
    ids_from_csv,
    ids_from_range,
    write_bundle,
)
from keystrap.ids import eui64, parse_eui64
from keystrap.store.keyfile import load_or_create_key_file, write_key_file
from keystrap.store.sqlite_repository import ControllerInfo, SqliteRepository


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    admin = sub.add_parser(
        "admin",
        help="enrol nodes, register controllers, inspect and revoke (server side)",
        description="Administrator commands. They act on the server's SQLite repository, "
        "located by --config (the server's TOML file) or --database/--master-key.",
    )
    admin.add_argument("--config", type=Path, help="the server's TOML configuration")
    admin.add_argument("--database", type=Path, help="SQLite repository (overrides --config)")
    admin.add_argument("--master-key", type=Path, help="master key file (overrides --config)")
    what = admin.add_subparsers(dest="admin_command", required=True, metavar="WHAT")

    controller = what.add_parser("controller", help="register, list or remove controllers")
    cwhat = controller.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = cwhat.add_parser("add", help="register a controller and write its SK_cs key file")
    add.add_argument("id", help="the controller's EUI-64, e.g. 02:00:00:00:00:00:00:c0")
    add.add_argument("--host", default="127.0.0.1", help="its address (the nodes' NID)")
    add.add_argument("--port", type=int, default=5684, help="its port (the nodes' NID)")
    add.add_argument("--name", default="", help="a label for listings")
    add.add_argument(
        "--key-out",
        type=Path,
        required=True,
        help="where to write SK_cs (0600) for the controller to read",
    )
    cwhat.add_parser("list", help="list registered controllers")
    rm = cwhat.add_parser("remove", help="remove a controller (it must have no orders)")
    rm.add_argument("id")

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
        "--oob",
        default="unix:keystrap-data/oob.sock",
        help="how the nodes reach the controller out of band",
    )
    create.add_argument(
        "--out",
        type=Path,
        required=True,
        help="where to write the installer's bundle (0600; holds the keys)",
    )
    owhat.add_parser("list", help="list orders")
    orm = owhat.add_parser("remove", help="remove an order and its nodes")
    orm.add_argument("order_id", type=int)

    installer = what.add_parser("installer", help="list or remove installers")
    iwhat = installer.add_subparsers(dest="action", required=True, metavar="ACTION")
    iwhat.add_parser("list", help="list installers")
    irm = iwhat.add_parser("remove", help="remove an installer (it must have no orders)")
    irm.add_argument("name")

    what.add_parser("nodes", help="list nodes and their state")
    revoke = what.add_parser("revoke", help="make the server refuse a node from now on")
    revoke.add_argument("node")
    add_user_parser(what)


def open_repository(args: argparse.Namespace) -> SqliteRepository:
    config = load_config(
        ServerConfig, args.config, {"database": args.database, "master_key": args.master_key}
    )
    master_key, _ = load_or_create_key_file(config.master_key, secrets.token_bytes)
    return SqliteRepository(config.database, master_key)


def run(args: argparse.Namespace) -> int:
    repo = open_repository(args)
    try:
        return _dispatch(repo, args)
    finally:
        repo.close()


def _dispatch(repo: SqliteRepository, args: argparse.Namespace) -> int:
    key = args.admin_command + ("." + args.action if getattr(args, "action", None) else "")
    COMMANDS[key](repo, args)
    return 0


def _controller_add(repo: SqliteRepository, args: argparse.Namespace) -> None:
    controller_id = parse_eui64(args.id)
    sk_cs = secrets.token_bytes(16)
    repo.add_controller(ControllerInfo(controller_id, args.name, args.host, args.port), sk_cs)
    write_key_file(args.key_out, sk_cs)
    print(f"controller {eui64(controller_id)} registered; hand it {args.key_out} (mode 0600)")


def _controller_list(repo: SqliteRepository, args: argparse.Namespace) -> None:
    rows = repo.list_controllers()
    print(f"{'controller':<24} {'NID':<22} name")
    for c in rows:
        print(f"{eui64(c.controller_id):<24} {c.host + ':' + str(c.port):<22} {c.name}")
    print(f"{len(rows)} controller(s)")


def _controller_remove(repo: SqliteRepository, args: argparse.Namespace) -> None:
    repo.remove_controller(parse_eui64(args.id))
    print(f"controller {args.id} removed")


def _order_create(repo: SqliteRepository, args: argparse.Namespace) -> None:
    if args.count is not None:
        node_ids = ids_from_count(args.count)
    elif args.id_range is not None:
        node_ids = ids_from_range(args.id_range)
    else:
        node_ids = ids_from_csv(args.csv)
    order = create_order(
        repo,
        args.installer,
        parse_eui64(args.controller),
        node_ids,
        key_mode=args.key_mode,
        oob=args.oob,
    )
    write_bundle(args.out, order)
    mode = {
        "shared": "one shared IK_N",
        "diversified": "IK_N diversified per node",
        "per-node": "one key per node",
    }[args.key_mode]
    print(
        f"order {order.order_id}: {len(node_ids)} node(s) for installer "
        f"{args.installer!r} ({mode}); bundle written to {args.out}"
    )


def _order_list(repo: SqliteRepository, args: argparse.Namespace) -> None:
    rows = repo.list_orders()
    print(f"{'order':>5}  {'installer':<16} {'controller':<24} {'keys':<9} {'nodes':>7}")
    for o in rows:
        print(
            f"{o.order_id:>5}  {o.installer:<16} {eui64(o.controller_id):<24} "
            f"{o.key_mode:<9} {o.nodes:>7}"
        )
    print(f"{len(rows)} order(s)")


def _order_remove(repo: SqliteRepository, args: argparse.Namespace) -> None:
    removed = repo.remove_order(args.order_id)
    print(f"order {args.order_id} removed with {removed} node(s)")


def _installer_list(repo: SqliteRepository, args: argparse.Namespace) -> None:
    rows = repo.list_installers()
    for name, orders in rows:
        print(f"{name:<24} {orders} order(s)")
    print(f"{len(rows)} installer(s)")


def _installer_remove(repo: SqliteRepository, args: argparse.Namespace) -> None:
    repo.remove_installer(args.name)
    print(f"installer {args.name!r} removed")


def _nodes(repo: SqliteRepository, args: argparse.Namespace) -> None:
    nodes = repo.list_nodes()
    counts: dict[str, int] = {}
    for n in nodes:
        print(f"{eui64(n.node_id)}  order {n.order_id:<5} {n.status}")
        counts[n.status] = counts.get(n.status, 0) + 1
    print(f"{len(nodes)} node(s): " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))


def _revoke(repo: SqliteRepository, args: argparse.Namespace) -> None:
    repo.revoke(parse_eui64(args.node))
    print(f"node {args.node} revoked")


COMMANDS: dict[str, Callable[[SqliteRepository, argparse.Namespace], None]] = {
    "controller.add": _controller_add,
    "controller.list": _controller_list,
    "controller.remove": _controller_remove,
    "order.create": _order_create,
    "order.list": _order_list,
    "order.remove": _order_remove,
    "installer.list": _installer_list,
    "installer.remove": _installer_remove,
    "nodes": _nodes,
    "revoke": _revoke,
    "user.add": user_command,
    "user.list": user_command,
    "user.remove": user_command,
}
