"""Never destroy: no command overwrites or deletes a file it did not create
(unless --force), a node file holding a PSK is never replaced, a key reaches a
store only once its output file is on disk, a socket path is unlinked only when
it is a stale socket, and read-only commands never create a site."""

from __future__ import annotations

import asyncio
import secrets
import socket
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from keystrap.cli.main import main
from keystrap.ids import eui64
from keystrap.oob import OobError
from keystrap.oob.unix import UnixListener
from keystrap.protocol import NodeStage
from keystrap.store.atomic import new_output
from keystrap.store.controller_store import ControllerStore
from keystrap.store.errors import StoreError
from keystrap.store.keyfile import key_file_bytes, open_with_master_key, read_key_file
from keystrap.store.node_file import load_node_file, save_node_file
from keystrap.store.sqlite_repository import ControllerInfo, SqliteRepository
from keystrap_lab.processes import keystrap_command
from keystrap_lab.site import Site

from .conftest import load_vectors
from .services_helpers import run

CONTROLLER = "02:00:00:00:00:00:00:c0"


def keystrap(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        keystrap_command(*args), cwd=cwd, capture_output=True, text=True, check=False
    )


def refused(done: subprocess.CompletedProcess[str], *words: str, logs: bool = False) -> bool:
    """Exit 2 with one error line on stderr that says each of ``words``, no
    traceback; a service (``logs``) may have logged before it."""
    lines = done.stderr.strip().splitlines()
    alone = logs or len(lines) == 1
    return done.returncode == 2 and alone and all(w in lines[-1] for w in words)


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_read_only_commands_never_create_a_site(tmp_path: Path) -> None:
    for command in (["nodes"], ["order", "list"], ["controller", "list"], ["check"]):
        done = keystrap(tmp_path, "admin", *command)
        assert refused(done, "keystrap-data/sbs.sqlite", "keystrap admin controller add")
    assert refused(keystrap(tmp_path, "admin", "backup", "b.sqlite"), "no server store")
    assert list(tmp_path.iterdir()) == []
    # The command that creates a site checks its options first: a failed one creates nothing.
    (tmp_path / "taken.key").write_text("x\n")
    add = ("admin", "controller", "add")
    assert refused(keystrap(tmp_path, *add, CONTROLLER, "--key-out", "taken.key"), "--force")
    assert refused(keystrap(tmp_path, *add, "02:00", "--key-out", "new.key"), "EUI-64")
    assert [p.name for p in tmp_path.iterdir()] == ["taken.key"]

    data = tmp_path / "keystrap-data"
    data.mkdir()
    (data / "sbs.sqlite").write_bytes(b"my notes, not a database\n" * 200)
    assert refused(keystrap(tmp_path, "admin", "nodes"), "master key", "sbs-master.key")
    (data / "sbs-master.key").write_bytes(key_file_bytes(bytes(16)))
    (data / "sbs-master.key").chmod(0o600)
    before = snapshot(tmp_path)
    assert refused(keystrap(tmp_path, "admin", "nodes"), "cannot open database", "sbs.sqlite")
    assert snapshot(tmp_path) == before


def test_nothing_is_overwritten_without_force(tmp_path: Path) -> None:
    def admin(*args: str) -> subprocess.CompletedProcess[str]:
        return keystrap(tmp_path, "admin", *args)

    assert admin("controller", "add", CONTROLLER, "--key-out", "c.key").returncode == 0
    first_key = (tmp_path / "c.key").read_bytes()
    other = "02:00:00:00:00:00:00:c1"
    assert refused(admin("controller", "add", other, "--key-out", "c.key"), "c.key", "--force")
    assert (tmp_path / "c.key").read_bytes() == first_key
    assert "1 controller(s)" in admin("controller", "list").stdout

    order: tuple[str, ...] = ("order", "create", "--installer", "acme", "--controller", CONTROLLER)
    order += ("--count", "3")
    (tmp_path / "precious.json").write_text("the operator's\n")
    assert refused(admin(*order, "--out", "precious.json"), "precious.json", "--force")
    assert (tmp_path / "precious.json").read_text() == "the operator's\n"
    # An output that cannot be written: the order is rolled back, nothing enrolled.
    assert refused(admin(*order, "--out", "precious.json/bundle.json"), "cannot write")
    assert admin("nodes").stdout.strip() == "0 nodes enrolled"
    assert admin("check").stdout.splitlines()[0].endswith("sbs.sqlite: no nodes yet")
    assert admin(*order, "--out", "bundle.json").returncode == 0
    assert "3 node(s)" in admin("nodes").stdout

    # install: a second run of the same bundle changes nothing; a node file that
    # holds a PSK is never replaced, not even with --force.
    install = ("install", "bundle.json", "--out", "nodes")
    assert keystrap(tmp_path, *install).returncode == 0
    assert keystrap(tmp_path, *install).returncode == 0
    keyed = sorted((tmp_path / "nodes").glob("*.json"))[1]
    node = load_node_file(keyed)
    state = replace(node.state, key=bytes(range(16)), stage=NodeStage.KEYED)
    save_node_file(keyed, replace(node, state=state, confirmed=True))
    before = snapshot(tmp_path)
    name = f"node {node_id(keyed)}"
    for extra in ([], ["--force"]):
        assert refused(keystrap(tmp_path, *install, *extra), name, "--reinstall", "not even")
    assert snapshot(tmp_path) == before

    # --force replaces an operator's file that holds no key.
    assert admin(*order, "--out", "precious.json", "--force").returncode == 0
    assert '"format": "keystrap-bundle/1"' in (tmp_path / "precious.json").read_text()


