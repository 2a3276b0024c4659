"""Backups: ``keystrap admin backup`` copies the live store while the server works
through 20 concurrent bootstraps; the copy restores into a new directory, and every
node active in it can bootstrap and be configured through the restored site.
``admin restore`` refuses a backup whose keys do not unwrap; ``admin check``
says what is wrong with a store."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import subprocess
from contextlib import closing
from dataclasses import replace
from pathlib import Path

from keystrap.config import ControllerConfig, load_config
from keystrap.services.configure import ConfigUpdate, configure_node
from keystrap.services.node_agent import bootstrap_node, start_coaps
from keystrap.store.keyfile import key_file_bytes
from keystrap.store.node_file import load_node_file, save_node_file
from keystrap_lab.processes import free_udp_port, keystrap_command
from keystrap_lab.site import Site

from .services_helpers import run
from .test_safe_files import CONTROLLER, keystrap, refused

NODES = 20


async def _backups_during(site: Site, work: asyncio.Future[list[bool]], into: Path) -> list[Path]:
    """Run ``admin backup`` again and again until ``work`` is done."""
    taken: list[Path] = []
    while not work.done():
        target = into / f"backup-{len(taken)}.sqlite"
        await asyncio.to_thread(site.admin, "backup", str(target))
        taken.append(target)
    return taken


def test_backup_during_bootstraps_restores_into_a_working_site(tmp_path: Path) -> None:
    async def scenario() -> None:
        site = Site(tmp_path / "site", channels=("raw", "raw"))
        await site.prepare()
        site.register_controller()
        nodes = site.enrol(NODES)
        await site.start()
        try:

            async def staggered(n: int, path: Path) -> bool:
                await asyncio.sleep(0.2 * n)
                return (await bootstrap_node(path, timeout=60, linger=1)).ok

            runs = [asyncio.ensure_future(staggered(n, p)) for n, p in enumerate(nodes)]
            await asyncio.wait(runs, return_when=asyncio.FIRST_COMPLETED)
            work = asyncio.gather(*runs)
            backups = await _backups_during(site, work, tmp_path)
            assert all(await work)
        finally:
            site.stop()

        # Restore a backup taken mid-way into a new site with the same master key.
        new = Site(tmp_path / "restored", channels=("raw", "raw"))
        await new.prepare()
        shutil.copy2(site.master_key, new.master_key)
        shutil.copy2(site.root / "data" / "controller-sk.key", new.root / "data")
        midway = [b for b in backups if 0 < _active_count(b) < NODES]
        assert midway, f"no backup was taken while bootstraps were under way ({len(backups)})"
        new.admin("restore", str(midway[0]))
        assert "integrity ok" in new.admin("check")
        with new.repository() as repository:
            active = {n.node_id for n in repository.list_nodes() if n.status == "active"}
            keys = dict(repository.unwrapped_node_keys())

        # Every node active in the backup still holds the key the restored store has;
        # moved to the new site, it bootstraps again and is configured through it.
        moved = []
        for path in nodes:
            node = load_node_file(path)
            if node.state.node_id in active:
                assert keys[node.state.node_id] == node.state.key
                copy = new.root / path.name
                save_node_file(copy, replace(node, oob=f"unix:{new.oob_socket}"))
                moved.append(copy)
        await new.start()
        try:
            again_restore = ("restore", str(midway[0]), "--force")
            busy = keystrap(new.root, "admin", "--config", str(new.server_config), *again_restore)
            assert refused(busy, "another server", "is running")
            again = await asyncio.gather(
                *(bootstrap_node(p, reinstall=True, timeout=60, linger=1) for p in moved)
            )
            assert [r.outcome for r in again] == ["confirmed"] * len(moved)
            config = load_config(ControllerConfig, new.controller_config, {})
            for path in moved:
                port = free_udp_port()
                serving = await start_coaps(path, "127.0.0.1", port)
                try:
                    update = ConfigUpdate()
                    update.set("name", path.stem)
                    node_id = load_node_file(path).state.node_id
                    settings = await configure_node(config, node_id, update, f"127.0.0.1:{port}")
                finally:
                    await serving.shutdown()
                assert settings["application"] == {"name": path.stem}
        finally:
            new.stop()

    run(scenario())


def _active_count(backup: Path) -> int:
    with closing(sqlite3.connect(f"file:{backup}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT COUNT(*) FROM nodes WHERE status='active'").fetchone()[0])


def test_restore_refuses_what_does_not_unwrap_and_check_says_what_is_wrong(
    tmp_path: Path,
) -> None:
    add = ("controller", "add", CONTROLLER, "--key-out", "k")
    assert keystrap(tmp_path, "admin", *add).returncode == 0
    order = ("order", "create", "--installer", "a", "--controller", CONTROLLER, "--count", "3")
    assert keystrap(tmp_path, "admin", *order, "--out", "b.json").returncode == 0
    assert keystrap(tmp_path, "admin", "backup", "good.sqlite").returncode == 0
    assert refused(keystrap(tmp_path, "admin", "backup", "good.sqlite"), "--force")

    # Into a directory whose master key is another one: refused, nothing written.
    other = tmp_path / "other"
    (other / "keystrap-data").mkdir(parents=True)
    key = other / "keystrap-data" / "sbs-master.key"
    key.write_bytes(key_file_bytes(b"\x01" * 16))
    key.chmod(0o600)
    done = keystrap(other, "admin", "restore", str(tmp_path / "good.sqlite"))
    assert refused(done, "backup", "good.sqlite refused", "do not unwrap", "sbs-master.key")
    assert not (other / "keystrap-data" / "sbs.sqlite").exists()

    # Onto an existing store: only with --force.
    data = tmp_path / "keystrap-data"
    assert refused(keystrap(tmp_path, "admin", "restore", "good.sqlite"), "--force")

    # check: a key that no longer unwraps is named, exit 2.
    with closing(sqlite3.connect(data / "sbs.sqlite")) as db, db:
        db.execute("UPDATE nodes SET key_wrapped=zeroblob(24) WHERE rowid=2")
    done = keystrap(tmp_path, "admin", "check")
    assert done.returncode == 2 and "1 problem(s)" in done.stderr
    assert "does not unwrap" in done.stdout and "3 enrolled" in done.stdout
    # check: a damaged page is found by SQLite's integrity check and listed.
    damaged = bytearray((tmp_path / "good.sqlite").read_bytes())
    damaged[4096 : 4096 + 400] = b"garbage!" * 50  # page 2, its header included
    (tmp_path / "damaged.sqlite").write_bytes(bytes(damaged))
    done = keystrap(tmp_path, "admin", "--database", "damaged.sqlite", "check")
    assert refused(done, "damaged.sqlite", "integrity check")
    assert "problem: " in done.stdout
    restored = keystrap(tmp_path, "admin", "restore", "good.sqlite", "--force")
    assert restored.returncode == 0, restored.stderr
    assert "integrity ok" in keystrap(tmp_path, "admin", "check").stdout


def test_backups_to_one_file_at_once_leave_one_whole_backup(tmp_path: Path) -> None:
    """Every backup copied into one fixed ``.FILE.partial``: two at once (a cron
    job and an operator) deleted and overwrote each other's copy, and each
    failed ("disk I/O error", "attempt to write a readonly database"). Now
    one writes the backup and the others are refused as for any existing file."""
    add = ("controller", "add", CONTROLLER, "--key-out", "k")
    assert keystrap(tmp_path, "admin", *add).returncode == 0
    order = ("order", "create", "--installer", "a", "--controller", CONTROLLER)
    done = keystrap(tmp_path, "admin", *order, "--count", "40000", "--out", "b.json")
    assert done.returncode == 0, done.stderr
    # Deterministic: another backup's copy under way is left alone.
    under_way = tmp_path / ".bk.sqlite.partial"
    under_way.write_bytes(b"another backup's copy, being written")
    assert keystrap(tmp_path, "admin", "backup", "bk.sqlite").returncode == 0
    assert under_way.read_bytes() == b"another backup's copy, being written"
    under_way.unlink()
    (tmp_path / "bk.sqlite").unlink()
    for force in ((), ("--force",)):
        backups = [
            subprocess.Popen(
                keystrap_command("admin", "backup", "bk.sqlite", *force),
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        outputs = [b.communicate() for b in backups]
        results = [
            subprocess.CompletedProcess(b.args, b.returncode, *output)
            for b, output in zip(backups, outputs, strict=True)
        ]
        written = [r for r in results if r.returncode == 0]
        assert len(written) == (4 if force else 1), [r.stderr for r in results]
        assert all(refused(r, "bk.sqlite already exists") for r in results if r.returncode)
        check = keystrap(tmp_path, "admin", "--database", "bk.sqlite", "check")
        assert check.returncode == 0 and "40000 enrolled" in check.stdout, check.stderr
        assert sorted(p.name for p in tmp_path.glob(".bk*")) == []
