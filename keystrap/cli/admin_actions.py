"""What each ``keystrap admin`` command does (:mod:`keystrap.cli.admin` parses them)."""

from __future__ import annotations

import argparse
import os
import secrets
import sqlite3
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

from keystrap.cli.console import user_command
from keystrap.cli.flags import store_config
from keystrap.config import ServerConfig
from keystrap.enrolment import (
    PROFILES,
    bundle_bytes,
    create_order,
    ids_from_count,
    ids_from_csv,
    ids_from_range,
)
from keystrap.ids import eui64, parse_eui64
from keystrap.services.instance import InstanceLock
from keystrap.shown import escaped, printable, shown_id
from keystrap.store.atomic import (
    make_private_dirs,
    new_output,
    place_new,
    refuse_existing,
    taken_back_on_failure,
)
from keystrap.store.errors import StoreError
from keystrap.store.keyfile import (
    key_file_bytes,
    load_or_create_key_file,
    open_with_master_key,
    read_key_file,
)
from keystrap.store.migrations import LATEST
from keystrap.store.move import move_store
from keystrap.store.open import (
    BACKUP_ON_POSTGRES,
    CONSOLE_ON_POSTGRES,
    Repository,
    local_state,
    sqlite_file,
)
from keystrap.store.open import open_repository as open_configured
from keystrap.store.postgres_url import redacted
from keystrap.store.records import UnfinishedBootstraps, WrongMasterKey
from keystrap.store.sqlite import (
    SIDECARS,
    connect,
    connect_read_only,
    copy_database,
    integrity_problems,
    refuse_read_only,
    refuse_tableless,
)
from keystrap.store.sqlite_repository import (
    SERVER_STORE,
    CheckReport,
    ControllerInfo,
    SqliteRepository,
    not_a_server_store,
    server_store_read_only,
)

CREATES_SITE = {"controller.add"}
RESTORE_ON_POSTGRES = f"restore a pg_dump with pg_restore ({BACKUP_ON_POSTGRES})"
# The names and hosts a command stores, which the listings print: printable only.
ENTERED = {"controller.add": ("name", "host"), "order.create": ("installer",)}
READS_ONLY = {  # the store opened as it is (read_only), never created, migrated or chmodded
    "controller.list",
    "order.list",
    "installer.list",
    "nodes",
    "check",
    "user.list",
}
OWN_STORE = {"restore", "migrate", "migrate-store"}
OUTPUTS = {  # the file each command hands out, never overwritten without --force
    "controller.add": "key_out",
    "controller.rotate-key": "key_out",
    "order.create": "out",
    "backup": "file",
}  # works on a backup file, then writes the configured store


def open_repository(
    config: ServerConfig, create: bool, *, migrate: bool = False, read_only: bool = False
) -> Repository:
    """The configured store; only a command that sets up a site may create it
    (a PostgreSQL database is created by its administrator, its tables by us),
    and one that only reads it opens it ``read_only``: a file that is not a
    store is refused rather than made one."""
    opener = partial(open_configured, config, migrate=migrate, read_only=read_only)
    if not create and isinstance(config.database, Path) and not config.database.exists():
        raise StoreError(
            f"no server store at {config.database}: create one with "
            "`keystrap admin controller add`, or give --config/--database"
        )
    if not create:
        if isinstance(config.database, Path) and not read_only:
            # A command that writes but sets up no site (``revoke``, ``order create``)
            # must not make a store of it, as the first ``controller add`` does.
            refuse_tableless(config.database, SERVER_STORE)
        return opener(read_master_key(config))
    if isinstance(config.database, str):
        with taken_back_on_failure(config.master_key):
            return opener(load_or_create_key_file(config.master_key, secrets.token_bytes)[0])
    return open_with_master_key(config.database, config.master_key, secrets.token_bytes, opener)[0]