def node_id(path: Path) -> str:
    return eui64(load_node_file(path).state.node_id)


def test_a_key_is_committed_only_with_its_output_file(tmp_path: Path) -> None:
    repository = SqliteRepository(tmp_path / "sbs.sqlite", bytes(16))
    out = tmp_path / "sk.key"
    info = ControllerInfo(bytes(8), "c", "h", 1)

    def publish_then_fail() -> None:
        output(key_file_bytes(bytes(16)))
        assert out.exists()
        raise OSError("disk full")  # anything between the file and the commit

    try:
        with pytest.raises(OSError, match="disk full"), new_output(out, False) as output:
            repository.add_controller(info, bytes(16), publish=publish_then_fail)
        assert not out.exists() and repository.list_controllers() == []
        with new_output(out, False) as output:
            repository.add_controller(
                info, bytes(16), publish=lambda: output(key_file_bytes(b"k" * 16))
            )
        assert read_key_file(out) == b"k" * 16 and len(repository.list_controllers()) == 1
    finally:
        repository.close()


def test_a_start_that_fails_takes_back_only_what_it_made(tmp_path: Path) -> None:
    store, key = tmp_path / "sbs.sqlite", tmp_path / "sbs-master.key"

    def made_then_failed(master_key: bytes) -> SqliteRepository:
        db = sqlite3.connect(store)  # the store's files are made, then opening fails
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (x)")
        db.close()
        raise StoreError("cannot use database")

    def attempt(opener: Callable[[bytes], SqliteRepository] = made_then_failed) -> None:
        with pytest.raises(StoreError):
            open_with_master_key(store, key, secrets.token_bytes, opener)

    attempt()  # a new site: the new key and the new store both go
    assert list(tmp_path.iterdir()) == []

    key.write_bytes(key_file_bytes(bytes(range(16))))
    key.chmod(0o600)
    attempt()  # the operator's key stays; the new store goes
    assert [p.name for p in tmp_path.iterdir()] == [key.name]
    assert read_key_file(key) == bytes(range(16))

    repository, created = open_with_master_key(
        store, key, secrets.token_bytes, lambda k: SqliteRepository(store, k)
    )
    repository.close()
    assert not created
    before = snapshot(tmp_path)
    attempt(lambda _: SqliteRepository(store, bytes(16)))  # the wrong key: refused
    assert snapshot(tmp_path) == before  # and the store and its key are as they were

    # The CLI: a server whose PostgreSQL store cannot be reached leaves no key.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = keystrap(elsewhere, "server", "--database", "postgresql://k@127.0.0.1:1/sbs")
    assert refused(done, "cannot open database", "127.0.0.1")
    assert not list(elsewhere.rglob("*.key"))


def test_only_a_stale_socket_is_unlinked(tmp_path: Path) -> None:
    site = Site(tmp_path, channels=("raw", "raw"))
    run(site.prepare())
    site.register_controller()
    site.oob_socket.write_bytes(b"the server's database, say\n")
    done = keystrap(tmp_path, "controller", "--config", str(site.controller_config))
    assert refused(done, str(site.oob_socket), "not a socket", logs=True)
    assert "Traceback" not in done.stderr
    assert site.oob_socket.read_bytes() == b"the server's database, say\n"

    async def sockets() -> None:
        path = tmp_path / "s.sock"
        with socket.socket(socket.AF_UNIX) as stale:
            stale.bind(str(path))  # left behind, nobody listening
        live = UnixListener(path)

        async def session(link: object) -> None:
            await asyncio.sleep(0)

        await live.start(session)  # replaces the stale socket
        try:
            with pytest.raises(OobError, match="in use"):
                await UnixListener(path).start(session)
        finally:
            await live.stop()
        assert not path.exists()

    run(sockets())


