"""What ``--force`` may replace, and what a failed write leaves: never the site's
own store or master key, never a device or a directory, never a temporary file
with a key in it; ``admin restore`` takes only a server store; and the other
admin commands a bad day found wanting."""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from keystrap.cli.admin import PORT
from keystrap.cli.main import main
from keystrap.config import RANGES
from keystrap.store.atomic import new_output, write_atomic, write_new
from keystrap.store.errors import StoreError
from keystrap.store.keyfile import write_key_file
from keystrap.store.sqlite_repository import SqliteRepository
from keystrap_lab.processes import free_udp_port, keystrap_command

CONTROLLER = "02:00:00:00:00:00:00:c0"


@pytest.fixture
def admin(tmp_path: Path) -> list[str]:
    """A site with a controller and three nodes; the admin command's prefix."""
    site = tmp_path / "site"
    prefix = [
        "admin", "--database", str(site / "sbs.sqlite"), "--master-key", str(site / "mk.key"),
    ]  # fmt: skip
    assert main([*prefix, "controller", "add", CONTROLLER, "--key-out", str(site / "sk")]) == 0
    order = ["order", "create", "--installer", "acme", "--controller", CONTROLLER]
    assert main([*prefix, *order, "--count", "3", "--out", str(tmp_path / "b.json")]) == 0
    return prefix


def files(root: Path) -> dict[Path, bytes]:
    """The site's files and contents."""
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def one_line(capsys: pytest.CaptureFixture[str], *words: str) -> None:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(word in err for word in words), err


