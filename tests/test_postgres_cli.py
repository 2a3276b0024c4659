"""The administrator's commands around the PostgreSQL store: a site moved from
SQLite into PostgreSQL and back without re-enrolment, and schema migration."""

import contextlib
import json
import os
import re
import secrets
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from keystrap.cli.main import main
from keystrap.coap.client import server_uris
from keystrap.config import ConfigError, ControllerConfig, ServerConfig, load_config
from keystrap.ids import parse_eui64
from keystrap.protocol import TransactionRecord, TransactionStatus
from keystrap.services.instance import InstanceLock
from keystrap.store.keyfile import read_key_file
from keystrap.store.open import local_state, open_store
from keystrap.store.postgres_repository import PostgresRepository
from keystrap_lab.pg_cluster import PrivateCluster
from keystrap_lab.processes import free_udp_port, keystrap_command

from .conftest import CONTROLLER_ID


def keystrap(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        keystrap_command(*args), cwd=cwd, capture_output=True, text=True, check=False
    )


def make_site(root: Path, database: str) -> Path:
    config = root / "server.toml"
    config.write_text(f'[server]\ndatabase = "{database}"\nmaster_key = "sbs-master.key"\n')
    for command in (
        ["controller", "add", "02:00:00:00:00:00:00:c0", "--key-out", "c.key"],
        ["order", "create", "--installer", "acme", "--controller", "02:00:00:00:00:00:00:c0",
         "--count", "5", "--out", "bundle.json"],
    ):  # fmt: skip
        done = keystrap(root, "admin", "--config", str(config), *command)
        assert done.returncode == 0, done.stderr
    return config


def snapshot(database: str, master: bytes) -> tuple[object, ...]:
    """Everything a server relies on, keys unwrapped (compared, never printed)."""
    store = open_store(database, master)
    try:
        nodes = sorted(store.unwrapped_node_keys())
        statuses = sorted((n.node_id, n.status) for n in store.list_nodes())
        open_tx = store.get_transaction(CONTROLLER_ID, 41)
        return (nodes, statuses, store.revocations_after(0, 10), store.controller_keys(), open_tx)
    finally:
        store.close()


def test_site_moves_to_postgres_and_back(tmp_path: Path, pg_url: str) -> None:
    config = make_site(tmp_path, "sbs.sqlite")
    master = read_key_file(tmp_path / "sbs-master.key")
    sqlite_store = open_store(str(tmp_path / "sbs.sqlite"), master)
    first, second = (n.node_id for n in sqlite_store.list_nodes()[:2])
    sqlite_store.add_transaction(
        TransactionRecord(
            CONTROLLER_ID, 41, first, b"f2", b"f3", bytes(16), secrets.token_bytes(16),
            TransactionStatus.PENDING, 1,
        )
    )  # fmt: skip
    sqlite_store.revoke(second)
    sqlite_store.close()
    before = snapshot(str(tmp_path / "sbs.sqlite"), master)

    done = keystrap(tmp_path, "admin", "--config", str(config), "migrate-store", "--to", pg_url)
    assert done.returncode == 0, done.stderr
    assert (
        "5 nodes" in done.stdout
        and "1 transactions" in done.stdout
        and "1 revocations" in done.stdout
    )
    assert snapshot(pg_url, master) == before

    again = keystrap(tmp_path, "admin", "--config", str(config), "migrate-store", "--to", pg_url)
    assert again.returncode == 2 and "not empty" in again.stderr

    pg_config = tmp_path / "pg.toml"
    pg_config.write_text(f'[server]\ndatabase = "{pg_url}"\nmaster_key = "sbs-master.key"\n')
    revoked = keystrap(tmp_path, "admin", "--config", str(pg_config), "revoke", "--order", "1")
    assert revoked.returncode == 0, revoked.stderr
    back = tmp_path / "back.sqlite"
    done = keystrap(
        tmp_path, "admin", "--config", str(pg_config), "migrate-store", "--to", str(back)
    )
    assert done.returncode == 0, done.stderr
    assert snapshot(str(back), master) == snapshot(pg_url, master)
    # New revocations continue the copied numbering on both sides.
    store = open_store(str(back), master)
    assert [seq for seq, _ in store.revocations_after(0, 10)] == [1, 2, 3, 4, 5]
    store.close()


