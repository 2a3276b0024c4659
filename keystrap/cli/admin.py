"""``keystrap admin``: the administrator's commands against the server's repository."""

from __future__ import annotations

import argparse
import secrets
from collections.abc import Callable
from pathlib import Path

from keystrap.cli.console import add_user_parser, user_command
from keystrap.cli.flags import add_store_flags, store_config
from keystrap.config import ServerConfig
from keystrap.enrolment import (
    KEY_MODES,
    PROFILES,
    bundle_bytes,
    create_order,
    ids_from_count,
    ids_from_csv,
    ids_from_range,
)
from keystrap.ids import eui64, parse_eui64
from keystrap.services.instance import InstanceLock
from keystrap.store.atomic import new_output, place_new, refuse_existing
from keystrap.store.errors import StoreError
from keystrap.store.keyfile import (
    key_file_bytes,
    load_master_key,
    load_or_create_key_file,
    read_key_file,
)
from keystrap.store.migrations import LATEST
from keystrap.store.move import move_store
from keystrap.store.open import Repository, local_state, sqlite_file
from keystrap.store.open import open_repository as open_configured
from keystrap.store.postgres_url import redacted
from keystrap.store.records import WrongMasterKey
from keystrap.store.sqlite import connect, copy_database, integrity_problems
from keystrap.store.sqlite_repository import CheckReport, ControllerInfo, SqliteRepository

CREATES_SITE = {"controller.add"}
OWN_STORE = {"restore", "migrate", "migrate-store"}
OUTPUTS = {  # the file each command hands out, never overwritten without --force
    "controller.add": "key_out",
    "controller.rotate-key": "key_out",
    "order.create": "out",
    "backup": "file",
}  # works on a backup file, then writes the configured store
FORCE_HELP = "replace FILE if it exists (keystrap never overwrites a file it did not create)"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    admin = sub.add_parser(
        "admin",
        help="enrol nodes, register controllers, inspect and revoke (server side)",
        description="Administrator commands. They act on the server's SQLite repository, "
        "located by --config (the server's TOML file) or --database/--master-key.",
    )
    add_store_flags(admin)
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
    add.add_argument("--force", action="store_true", help=FORCE_HELP)
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
        "--profile",
        choices=tuple(PROFILES),
        default="paper",
        help="wire profile the nodes speak: paper (version 1, the paper's flights) or "
        "compact (version 2, fewer bytes; the server must accept it)",
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
    orm.add_argument("order_id", type=int)

    installer = what.add_parser("installer", help="list or remove installers")
    iwhat = installer.add_subparsers(dest="action", required=True, metavar="ACTION")
    iwhat.add_parser("list", help="list installers")
    irm = iwhat.add_parser("remove", help="remove an installer (it must have no orders)")
    irm.add_argument("name")

    what.add_parser("nodes", help="list nodes and their state")
    revoke = what.add_parser("revoke", help="make the server refuse a node from now on")
    target = revoke.add_mutually_exclusive_group(required=True)
    target.add_argument("node", nargs="?", help="the node's EUI-64")
    target.add_argument("--order", type=int, help="every node of this order")

    backup = what.add_parser(
        "backup",
        help="copy the server's store to FILE while the server runs (keys stay wrapped)",
        description="A consistent copy (SQLite's online backup API). The master key is "
        "not in it: keep the master key file safe separately.",
    )
    backup.add_argument("file", type=Path)
    backup.add_argument("--force", action="store_true", help=FORCE_HELP)
    restore = what.add_parser(
        "restore",
        help="make FILE (a backup) the server's store; stop the server first",
        description="Refused unless every key in FILE unwraps under the configured master key.",
    )
    restore.add_argument("file", type=Path)
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