def test_a_forced_output_is_never_the_sites_own_store_or_key(
    tmp_path: Path, admin: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "site"
    capsys.readouterr()
    before = files(site)
    attempts = [
        ["backup", str(site / "mk.key"), "--force"],
        ["controller", "add", "02:00:00:00:00:00:00:c3", "--key-out", str(site / "mk.key")],
        ["order", "create", "--installer", "acme", "--controller", CONTROLLER, "--count", "1",
         "--out", str(site / "sbs.sqlite"), "--force"],
    ]  # fmt: skip
    attempts[1].append("--force")
    for words in attempts:
        assert main([*admin, *words]) == 2
        one_line(capsys, "this command works on")
    assert files(site) == before


def test_force_replaces_neither_a_device_nor_a_directory(
    tmp_path: Path, admin: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    fifo, directory = tmp_path / "fifo", tmp_path / "dir"
    os.mkfifo(fifo)
    directory.mkdir()
    capsys.readouterr()
    for target in (fifo, directory):
        assert main([*admin, "backup", str(target), "--force"]) == 2
        one_line(capsys, "is not a regular file")
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and directory.is_dir()
    assert sorted(os.listdir(tmp_path)) == ["b.json", "dir", "fifo", "site"]  # no temp file


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    """Even where the rename itself fails (a directory put there meanwhile)."""
    target = tmp_path / "out"
    write_new(target, b"first")
    target.unlink()
    target.mkdir()
    (target / "inside").write_text("x")
    with pytest.raises(Exception, match="not a regular file"):
        write_new(target, b"secret", force=True)
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_a_planted_link_at_a_temporary_name_is_never_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / f".out.{os.getpid()}.tmp").symlink_to(victim)  # the name it had
    write_new(tmp_path / "out", b"key material")
    assert victim.read_text() == "precious"
    assert (tmp_path / "out").read_bytes() == b"key material"


def test_restore_takes_only_a_server_store(
    tmp_path: Path, admin: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    empty.chmod(0o644)
    site = tmp_path / "site"
    capsys.readouterr()
    before = files(site)
    assert main([*admin, "restore", str(empty), "--force"]) == 2
    one_line(capsys, "refused", "not a keystrap server store")
    assert stat.S_IMODE(empty.stat().st_mode) == 0o644 and empty.read_bytes() == b""
    assert main([*admin, "restore", str(site), "--force"]) == 2
    one_line(capsys, "is a directory")
    assert files(site) == before
    assert main([*admin, "nodes"]) == 0
    assert "3 enrolled" in capsys.readouterr().out


@pytest.mark.parametrize(
    "words",
    [
        ["order", "remove", "99999999999999999999999999"],
        ["revoke", "--order", "9223372036854775808"],
        [
            "controller",
            "add",
            "02:00:00:00:00:00:00:c1",
            "--key-out",
            "{tmp}/k1",
            "--port",
            "99999",
        ],
    ],
)
def test_a_number_out_of_range_is_one_line(
    tmp_path: Path, admin: list[str], capsys: pytest.CaptureFixture[str], words: list[str]
) -> None:
    capsys.readouterr()
    assert main([*admin, *(word.format(tmp=tmp_path) for word in words)]) == 2
    one_line(capsys, "must be 1 to")


def test_check_names_a_key_column_that_holds_text(
    tmp_path: Path, admin: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with contextlib.closing(sqlite3.connect(tmp_path / "site" / "sbs.sqlite")) as db:
        db.execute("UPDATE nodes SET key_wrapped='text' WHERE rowid=1")
        db.commit()
    capsys.readouterr()
    assert main([*admin, "check"]) == 2
    assert "is str, not a wrapped key" in capsys.readouterr().out


def test_a_store_sidecar_is_refused_even_while_absent(
    tmp_path: Path, admin: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A bundle written as the store's -wal would be taken for its log, and
    deleted, when the store is next opened; reached through a link as well."""
    site = tmp_path / "site"
    (tmp_path / "link").symlink_to(site / "sbs.sqlite-shm")
    capsys.readouterr()
    before = files(site)
    attempts = [
        ["backup", str(site / "sbs.sqlite-wal")],
        ["order", "create", "--installer", "acme", "--controller", CONTROLLER, "--count", "1",
         "--out", str(site / "sbs.sqlite-journal")],
        ["controller", "rotate-key", CONTROLLER, "--key-out", str(tmp_path / "link")],
    ]  # fmt: skip
    for words in attempts:
        for force in ([], ["--force"]):
            assert main([*admin, *words, *force]) == 2
            one_line(capsys, "this command works on")
    assert files(site) == before
    assert not (tmp_path / "link").exists()


def test_an_existing_own_file_is_refused_as_such_without_force(
    tmp_path: Path, admin: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Not "exists, give --force": --force would be refused as well."""
    capsys.readouterr()
    assert main([*admin, "backup", str(tmp_path / "site" / "mk.key")]) == 2
    one_line(capsys, "is the master key this command works on")


def test_a_forced_bundle_onto_a_directory_leaves_no_key_behind(
    tmp_path: Path, admin: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "dd").mkdir()
    capsys.readouterr()
    order = ["order", "create", "--installer", "acme", "--controller", CONTROLLER]
    assert main([*admin, *order, "--count", "1", "--out", str(tmp_path / "dd"), "--force"]) == 2
    one_line(capsys, "is not a regular file")
    assert sorted(os.listdir(tmp_path)) == ["b.json", "dd", "site"]
    assert os.listdir(tmp_path / "dd") == []


@pytest.mark.parametrize("write", ["write_atomic", "place_new", "place_new_forced"])
def test_a_failed_rename_or_link_removes_the_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write: str
) -> None:
    def fail(*args: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", fail)
    monkeypatch.setattr(os, "link", fail)
    target = tmp_path / "out"
    with pytest.raises((OSError, StoreError), match="Input/output error"):
        if write == "write_atomic":
            write_atomic(target, b"secret")
        else:
            write_new(target, b"secret", force=write == "place_new_forced")
    assert os.listdir(tmp_path) == []


def test_restore_refuses_a_database_without_the_stores_tables(
    tmp_path: Path, admin: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused by the name the user gave, not by the private copy's, and before
    any copy: a database with only a controllers table would have been given
    the rest of the schema, and restored as an empty site."""
    site = tmp_path / "site"
    foreign, partial = tmp_path / "app.db", tmp_path / "partial.db"
    for path, table in ((foreign, "t(x)"), (partial, "controllers(x)")):
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute(f"CREATE TABLE {table}")
        path.chmod(0o644)
    capsys.readouterr()
    before = files(site)
    for path in (foreign, partial):
        assert main([*admin, "restore", str(path), "--force"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"backup {path} refused" in err, err
        assert "not a keystrap server store" in err and ".restoring" not in err, err
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert files(site) == before
    assert sorted(p.name for p in site.iterdir() if p.name.startswith(".")) == []


def test_restore_names_the_backup_when_the_copy_does_not_open(
    tmp_path: Path, admin: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "site"
    newer = tmp_path / "newer.db"
    assert main([*admin, "backup", str(newer)]) == 0
    with contextlib.closing(sqlite3.connect(newer)) as db:
        db.execute("UPDATE meta SET value='99' WHERE name='schema_version'")
        db.commit()
    capsys.readouterr()
    before = files(site)
    assert main([*admin, "restore", str(newer), "--force"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"backup {newer} refused: schema version 99" in err, err
    assert ".restoring" not in err
    assert files(site) == before


def test_a_controllers_port_has_the_config_files_bounds() -> None:
    low, high = RANGES["port"]
    assert PORT(str(low)) == low and PORT(str(high)) == high
    for text in (str(low - 1), str(high + 1), "99999999999999999999999"):
        with pytest.raises(argparse.ArgumentTypeError, match="a port must be"):
            PORT(text)


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        ("UPDATE controllers SET sk_wrapped='text'", "is str, not a wrapped key"),
        ("UPDATE nodes SET key_wrapped=7 WHERE rowid=2", "is int, not a wrapped key"),
        # not "Unknown format code 'x'": the row is named by the value it holds
        ("UPDATE nodes SET id='hello' WHERE rowid=1", "the id of node 'hello' is str, not an"),
        ("UPDATE controllers SET id=7", "the id of controller 7 is int, not an EUI-64"),
    ],
)
def test_check_names_any_key_or_id_column_that_holds_no_bytes(
    tmp_path: Path, admin: list[str], capsys: pytest.CaptureFixture[str], edit: str, named: str
) -> None:
    with contextlib.closing(sqlite3.connect(tmp_path / "site" / "sbs.sqlite")) as db:
        db.execute(edit)
        db.commit()
    capsys.readouterr()
    assert main([*admin, "check"]) == 2
    out, err = capsys.readouterr()
    assert named in out and err.count("\n") == 1, (out, err)


def revoked_twice(admin: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Revoke the first node listed, then again: the second time says so. Its ID."""
    capsys.readouterr()
    assert main([*admin, "nodes"]) == 0
    node = capsys.readouterr().out.split()[0]
    assert main([*admin, "revoke", node]) == 0
    assert capsys.readouterr().out == f"node {node} revoked\n"
    assert main([*admin, "revoke", node]) == 0
    assert "already revoked" in capsys.readouterr().out
    return node


def test_revoking_a_revoked_node_again_says_so_and_adds_no_row(
    tmp_path: Path, admin: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    revoked_twice(admin, capsys)
    with contextlib.closing(sqlite3.connect(tmp_path / "site" / "sbs.sqlite")) as db:
        assert db.execute("SELECT COUNT(*) FROM revocations").fetchone() == (1,)


READS = [
    ["nodes"], ["controller", "list"], ["order", "list"], ["installer", "list"], ["check"],
    ["user", "list"],
]  # fmt: skip


def as_it_is(root: Path) -> dict[Path, tuple[int, bytes]]:
    """:func:`files` with their modes."""
    return {
        p: (stat.S_IMODE(p.stat().st_mode), p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix != ".lock"
    }


@pytest.mark.parametrize("mode", [0o444, 0o600])
def test_commands_that_only_read_leave_the_store_as_it_is(
    tmp_path: Path, admin: list[str], capsys: pytest.CaptureFixture[str], mode: int
) -> None:
    """Not chmodded, not written (``user list`` had added its table), no sidecar
    left behind: an operator's read-only store stays read-only."""
    site = tmp_path / "site"
    (site / "sbs.sqlite").chmod(mode)
    before = as_it_is(site)
    for words in [*READS, ["backup", str(tmp_path / "copy.sqlite")]]:
        assert main([*admin, *words]) == 0, capsys.readouterr().err
    assert as_it_is(site) == before
    capsys.readouterr()
    copy = ["--database", str(tmp_path / "copy.sqlite"), "--master-key", str(site / "mk.key")]
    assert main(["admin", *copy, "nodes"]) == 0
    assert "3 node(s)" in capsys.readouterr().out


def test_commands_that_write_refuse_a_read_only_store(
    tmp_path: Path, admin: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The operator who made it read-only meant it: one line, nothing changed."""
    site = tmp_path / "site"
    assert main([*admin, "backup", str(tmp_path / "copy.sqlite")]) == 0
    (site / "sbs.sqlite").chmod(0o444)
    capsys.readouterr()
    before = as_it_is(site)
    for words in (
        ["revoke", "--order", "1"],
        ["controller", "add", "02:00:00:00:00:00:00:c1", "--key-out", str(tmp_path / "k1")],
        ["installer", "remove", "acme"],
        ["migrate"],
        ["restore", str(tmp_path / "copy.sqlite"), "--force"],
    ):
        assert main([*admin, *words]) == 2
        one_line(capsys, "is read-only (mode 0444)", "chmod 600")
    assert as_it_is(site) == before
    assert not (tmp_path / "k1").exists()


def test_commands_that_only_read_refuse_a_file_that_is_not_a_store(
    tmp_path: Path, admin: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A 0-byte file had been made a store (and chmodded 0600) by ``admin nodes``."""
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    empty.chmod(0o644)
    before = as_it_is(tmp_path)
    given = ["admin", "--database", str(empty), "--master-key", str(tmp_path / "site" / "mk.key")]
    capsys.readouterr()
    for words in [*READS, ["backup", str(tmp_path / "copy.sqlite")]]:
        assert main([*given, *words]) == 2
        one_line(capsys, f"{empty} refused: it is not a keystrap server store")
    assert as_it_is(tmp_path) == before


def test_commands_that_write_but_make_no_site_refuse_an_empty_file(
    tmp_path: Path, admin: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Only ``controller add`` sets up a site: ``revoke`` had made a 0-byte file a store."""
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    before = as_it_is(tmp_path)
    given = ["admin", "--database", str(empty), "--master-key", str(tmp_path / "site" / "mk.key")]
    capsys.readouterr()
    for words in (
        ["revoke", CONTROLLER],
        ["order", "create", "--installer", "acme", "--controller", CONTROLLER, "--count", "1",
         "--out", str(tmp_path / "b2.json")],
    ):  # fmt: skip
        assert main([*given, *words]) == 2
        one_line(capsys, f"{empty} refused: it is not a keystrap server store (it holds no table)")
    assert as_it_is(tmp_path) == before


@pytest.mark.parametrize(
    ("words", "field"),
    [
        (["controller", "add", "02:00:00:00:00:00:00:c1", "--key-out", "k1",
          "--name", "x\n02:00:00:00:00:00:00:c9  10.0.0.9:5684          fake"], "--name"),
        (["controller", "add", "02:00:00:00:00:00:00:c1", "--key-out", "k1",
          "--host", "h\x1b[2J"], "--host"),
        (["order", "create", "--installer", "acme\r", "--controller", CONTROLLER, "--count", "1",
          "--out", "b2.json"], "--installer"),
    ],
)  # fmt: skip
def test_a_name_or_host_with_a_control_character_is_refused_when_entered(
    tmp_path: Path,
    admin: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    words: list[str],
    field: str,
) -> None:
    """Stored, it would have been printed raw, faking rows of the listings; refused
    before the store is opened, so a new site is not made for it either."""
    monkeypatch.chdir(tmp_path)
    site = tmp_path / "site"
    before = files(site)
    capsys.readouterr()
    assert main([*admin, *words]) == 2
    one_line(capsys, f"{field} must be printable text")
    fresh = ["admin", "--database", "new/sbs.sqlite", "--master-key", "new/mk.key"]
    assert main([*fresh, *words]) == 2
    one_line(capsys, f"{field} must be printable text")
    assert files(site) == before
    assert sorted(os.listdir(tmp_path)) == ["b.json", "site"]


def test_listings_show_what_the_store_holds_escaped(
    tmp_path: Path, admin: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A hand-edited store cannot fake rows or reach the terminal's escapes."""
    with contextlib.closing(sqlite3.connect(tmp_path / "site" / "sbs.sqlite")) as db:
        db.execute("UPDATE controllers SET name='x\n02:00:00:00:00:00:00:c9 fake', host='h\x1b[2J'")
        db.execute("UPDATE installers SET name='acme\r\x07'")
        db.execute("UPDATE orders SET installer='acme\r\x07'")
        db.execute("UPDATE nodes SET status='enrolled\n02:00:00:00:00:00:00:99' WHERE rowid=1")
        db.commit()
    capsys.readouterr()
    for words, lines in (
        (["controller", "list"], 3), (["order", "list"], 3), (["installer", "list"], 2),
        (["nodes"], 4),
    ):  # fmt: skip
        assert main([*admin, *words]) == 0
        out = capsys.readouterr().out
        assert out.count("\n") == lines and all(line.isprintable() for line in out.splitlines())
    assert main([*admin, "controller", "list"]) == 0
    assert "h\\x1b[2J:5684" in capsys.readouterr().out


def test_listings_show_an_id_of_another_type_escaped(
    tmp_path: Path, admin: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A node ID a hand-edited row made text had ended ``admin nodes`` in one line,
    "Unknown format code 'x'", with no node listed."""
    with contextlib.closing(sqlite3.connect(tmp_path / "site" / "sbs.sqlite")) as db:
        db.execute("UPDATE nodes SET id='n\x1b1' WHERE rowid=1")
        db.commit()
    capsys.readouterr()
    assert main([*admin, "nodes"]) == 0
    out = capsys.readouterr().out
    assert "'n\\x1b1'  order" in out and all(line.isprintable() for line in out.splitlines())


def test_a_controller_state_that_holds_no_table_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 0-byte state (truncated, or touched) was taken for a new one: the
    controller started again at TID 1, and ``nodes``, ``show`` and ``configure``
    made it a state, the PSKs of the nodes bootstrapped earlier gone for them."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    write_key_file(data / "sk.key", bytes(16))
    write_key_file(data / "sbr-master.key", bytes(range(16)))
    state = data / "sbr.sqlite"
    state.write_bytes(b"")
    state.chmod(0o644)
    before = as_it_is(tmp_path)
    given = [
        "controller", "--key-file", str(data / "sk.key"), "--state", str(state),
        "--master-key", str(data / "sbr-master.key"), "--oob", f"unix:{data / 'oob.sock'}",
        "--channel-from-node", "raw", "--channel-to-node", "raw",
    ]  # fmt: skip
    refused = f"{state} refused: it is not a keystrap controller state (it holds no table)"
    node = "02:00:00:00:00:00:00:01"
    for action in (["nodes"], ["show", node], ["configure", node, "--domain", "plant.example"]):
        assert main([*given, *action]) == 2
        one_line(capsys, refused, "restore it from a backup, or remove the file")
    service = subprocess.run(
        keystrap_command(*given), capture_output=True, text=True, timeout=30, check=False
    )
    assert service.returncode == 2 and service.stderr.count("\n") == 1, service.stderr
    assert refused in service.stderr
    assert as_it_is(tmp_path) == before and sorted(data.iterdir()) == sorted(before)


@pytest.mark.parametrize("with_key", [True, False])
def test_a_server_store_that_holds_no_table_is_refused_at_start(
    tmp_path: Path, with_key: bool
) -> None:
    """With its master key there, a 0-byte store was made a new one by ``keystrap
    server``: every node enrolled before unknown to it, and nothing said."""
    store = tmp_path / "sbs.sqlite"
    store.write_bytes(b"")
    store.chmod(0o644)
    if with_key:
        write_key_file(tmp_path / "mk.key", bytes(range(16)))
    before = as_it_is(tmp_path)
    given = ["--database", str(store), "--master-key", str(tmp_path / "mk.key")]
    server = subprocess.run(
        keystrap_command("server", *given, "--port", str(free_udp_port())),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert server.returncode == 2 and server.stderr.count("\n") == 1, server.stderr
    assert f"{store} refused: it is not a keystrap server store (it holds no table)" in (
        server.stderr
    )
    assert as_it_is(tmp_path) == before and sorted(tmp_path.iterdir()) == sorted(before)


@pytest.mark.parametrize(
    ("command", "method"),
    [
        (f"controller add {CONTROLLER[:-1]}3 --key-out", "add_controller"),
        (f"controller rotate-key {CONTROLLER} --key-out", "rotate_controller_key"),
        (
            f"order create --installer acme --controller {CONTROLLER} --count 1 --out",
            "create_order",
        ),
    ],
    ids=["controller add", "rotate-key", "order create"],
)
@pytest.mark.parametrize("meanwhile", [False, True], ids=["alone", "another run meanwhile"])
def test_a_forced_output_whose_commit_fails_leaves_the_file_it_replaced(
    tmp_path: Path,
    admin: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    method: str,
    meanwhile: bool,
) -> None:
    """With --force the file is replaced inside the store's transaction; when the
    commit then failed, the file was removed: the one it had replaced (another
    run's committed key, say) was lost with it, and so was a file another --force
    run to the same name had put there meanwhile. Now the file is put back as it
    was, and what another run wrote is left alone."""
    out = tmp_path / "out"
    out.write_bytes(b"the file an earlier run handed out")
    real = getattr(SqliteRepository, method)

    def commit_fails(self: SqliteRepository, *args: Any, **kwargs: Any) -> Any:
        publish = kwargs["publish"]

        def published_then_fails(*made: Any) -> None:
            publish(*made)
            assert out.read_bytes() != b"the file an earlier run handed out"
            if meanwhile:
                write_new(out, b"another run's file", force=True)
            raise sqlite3.OperationalError("database or disk is full")

        return real(self, *args, **(kwargs | {"publish": published_then_fails}))

    monkeypatch.setattr(SqliteRepository, method, commit_fails)
    capsys.readouterr()
    assert main([*admin, *command.split(), str(out), "--force"]) == 2
    one_line(capsys, "disk is full")
    kept = b"another run's file" if meanwhile else b"the file an earlier run handed out"
    assert out.read_bytes() == kept
    assert sorted(os.listdir(tmp_path)) == ["b.json", "out", "site"]


def test_a_replaced_file_that_cannot_be_put_back_is_kept_under_its_second_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forced output whose commit failed puts the file it replaced back; when
    that rename failed too (an I/O error), the second name it was kept under was
    removed all the same, and the file was gone. Now it stays there."""
    out = tmp_path / "key"
    out.write_bytes(b"another run's committed key")
    rename = os.replace

    def put_back_fails(source: Any, target: Any) -> None:
        if str(source).endswith(".replaced"):
            raise OSError(5, "Input/output error")
        rename(source, target)

    with contextlib.suppress(sqlite3.OperationalError), new_output(out, force=True) as output:
        output(b"this run's key")
        monkeypatch.setattr(os, "replace", put_back_fails)
        raise sqlite3.OperationalError("database or disk is full")
    monkeypatch.undo()
    kept = [path.read_bytes() for path in tmp_path.iterdir() if path.name.endswith(".replaced")]
    assert kept == [b"another run's committed key"]
