"""File modes: every file that holds a key or state is 0600 whatever the umask,
SQLite's -wal and -shm included."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from keystrap.store.controller_store import ControllerStore
from keystrap.store.keyfile import load_or_create_key_file, read_key_file
from keystrap.store.sqlite_repository import SqliteRepository

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
