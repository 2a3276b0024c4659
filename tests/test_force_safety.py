"""What ``--force`` may replace, and what a failed write leaves: never the site's
own store or master key, never a device or a directory, never a temporary file
with a key in it; and ``admin restore`` takes only a server store."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from keystrap.cli.main import main
from keystrap.store.atomic import write_new

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
    """The site's files and contents (an instance lock, which stays by design, aside)."""
    return {
        p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.suffix != ".lock"
    }


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
    one_line(capsys, "is not a file")
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