def open_repository(config: ServerConfig, create: bool, *, migrate: bool = False) -> Repository:
    """The configured store; only a command that sets up a site may create it
    (a PostgreSQL database is created by its administrator, its tables by us)."""
    if isinstance(config.database, str):
        master_key = (
            load_or_create_key_file(config.master_key, secrets.token_bytes)[0]
            if create
            else read_master_key(config)
        )
        return open_configured(config, master_key, migrate=migrate)
    if not create and not config.database.exists():
        raise StoreError(
            f"no server store at {config.database}: create one with "
            "`keystrap admin controller add`, or give --config/--database"
        )
    master_key, _ = load_master_key(config.database, config.master_key, secrets.token_bytes)
    return open_configured(config, master_key, migrate=migrate)


def read_master_key(config: ServerConfig) -> bytes:
    if not config.master_key.exists():
        raise StoreError(
            f"master key file {config.master_key} does not exist: the keys in "
            f"{config.database} cannot be unwrapped without it; put it back (or give --master-key)"
        )
    return read_key_file(config.master_key)


def run(args: argparse.Namespace) -> int:
    key = args.admin_command + ("." + args.action if getattr(args, "action", None) else "")
    config = store_config(args)
    if key == "restore":
        _restore(config, args)
        return 0
    if key == "migrate":
        _migrate(config)
        return 0
    if key == "migrate-store":
        _migrate_store(config, args.to)
        return 0
    if key == "check":
        _check_integrity(config)
    _validate(key, args)
    repo = open_repository(config, create=key in CREATES_SITE)
    try:
        COMMANDS[key](repo, args)
    finally:
        repo.close()
    return 0


def _validate(key: str, args: argparse.Namespace) -> None:
    """What can be checked before the store is opened (or created): the IDs typed,
    and that no output file would be overwritten."""
    for name in ("id", "controller", "node"):
        if getattr(args, name, None) is not None:
            parse_eui64(getattr(args, name))
    if key in OUTPUTS:
        refuse_existing(getattr(args, OUTPUTS[key]), args.force)


def _controller_add(repo: Repository, args: argparse.Namespace) -> None:
    controller_id = parse_eui64(args.id)
    sk_cs = secrets.token_bytes(16)
    info = ControllerInfo(controller_id, args.name, args.host, args.port)
    with new_output(args.key_out, args.force) as write:
        repo.add_controller(info, sk_cs, publish=lambda: write(key_file_bytes(sk_cs)))
    handed = args.key_out  # the file's name; its bytes are never printed
    print(f"controller {eui64(controller_id)} registered; hand it {handed} (mode 0600)")


def _controller_rotate_key(repo: Repository, args: argparse.Namespace) -> None:
    controller_id = parse_eui64(args.id)
    pending = repo.pending_of_controller(controller_id)
    if pending and not args.force:
        raise StoreError(
            f"controller {eui64(controller_id)} has {pending} unfinished bootstrap(s); their "
            "confirmations are sealed with the old key. Let them finish (admin nodes shows "
            "them as bootstrapping), or give --force if they are abandoned"
        )
    sk_cs = secrets.token_bytes(16)
    with new_output(args.key_out, args.force) as write:
        repo.rotate_controller_key(
            controller_id, sk_cs, publish=lambda: write(key_file_bytes(sk_cs))
        )
    handed = args.key_out
    print(
        f"controller {eui64(controller_id)}: new SK_cs in {handed} (mode 0600); "
        "the old key is refused from now on: restart the controller with the new key file"
    )


def _controller_list(repo: Repository, args: argparse.Namespace) -> None:
    rows = repo.list_controllers()
    print(f"{'controller':<24} {'NID':<22} name")
    for c in rows:
        print(f"{eui64(c.controller_id):<24} {c.host + ':' + str(c.port):<22} {c.name}")
    print(f"{len(rows)} controller(s)")


def _controller_remove(repo: Repository, args: argparse.Namespace) -> None:
    repo.remove_controller(parse_eui64(args.id))
    print(f"controller {args.id} removed")


