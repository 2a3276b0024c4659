"""File modes: every file that holds a key or state is 0600 whatever the umask,
SQLite's -wal and -shm included; every directory keystrap makes is 0700."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from keystrap.oob.link import MediumLink
from keystrap.oob.medium import get_medium
from keystrap.oob.unix import UnixListener
from keystrap.store.controller_store import ControllerStore
from keystrap.store.keyfile import load_or_create_key_file, read_key_file
from keystrap.store.sqlite_repository import SqliteRepository

from .test_oob_capture import FLIGHT4, Recorded
from .test_safe_files import CONTROLLER, keystrap


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_every_key_and_state_file_is_private(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)  # the CLI processes below inherit it
    try:
        for command in (
            ["admin", "controller", "add", CONTROLLER, "--key-out", "sk.key"],
            ["admin", "order", "create", "--installer", "acme", "--controller", CONTROLLER,
             "--count", "2", "--out", "bundle.json"],
            ["install", "bundle.json", "--out", "nodes"],
            ["admin", "backup", "backup.sqlite"],
        ):  # fmt: skip
            done = keystrap(tmp_path, *command)
            assert done.returncode == 0, done.stderr
        data = tmp_path / "keystrap-data"
        repository = SqliteRepository(data / "sbs.sqlite", read_key_file(data / "sbs-master.key"))
        master, _ = load_or_create_key_file(tmp_path / "sbr-master.key", os.urandom)
        store = ControllerStore(tmp_path / "sbr.sqlite", master)
        try:
            repository.revoke_order(1)  # writes go to the -wal files
            store.set_counter("next_tid", 7)
            files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
            names = {p.name for p in files}
            for db in ("sbs.sqlite", "sbr.sqlite"):
                assert {f"{db}-wal", f"{db}-shm"} <= names
            assert {"sk.key", "bundle.json", "backup.sqlite", "sbr-master.key"} <= names
            assert len(list((tmp_path / "nodes").glob("*.json"))) == 2
            modes = {p.relative_to(tmp_path): stat.S_IMODE(p.stat().st_mode) for p in files}
            assert modes == dict.fromkeys(modes, 0o600)
        finally:
            store.close()
            repository.close()
    finally:
        os.umask(old)


def test_new_directories_are_private_and_existing_ones_left_alone(tmp_path: Path) -> None:
    """Every directory keystrap makes for keys, stores, node files, sockets and
    captures is 0700 even under umask 000, its parents too; a directory that was
    there keeps its mode."""
    existing = tmp_path / "shared"
    existing.mkdir()
    existing.chmod(0o755)
    old = os.umask(0o000)  # the CLI processes below inherit it
    try:
        store = ["--database", "state/db/sbs.sqlite", "--master-key", "keys/m/master.key"]
        for command in (
            ["admin", *store, "controller", "add", CONTROLLER, "--key-out", "shared/sk/sk.key"],
            ["admin", *store, "order", "create", "--installer", "acme", "--controller",
             CONTROLLER, "--count", "1", "--out", "bundles/acme/bundle.json"],
            ["install", "bundles/acme/bundle.json", "--out", "nodes/site/a"],
        ):  # fmt: skip
            done = keystrap(tmp_path, *command)
            assert done.returncode == 0, done.stderr
        medium = get_medium("raw")
        link = MediumLink(Recorded(), medium, medium, tmp_path / "captures" / "run")  # type: ignore[arg-type]
        asyncio.run(link.send(FLIGHT4))
        asyncio.run(listen_once(tmp_path / "run" / "oob" / "oob.sock"))
    finally:
        os.umask(old)
    made = [p for p in tmp_path.rglob("*") if p.is_dir() and p != existing]
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in made}
    assert set(modes) == {
        *("state", "state/db", "keys", "keys/m", "shared/sk", "bundles", "bundles/acme"),
        *("nodes", "nodes/site", "nodes/site/a", "captures", "captures/run", "run", "run/oob"),
    }
    assert modes == dict.fromkeys(modes, 0o700)
    assert stat.S_IMODE(existing.stat().st_mode) == 0o755


async def listen_once(path: Path) -> None:
    listener = UnixListener(path)
    await listener.start(lambda link: link.close())
    await listener.stop()


def test_captured_signals_are_private(tmp_path: Path) -> None:
    """A captured flight 4 read with the installer's IK gives RN_c, and so the
    new PSK: under umask 000 every capture is still 0600."""
    old = os.umask(0o000)
    try:
        for channel in ("qr", "raw"):
            medium = get_medium(channel)
            link = MediumLink(Recorded(), medium, medium, tmp_path / "captures")  # type: ignore[arg-type]
            asyncio.run(link.send(FLIGHT4))
    finally:
        os.umask(old)
    captures = list((tmp_path / "captures").iterdir())
    assert {p.suffix for p in captures} == {".png", ".bin"}
    assert {stat.S_IMODE(p.stat().st_mode) for p in captures} == {0o600}