def read_master_key(config: ServerConfig) -> bytes:
    if not config.master_key.exists():
        raise StoreError(
            f"master key file {config.master_key} does not exist: the keys in "
            f"{redacted(str(config.database))} cannot be unwrapped without it; put it back "
            "(or give --master-key)"
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
    if key == "backup":
        _backup(config, args)
        return 0
    repo = open_repository(config, create=key in CREATES_SITE, read_only=key in READS_ONLY)
    try:
        COMMANDS[key](repo, args)
    finally:
        repo.close()
    return 0


def _validate(key: str, args: argparse.Namespace) -> None:
    """What can be checked before the store is opened (or created): the IDs typed,
    the names that are to be stored, and that no output file would be overwritten."""
    for name in ("id", "controller", "node"):
        if getattr(args, name, None) is not None:
            parse_eui64(getattr(args, name))
    for name in ENTERED.get(key, ()):
        printable(f"--{name}", getattr(args, name))
    if key in OUTPUTS:
        # Own files first: "exists, give --force" would point at a refusal.
        _refuse_own_file(getattr(args, OUTPUTS[key]), store_config(args))
        refuse_existing(getattr(args, OUTPUTS[key]), args.force)


def _refuse_own_file(path: Path, config: ServerConfig) -> None:
    """An output may not be a file the command itself works on: ``--force`` onto
    the master key or the store would destroy every key of the site and report
    success. A sidecar counts even while absent: a bundle written as the store's
    ``-wal`` is taken for its log, and deleted, when the store is next opened."""
    own = [("the master key", config.master_key)]
    if isinstance(config.database, Path):
        # SQLite names the sidecars after the real file, the lock too (InstanceLock).
        for store in dict.fromkeys((config.database, config.database.resolve())):
            own += [("the store", Path(f"{store}{end}")) for end in ("", *SIDECARS, ".lock")]
    for what, file in own:
        if _same_file(path, file):
            raise StoreError(f"{path} is {what} this command works on ({file}); name another file")


def _same_file(path: Path, other: Path) -> bool:
    """Whether ``path`` names ``other``: the same name once links are resolved
    (either may not exist yet), or the same inode (a hard link)."""
    if os.path.realpath(path) == os.path.realpath(other):
        return True
    try:
        return path.samefile(other)
    except OSError:  # one of them absent: then only its name could match
        return False


def _controller_add(repo: Repository, args: argparse.Namespace) -> None:
    controller_id = parse_eui64(args.id)
    sk_cs = secrets.token_bytes(16)
    info = ControllerInfo(controller_id, args.name, args.host, args.port)
    with new_output(args.key_out, args.force) as output:
        repo.add_controller(info, sk_cs, publish=lambda: output(key_file_bytes(sk_cs)))
    print(
        f"controller {eui64(controller_id)} registered; its file for the controller is written "
        "(mode 0600): hand it over"
    )


def _controller_rotate_key(repo: Repository, args: argparse.Namespace) -> None:
    controller_id = parse_eui64(args.id)
    sk_cs = secrets.token_bytes(16)
    try:
        with new_output(args.key_out, args.force) as output:
            repo.rotate_controller_key(
                controller_id,
                sk_cs,
                publish=lambda: output(key_file_bytes(sk_cs)),
                abandon_pending=args.force,
            )
    except UnfinishedBootstraps as exc:
        raise StoreError(
            f"{exc}. Let them finish (admin nodes shows them as bootstrapping), or give "
            "--force if they are abandoned"
        ) from None
    print(
        f"controller {eui64(controller_id)}: new file for the controller written (mode 0600); "
        "the old one is refused from now on: restart the controller with the new file"
    )


def _controller_list(repo: Repository, args: argparse.Namespace) -> None:
    rows = repo.list_controllers()
    print(f"{'controller':<24} {'NID':<22} name")
    for c in rows:
        nid = escaped(f"{c.host}:{c.port}")
        print(f"{shown_id(c.controller_id):<24} {nid:<22} {escaped(c.name)}")
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
        mode, profile = escaped(o.key_mode), escaped(str(names.get(o.version, o.version)))
        print(
            f"{o.order_id:>5}  {escaped(o.installer):<16} {shown_id(o.controller_id):<24} "
            f"{mode:<11} {profile:<7} {o.nodes:>7}"
        )
    print(f"{len(rows)} order(s)")


def _order_remove(repo: Repository, args: argparse.Namespace) -> None:
    removed = repo.remove_order(args.order_id)
    print(f"order {args.order_id} removed with {removed} node(s)")


def _installer_list(repo: Repository, args: argparse.Namespace) -> None:
    rows = repo.list_installers()
    for name, orders in rows:
        print(f"{escaped(name):<24} {orders} order(s)")
    print(f"{len(rows)} installer(s)")


def _installer_remove(repo: Repository, args: argparse.Namespace) -> None:
    repo.remove_installer(args.name)
    print(f"installer {args.name!r} removed")


def _nodes(repo: Repository, args: argparse.Namespace) -> None:
    nodes = repo.list_nodes()
    counts: dict[str, int] = {}
    for n in nodes:
        print(f"{shown_id(n.node_id)}  order {n.order_id:<5} {escaped(n.status)}")
        counts[n.status] = counts.get(n.status, 0) + 1
    print(f"{len(nodes)} node(s): {_counts(counts)}" if nodes else "0 nodes enrolled")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {escaped(k)}" for k, v in sorted(counts.items())) or "no nodes yet"


def _revoke(repo: Repository, args: argparse.Namespace) -> None:
    """A node revoked already is reported as such, and nothing changes; exit
    status 0, as for ``--order`` of an order whose nodes all are ("0 node(s)
    revoked"): what was asked for holds, so a script that revokes a list again
    after an interruption does not stop at the nodes it had done."""
    if args.order is not None:
        count = repo.revoke_order(args.order)
        print(f"order {args.order}: {count} node(s) revoked")
        return
    if repo.revoke(parse_eui64(args.node)) is False:
        print(f"node {args.node} was already revoked; nothing changed")
        return
    print(f"node {args.node} revoked")


def _backup(config: ServerConfig, args: argparse.Namespace) -> None:
    """A copy of the store as it is, whatever its schema version: backing up is
    the step before ``admin migrate`` (an older store is refused with those
    words), so it must work on the store that needs one. The master key is not
    needed: the copy's keys stay wrapped under it.

    The copy is made under a name of its own (``O_EXCL``): with one fixed name,
    two backups to the same file at once (a cron job and an operator) each
    deleted and wrote the other's copy, and both failed ("disk I/O error")."""
    database = sqlite_file(
        config, "keystrap admin backup", f"back it up with pg_dump ({BACKUP_ON_POSTGRES})"
    )
    if not database.exists():
        open_repository(config, create=False)  # the error that says how to make one
    if not args.file.parent.is_dir():
        raise StoreError(f"cannot write {args.file}: no directory {args.file.parent}")
    try:
        fd, name = tempfile.mkstemp(
            prefix=f".{args.file.name}.", suffix=".partial", dir=args.file.parent
        )
    except OSError as exc:
        raise StoreError(f"cannot write {args.file}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(name)
    try:
        source = server_store_read_only(database, whole=False)
        try:
            copy_database(source, tmp)
        finally:
            source.close()
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
        f"backup of {database} written to {args.file} (mode 0600, its contents wrapped); "
        "keep the server's wrapping file safe separately: the backup is useless without it"
    )


def _restore(config: ServerConfig, args: argparse.Namespace) -> None:
    """Verify the backup on a private copy first; only then replace the store,
    holding the server's lock so that no server runs on it meanwhile."""
    database = sqlite_file(config, "keystrap admin restore", RESTORE_ON_POSTGRES)
    refuse_existing(database, args.force)
    refuse_read_only(database)
    _refuse_not_a_file(args.file)
    master_key = read_master_key(config)
    make_private_dirs(database.parent)
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


def _refuse_not_a_file(backup: Path) -> None:
    """Only a regular file can be a backup (a FIFO would hang the read)."""
    if not backup.exists():
        raise StoreError(f"backup file {backup} does not exist")
    if backup.is_dir():
        raise StoreError(f"backup {backup} is a directory; name the backup file itself")
    if not backup.is_file():
        raise StoreError(f"backup {backup} is not a regular file")


def _restore_through(
    trial: Path, config: ServerConfig, backup: Path, master_key: bytes
) -> CheckReport:
    # Read-only, so that the backup is left exactly as it is (its mode included).
    source = sqlite3.connect(f"{backup.resolve().as_uri()}?mode=ro", uri=True)
    try:
        why = not_a_server_store(
            {row[0] for row in source.execute("SELECT name FROM sqlite_master")}
        )
        if why:  # restoring a database without the tables would leave an empty site
            raise StoreError(f"backup {backup} refused: {why}")
        copy_database(source, trial)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"backup {backup} refused: {exc}") from None
    finally:
        source.close()
    try:
        repo = SqliteRepository(trial, master_key)
    except WrongMasterKey:
        raise StoreError(
            f"backup {backup} refused: its keys do not unwrap under the master key "
            f"{config.master_key}"
        ) from None
    except StoreError as exc:  # named after the private copy, which the user never saw
        reason = str(exc).removeprefix(f"{trial}: ").replace(str(trial), str(backup))
        raise StoreError(f"backup {backup} refused: {reason}") from None
    try:
        report = repo.check()
        if report.problems:
            raise StoreError(
                f"backup {backup} refused: {len(report.problems)} problem(s), "
                f"the first: {report.problems[0]}"
            )
        repo.restore_into(sqlite_file(config, "keystrap admin restore", RESTORE_ON_POSTGRES))
    finally:
        repo.close()
    return report


def _user(repo: Repository, args: argparse.Namespace) -> None:
    if not isinstance(repo, SqliteRepository):
        raise StoreError(
            "console accounts live in a SQLite store; the console does not run on PostgreSQL, "
            f"where the admin commands do its work ({CONSOLE_ON_POSTGRES})"
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
    """Refused while a server runs on the store, as ``migrate`` and ``restore``
    are: a bootstrap it confirms after the copy is missing from the copy, and a
    site pointed at the copy would hold a node whose PSK its store never saw."""
    lock = InstanceLock.acquire(local_state(config), "server")
    try:
        source = open_repository(config, create=False, read_only=True)
        try:
            counts = move_store(source, target, read_master_key(config))
        finally:
            source.close()
    finally:
        lock.release()
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
    db = connect_read_only(config.database)
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
    print("integrity ok; every wrapped entry unwraps")


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
    "check": _check,
    "user.add": _user,
    "user.list": _user,
    "user.remove": _user,
}