def _order_create(repo: Repository, args: argparse.Namespace) -> None:
    if args.count is not None:
        node_ids = ids_from_count(args.count)
    elif args.id_range is not None:
        node_ids = ids_from_range(args.id_range)
    else:
        node_ids = ids_from_csv(args.csv)
    with new_output(args.out, args.force) as write:
        order = create_order(
            repo,
            args.installer,
            parse_eui64(args.controller),
            node_ids,
            key_mode=args.key_mode,
            profile=args.profile,
            oob=args.oob,
            re_enrol=args.re_enrol,
            publish=lambda made: write(bundle_bytes(made)),
        )
    mode = {
        "shared": "one shared IK_N",
        "diversified": "IK_N diversified per node",
        "per-node": "one key per node",
    }[args.key_mode]
    print(
        f"order {order.order_id}: {len(node_ids)} node(s) for installer "
        f"{args.installer!r} ({mode}, {args.profile} profile); bundle written to {args.out}"
    )


def _order_list(repo: Repository, args: argparse.Namespace) -> None:
    rows = repo.list_orders()
    names = {version: name for name, version in PROFILES.items()}
    head = f"{'order':>5}  {'installer':<16} {'controller':<24} {'keys':<11} {'profile':<7}"
    print(f"{head} {'nodes':>7}")
    for o in rows:
        mode, profile = o.key_mode, names.get(o.version, o.version)
        print(
            f"{o.order_id:>5}  {o.installer:<16} {eui64(o.controller_id):<24} "
            f"{mode:<11} {profile!s:<7} {o.nodes:>7}"
        )
    print(f"{len(rows)} order(s)")


def _order_remove(repo: Repository, args: argparse.Namespace) -> None:
    removed = repo.remove_order(args.order_id)
    print(f"order {args.order_id} removed with {removed} node(s)")


def _installer_list(repo: Repository, args: argparse.Namespace) -> None:
    rows = repo.list_installers()
    for name, orders in rows:
        print(f"{name:<24} {orders} order(s)")
    print(f"{len(rows)} installer(s)")


def _installer_remove(repo: Repository, args: argparse.Namespace) -> None:
    repo.remove_installer(args.name)
    print(f"installer {args.name!r} removed")


def _nodes(repo: Repository, args: argparse.Namespace) -> None:
    nodes = repo.list_nodes()
    counts: dict[str, int] = {}
    for n in nodes:
        print(f"{eui64(n.node_id)}  order {n.order_id:<5} {n.status}")
        counts[n.status] = counts.get(n.status, 0) + 1
    print(f"{len(nodes)} node(s): {_counts(counts)}")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))


def _revoke(repo: Repository, args: argparse.Namespace) -> None:
    if args.order is not None:
        count = repo.revoke_order(args.order)
        print(f"order {args.order}: {count} node(s) revoked")
        return
    repo.revoke(parse_eui64(args.node))
    print(f"node {args.node} revoked")


def _backup(repo: Repository, args: argparse.Namespace) -> None:
    if not args.file.parent.is_dir():
        raise StoreError(f"cannot write {args.file}: no directory {args.file.parent}")
    tmp = args.file.with_name(f".{args.file.name}.partial")
    try:
        tmp.unlink(missing_ok=True)
        repo.backup(tmp)
        copy = connect(tmp)
        try:
            problems = integrity_problems(copy)
        finally:
            copy.close()
        place_new(tmp, args.file, force=args.force)
    finally:
        tmp.unlink(missing_ok=True)
    if problems:
        raise StoreError(
            f"backup written to {args.file}, but the store fails SQLite's integrity check "
            f"({problems[0]}); run keystrap admin check"
        )
    print(
        f"backup of {repo.path} written to {args.file} (mode 0600, keys wrapped); "
        "keep the master key file safe separately: the backup is useless without it"
    )


def _restore(config: ServerConfig, args: argparse.Namespace) -> None:
    """Verify the backup on a private copy first; only then replace the store,
    holding the server's lock so that no server runs on it meanwhile."""
    database = sqlite_file(config, "keystrap admin restore")
    refuse_existing(database, args.force)
    if not args.file.is_file():
        raise StoreError(f"backup file {args.file} does not exist")
    master_key = read_master_key(config)
    database.parent.mkdir(parents=True, exist_ok=True)
    lock = InstanceLock.acquire(database, "server")
    trial = database.with_name(f".{database.name}.restoring")
    try:
        for stale in trial.parent.glob(trial.name + "*"):
            stale.unlink()
        report = _restore_through(trial, config, args.file, master_key)
    finally:
        for leftover in trial.parent.glob(trial.name + "*"):
            leftover.unlink()
        lock.release()
    print(f"restored {args.file} into {database} ({_counts(report.counts)})")