def test_older_sqlite_store_is_refused_until_migrated(tmp_path: Path) -> None:
    config = make_site(tmp_path, "sbs.sqlite")
    db = sqlite3.connect(tmp_path / "sbs.sqlite")
    with db:  # a store as keystrap wrote it before schemas were numbered
        db.execute("DROP INDEX transactions_open")
        db.execute("ALTER TABLE orders DROP COLUMN version")
        db.execute("DELETE FROM meta WHERE name='schema_version'")
        db.execute("INSERT INTO meta VALUES ('schema', '1')")
    db.close()

    refused = keystrap(tmp_path, "admin", "--config", str(config), "nodes")
    assert refused.returncode == 2 and "back it up, then run `keystrap admin migrate`" in (
        refused.stderr
    )
    # What the refusal asks for first works on the older store, and copies it as it is.
    saved = keystrap(tmp_path, "admin", "--config", str(config), "backup", "before.sqlite")
    assert saved.returncode == 0, saved.stderr
    with contextlib.closing(sqlite3.connect(tmp_path / "before.sqlite")) as copy:
        assert copy.execute("SELECT value FROM meta WHERE name='schema'").fetchone() == ("1",)
        assert copy.execute("SELECT COUNT(*) FROM nodes").fetchone() == (5,)
    migrated = keystrap(tmp_path, "admin", "--config", str(config), "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "applied schema step 2" in migrated.stdout
    assert "applied schema step 3" in migrated.stdout
    listed = keystrap(tmp_path, "admin", "--config", str(config), "nodes")
    assert listed.returncode == 0 and "5 node(s): 5 enrolled" in listed.stdout
    again = keystrap(tmp_path, "admin", "--config", str(config), "migrate")
    assert "nothing to do" in again.stdout


def test_store_from_before_revocations_is_migrated_whole(tmp_path: Path) -> None:
    """A store made before schemas were numbered and before revocations existed
    (marked '1' without that table): migrate gives it the table, and admin
    commands then read it and revoke on it."""
    config = make_site(tmp_path, "sbs.sqlite")
    db = sqlite3.connect(tmp_path / "sbs.sqlite")
    with db:
        db.execute("DROP INDEX transactions_open")
        db.execute("ALTER TABLE orders DROP COLUMN version")
        db.execute("DROP TABLE revocations")
        db.execute("DELETE FROM meta WHERE name='schema_version'")
        db.execute("INSERT INTO meta VALUES ('schema', '1')")
    db.close()

    saved = keystrap(tmp_path, "admin", "--config", str(config), "backup", "before.sqlite")
    assert saved.returncode == 0, saved.stderr  # the step before migrate, on this store too
    migrated = keystrap(tmp_path, "admin", "--config", str(config), "migrate")
    assert migrated.returncode == 0, migrated.stderr
    listed = keystrap(tmp_path, "admin", "--config", str(config), "nodes")
    assert listed.returncode == 0, listed.stderr
    assert "5 node(s): 5 enrolled" in listed.stdout
    node = listed.stdout.split()[0]
    revoked = keystrap(tmp_path, "admin", "--config", str(config), "revoke", node)
    assert revoked.returncode == 0, revoked.stderr


def test_config_takes_a_database_url_and_several_servers(tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text('[server]\ndatabase = "postgresql://k@/sbs?host=/run/pg"\n')
    assert load_config(ServerConfig, tmp_path / "s.toml", {}).database == (
        "postgresql://k@/sbs?host=/run/pg"
    )
    (tmp_path / "c.toml").write_text('[controller]\nserver = ["coap://a:5683", "coap://b"]\n')
    servers = load_config(ControllerConfig, tmp_path / "c.toml", {}).server
    assert server_uris(servers) == ["coap://a:5683", "coap://b"]
    single = load_config(ControllerConfig, None, {"server": "coap://a:5683"}).server
    assert server_uris(single) == ["coap://a:5683"]
    (tmp_path / "bad.toml").write_text('[controller]\nserver = "coap://a, http://b"\n')
    with pytest.raises(ConfigError, match="coap://HOST"):
        load_config(ControllerConfig, tmp_path / "bad.toml", {})


def test_sqlite_only_commands_say_so_on_postgres(tmp_path: Path, pg_url: str) -> None:
    config = make_site(tmp_path, pg_url)
    for command in (["backup", "b.sqlite"], ["restore", "b.sqlite"]):
        done = keystrap(tmp_path, "admin", "--config", str(config), *command)
        assert done.returncode == 2 and "PostgreSQL" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    checked = keystrap(tmp_path, "admin", "--config", str(config), "check")
    assert checked.returncode == 0 and "5 enrolled" in checked.stdout, checked.stderr


def deployment_sections() -> dict[str, str]:
    """docs/deployment.md's sections, by "§ N, Title" as a message names them."""
    text = (Path(__file__).parents[1] / "docs" / "deployment.md").read_text()
    parts = re.split(r"^## (\d+)\. (.+)$", text, flags=re.MULTILINE)
    numbers, titles, bodies = parts[1::3], parts[2::3], parts[3::3]
    return {f"§ {n}, {title}": body for n, title, body in zip(numbers, titles, bodies, strict=True)}


def test_sqlite_only_commands_name_the_section_saying_what_works_on_postgres(
    tmp_path: Path, pg_url: str
) -> None:
    """The console's refusal said "docs/deployment.md says how to do this there",
    which only said the console runs on SQLite: each refusal now says what to do
    instead and names the section that says the same."""
    config = make_site(tmp_path, pg_url)
    sections = deployment_sections()
    instead = {
        ("console",): ("admin commands", "keystrap admin nodes"),
        ("admin", "user", "list"): ("admin commands", "keystrap admin nodes"),
        ("admin", "backup", "b.sqlite"): ("pg_dump", "pg_dump"),
        ("admin", "restore", "b.sqlite"): ("pg_restore", "pg_restore"),
    }
    for (command, *rest), (said, documented) in instead.items():
        done = keystrap(tmp_path, command, "--config", str(config), *rest)
        assert done.returncode == 2, done.stderr
        [line] = done.stderr.splitlines()
        named = re.search(r"\(docs/deployment\.md (§ \d+, [^)]+)\)$", line)
        assert named is not None and said in line, line
        assert named[1] in sections, line
        assert documented in sections[named[1]], named[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bundle.json",
        "c.key",
        "sbs-master.key",
        "server.toml",
    ]


def test_migrate_store_is_refused_while_a_server_runs_on_the_store(
    tmp_path: Path, pg_url: str
) -> None:
    """As ``migrate`` and ``restore`` are: the copy was taken under a running
    server, so a bootstrap it confirmed afterwards was missing from the store
    the site then moved to (a node holding a PSK its store never saw)."""
    config = make_site(tmp_path, pg_url)
    running = InstanceLock.acquire(  # what `keystrap server --config server.toml` holds
        local_state(load_config(ServerConfig, config, {})), "server"
    )
    try:
        back = tmp_path / "back.sqlite"
        done = keystrap(
            tmp_path, "admin", "--config", str(config), "migrate-store", "--to", str(back)
        )
        assert done.returncode == 2 and "another server" in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1 and not back.exists()
    finally:
        running.release()
    done = keystrap(tmp_path, "admin", "--config", str(config), "migrate-store", "--to", str(back))
    assert done.returncode == 0, done.stderr


def test_a_wrong_password_is_one_line_that_never_shows_it(
    tmp_path: Path, pg_cluster: PrivateCluster
) -> None:
    """A role that must give its password: the right one opens the store; a
    wrong one, in the user information or as ``?password=``, stops the server's
    start and an admin command with one line, the password shown as ``***``,
    and nothing left behind."""
    password = secrets.token_hex(8)
    role = f"r{secrets.token_hex(4)}"
    url = pg_cluster.password_role(role, password, f"d{role}")
    done = keystrap(tmp_path, "admin", "--config", str(make_site(tmp_path, url)), "nodes")
    assert done.returncode == 0 and "enrolled" in done.stdout, done.stderr
    wrong = "x" + password  # holds the right one too: neither may be shown
    add = ["admin", "controller", "add", "02:00:00:00:00:00:00:c1", "--key-out", "k"]
    for bad in (
        url.replace(f":{password}@", f":{wrong}@"),
        url.replace(f":{password}@", "@") + f"&password={wrong}",
    ):
        for command in (["server"], add):
            root = tmp_path / secrets.token_hex(4)
            root.mkdir()
            config = root / "server.toml"
            config.write_text(
                f'[server]\ndatabase = "{bad}"\nmaster_key = "m.key"\nport = {free_udp_port()}\n'
            )
            done = keystrap(root, command[0], "--config", str(config), *command[1:])
            assert done.returncode == 2, done.stderr
            assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
            assert "password authentication failed" in done.stderr and "***" in done.stderr
            assert password not in done.stderr + done.stdout
            assert [p.name for p in root.iterdir()] == ["server.toml"]


def test_an_order_run_again_after_a_serialization_failure_writes_its_bundle(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An order runs SERIALIZABLE and is run again after a serialization failure
    (two orders at once); the bundle it had written in the first run was then
    refused as "already exists; keystrap never overwrites a file it did not
    create", and the order failed."""
    admin = ["admin", "--database", pg_url, "--master-key", str(tmp_path / "mk.key")]
    controller = "02:00:00:00:00:00:00:c0"
    assert main([*admin, "controller", "add", controller, "--key-out", str(tmp_path / "sk")]) == 0
    real = PostgresRepository.create_order
    published: list[int] = []

    def fails_once(self: PostgresRepository, *args: Any, **kwargs: Any) -> Any:
        publish = kwargs["publish"]

        def published_then_fails(order_id: int) -> None:
            publish(order_id)
            published.append(order_id)
            if len(published) == 1:
                raise psycopg.errors.SerializationFailure("could not serialize access")

        return real(self, *args, **(kwargs | {"publish": published_then_fails}))

    monkeypatch.setattr(PostgresRepository, "create_order", fails_once)
    order = ["order", "create", "--installer", "acme", "--controller", controller, "--count", "2"]
    assert main([*admin, *order, "--out", str(tmp_path / "b.json")]) == 0
    assert len(published) == 2
    store = open_store(pg_url, read_key_file(tmp_path / "mk.key"))
    try:
        (committed,) = store.list_orders()
        keys = dict(store.unwrapped_node_keys())
    finally:
        store.close()
    bundle = json.loads((tmp_path / "b.json").read_text())
    assert bundle["order"] == committed.order_id == published[1]
    assert {parse_eui64(node["id"]) for node in bundle["nodes"]} == set(keys)
    assert set(keys.values()) == {bytes.fromhex(bundle["shared_key"])}
    assert sorted(os.listdir(tmp_path)) == ["b.json", "mk.key", "sk"]