def test_typed_errors_from_the_store(tmp_path: Path) -> None:
    (tmp_path / "bad.sqlite").write_bytes(b"\x00" * 5000)
    with pytest.raises(StoreError, match=r"bad\.sqlite: file is not a database"):
        SqliteRepository(tmp_path / "bad.sqlite", bytes(16))
    assert (tmp_path / "bad.sqlite").read_bytes() == b"\x00" * 5000

    # One store given for the other by mistake is refused and left as it was.
    ControllerStore(tmp_path / "sbr.sqlite", bytes(16)).close()
    SqliteRepository(tmp_path / "sbs.sqlite", bytes(16)).close()
    before = snapshot(tmp_path)
    with pytest.raises(StoreError, match="not a keystrap server store"):
        SqliteRepository(tmp_path / "sbr.sqlite", bytes(16))
    with pytest.raises(StoreError, match="not a keystrap controller state"):
        ControllerStore(tmp_path / "sbs.sqlite", bytes(16))
    assert snapshot(tmp_path) == before


def test_other_outputs_are_not_overwritten_either(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    precious = tmp_path / "precious"
    precious.write_text("keep me\n")
    flight5 = load_vectors("bootstrap.json")[1]["flights"]["5"]
    encode = ["oob", "encode", "--channel", "raw", "--hex", flight5, "--out", str(precious)]
    assert main(encode) == 2
    assert "--force" in capsys.readouterr().err
    for command in (["demo", "--workdir", str(tmp_path)], ["attack", "--workdir", str(tmp_path)]):
        assert main(command) == 2
    assert "not an empty directory" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["precious"]
    assert precious.read_text() == "keep me\n"
    assert main(["install", str(precious), "--out", str(tmp_path / "n"), "--force"]) == 2
    assert main(["admin", "--database", str(precious), "nodes"]) == 2
    assert precious.read_text() == "keep me\n"


def test_a_store_taken_after_the_command_opened_it_is_said_to_be_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A command whose store opened, but whose later write waited past the busy
    timeout, printed only "database error: database is locked"."""
    monkeypatch.chdir(tmp_path)
    assert main(["admin", "controller", "add", CONTROLLER, "--key-out", "k"]) == 0
    store = tmp_path / "keystrap-data" / "sbs.sqlite"
    holder = sqlite3.connect(store, isolation_level=None)
    waiter = sqlite3.connect(store, timeout=0, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError) as locked:
            waiter.execute("BEGIN IMMEDIATE")  # the error SQLite gives past its timeout
    finally:
        waiter.close()
        holder.close()

    def taken(self: SqliteRepository, node_id: bytes) -> bool:
        raise locked.value

    monkeypatch.setattr(SqliteRepository, "revoke", taken)
    capsys.readouterr()
    assert main(["admin", "revoke", "02:00:00:00:00:00:00:01"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "database error: database is locked" in err
    assert "another process has held its write lock" in err and "try again" in err


def test_a_store_another_process_holds_is_said_to_be_busy_not_damaged(tmp_path: Path) -> None:
    """Past SQLite's busy timeout, a command said "database is locked (keystrap
    admin check says more)", sending the operator to look for damage in a sound
    store. Now it says the store is taken and to try again; nothing changes."""
    add = ("controller", "add", CONTROLLER, "--key-out", "k")
    assert keystrap(tmp_path, "admin", *add).returncode == 0
    order = ("order", "create", "--installer", "a", "--controller", CONTROLLER, "--count", "2")
    assert keystrap(tmp_path, "admin", *order, "--out", "b1.json").returncode == 0
    store = tmp_path / "keystrap-data" / "sbs.sqlite"
    holder = sqlite3.connect(store, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # as a long batch or a huge order holds it
        commands = [
            subprocess.Popen(
                keystrap_command("admin", *args),
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for args in (("revoke", "--order", "1"), (*order, "--out", "b2.json"))
        ]
        outputs = [command.communicate() for command in commands]
    finally:
        holder.close()
    for command, (_, err) in zip(commands, outputs, strict=True):
        done = subprocess.CompletedProcess(command.args, command.returncode, "", err)
        assert refused(done, "sbs.sqlite: database is locked", "write lock", "try again"), err
        assert "admin check" not in err
    assert not (tmp_path / "b2.json").exists()
    nodes = keystrap(tmp_path, "admin", "nodes")
    assert "2 enrolled" in nodes.stdout and "revoked" not in nodes.stdout