def _restore_through(
    trial: Path, config: ServerConfig, backup: Path, master_key: bytes
) -> CheckReport:
    source = connect(backup)
    try:
        copy_database(source, trial)
    finally:
        source.close()
    try:
        repo = SqliteRepository(trial, master_key)
    except WrongMasterKey:
        raise StoreError(
            f"backup {backup} refused: its keys do not unwrap under the master key "
            f"{config.master_key}"
        ) from None
    try:
        report = repo.check()
        if report.problems:
            raise StoreError(
                f"backup {backup} refused: {len(report.problems)} problem(s), "
                f"the first: {report.problems[0]}"
            )
        repo.restore_into(sqlite_file(config, "keystrap admin restore"))
    finally:
        repo.close()
    return report


def _user(repo: Repository, args: argparse.Namespace) -> None:
    if not isinstance(repo, SqliteRepository):
        raise StoreError(
            "console accounts live in a SQLite store; the console does not run on PostgreSQL yet"
        )
    user_command(repo, args)


def _migrate(config: ServerConfig) -> None:
    """The servers must be stopped: they refuse a schema they do not know, and a
    step run under a live server could meet its writes."""
    lock = InstanceLock.acquire(local_state(config), "server")
    try:
        repo = open_repository(config, create=False, migrate=True)
        repo.close()
    finally:
        lock.release()
    for step in repo.applied:
        print(f"applied schema step {step.version}: {step.what}")
    print(f"{repo.path}: schema at version {LATEST}" + ("" if repo.applied else " (nothing to do)"))


def _migrate_store(config: ServerConfig, target: str) -> None:
    source = open_repository(config, create=False)
    try:
        counts = move_store(source, target, read_master_key(config))
    finally:
        source.close()
    copied = ", ".join(f"{n} {table}" for table, n in counts.items())
    print(f"copied {source.path} into {redacted(target)}: {copied}; counts checked")
    print(f"point the servers' `database` at {redacted(target)} and start them")


def _check_integrity(config: ServerConfig) -> None:
    """SQLite's own check first, on a bare connection: a damaged store may not
    even open as a repository, and the check says where it is damaged."""
    if isinstance(config.database, str):
        return  # PostgreSQL checks its own pages (docs/deployment.md: amcheck)
    if not config.database.exists():
        open_repository(config, create=False)  # the error that says how to make one
    db = connect(config.database)
    try:
        problems = integrity_problems(db)
    finally:
        db.close()
    for problem in problems:
        print(f"problem: {problem}")
    if problems:
        raise StoreError(
            f"{config.database}: {len(problems)} problem(s) found by SQLite's integrity check"
        )


def _check(repo: Repository, args: argparse.Namespace) -> None:
    report = repo.check()
    print(f"{repo.path}: {_counts(report.counts)}")
    for problem in report.problems:
        print(f"problem: {problem}")
    if report.problems:
        raise StoreError(f"{repo.path}: {len(report.problems)} problem(s) found")
    print("integrity ok; every key unwraps under the master key")


COMMANDS: dict[str, Callable[[Repository, argparse.Namespace], None]] = {
    "controller.add": _controller_add,
    "controller.rotate-key": _controller_rotate_key,
    "controller.list": _controller_list,
    "controller.remove": _controller_remove,
    "order.create": _order_create,
    "order.list": _order_list,
    "order.remove": _order_remove,
    "installer.list": _installer_list,
    "installer.remove": _installer_remove,
    "nodes": _nodes,
    "revoke": _revoke,
    "backup": _backup,
    "check": _check,
    "user.add": _user,
    "user.list": _user,
    "user.remove": _user,
}
