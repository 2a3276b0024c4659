"""The revocation feed (flights 9/10) between real server and controller
processes on a bad day: a server restored from an older backup, a controller
state whose cursor a hand edit spoilt, an answer from something that is not our
server."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import aiocoap
import aiocoap.resource
import pytest

from keystrap.ids import eui64
from keystrap.services.node_agent import bootstrap_node
from keystrap.store.keyfile import read_key_file
from keystrap.store.node_file import load_node_file
from keystrap.wire import Flight9, Flight10
from keystrap_lab.processes import keystrap_command, wait_for_log
from keystrap_lab.site import Site

from .services_helpers import run
from .test_safe_files import refused


def set_revocation_cursor(site: Site, sql_value: str) -> None:
    with closing(sqlite3.connect(site.root / "data" / "sbr.sqlite")) as db:
        db.execute(f"INSERT OR REPLACE INTO meta VALUES ('revocations_seen', {sql_value})")
        db.commit()


def revocation_cursor(site: Site) -> int:
    state = site.root / "data" / "sbr.sqlite"
    with closing(sqlite3.connect(f"file:{state}?mode=ro", uri=True)) as db:
        row = db.execute("SELECT value FROM meta WHERE name='revocations_seen'").fetchone()
    return 0 if row is None else int(row[0])


async def cursor_becomes(site: Site, value: int) -> None:
    for _ in range(150):
        if revocation_cursor(site) == value:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the controller's cursor stayed at {revocation_cursor(site)}")


async def feed_site(tmp_path: Path, count: int) -> tuple[Site, list[Path], list[str]]:
    """A started site whose controller polls the feed every second, with ``count``
    nodes enrolled: their files and IDs."""
    site = Site(tmp_path / "site", channels=("raw", "raw"), revocation_poll=1)
    await site.prepare()
    site.register_controller()
    nodes = site.enrol(count)
    await site.start()
    return site, nodes, [eui64(load_node_file(path).state.node_id) for path in nodes]


def test_a_server_restored_from_an_older_backup_loses_no_new_revocation(tmp_path: Path) -> None:
    """The store is lost and restored from an older backup: the revocations made
    after it are gone, and the restored store numbers new ones from its last
    again. The controller, past them, must ask from there, or it never drops the
    PSK of a node revoked after the restore."""

    async def scenario() -> None:
        site, nodes, ids = await feed_site(tmp_path, 3)
        assert site.controller is not None
        try:
            assert (await bootstrap_node(nodes[2], timeout=30, linger=1)).ok
            site.admin("backup", str(tmp_path / "old.sqlite"))
            site.admin("revoke", ids[0])
            site.admin("revoke", ids[1])
            await cursor_becomes(site, 2)

            assert site.server is not None
            site.server.stop()
            for lost in site.database.parent.glob(f"{site.database.name}*"):
                lost.unlink()
            site.admin("restore", str(tmp_path / "old.sqlite"))
            since = site.controller.log.stat().st_size
            await site.start_server()
            site.admin("revoke", ids[2])  # number 1 again, in the restored store
            await wait_for_log(site.controller, f"node={ids[2]} revoked by the server", since, 15)
            assert f"{ids[2]}  revoked" in site.controller_cli("nodes")
            assert "the server went back from revocation 2 to 0" in site.controller.log_text()
            assert revocation_cursor(site) == 1
        finally:
            site.stop()

    run(scenario())


@pytest.mark.parametrize("sql_value", ["'abc'", "-1", "4294967296", "1.5", "x'00'"])
def test_a_cursor_the_feed_cannot_use_stops_the_controllers_start(
    tmp_path: Path, sql_value: str
) -> None:
    """Text, a fraction, a negative number or one flight 9 cannot carry: the
    controller had started, and its revocation feed ended at its first poll
    without a word (or, for 1.5, asked after 1), so no revocation ever reached it."""
    site = Site(tmp_path / "site", channels=("raw", "raw"), revocation_poll=1)

    async def first_start() -> None:
        await site.prepare()
        site.register_controller()
        controller = await site.start_controller()
        await wait_for_log(controller, "open transaction(s)")  # its state is made
        controller.stop()

    run(first_start())
    set_revocation_cursor(site, sql_value)
    state = (site.root / "data" / "sbr.sqlite").read_bytes()
    done = subprocess.run(
        keystrap_command("controller", "--config", str(site.controller_config)),
        cwd=site.root,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert refused(
        done, "sbr.sqlite: revocations_seen is", "not a whole number from 0 to 4294967295"
    )
    assert "Traceback" not in done.stderr
    assert (site.root / "data" / "sbr.sqlite").read_bytes() == state


def test_the_feed_outlives_a_state_it_cannot_read_and_catches_up(tmp_path: Path) -> None:
    """A poll whose state read fails (here a cursor spoilt while the controller
    runs) is one line, and the next poll after the state is mended applies the
    revocation: the feed had ended at the first such failure, unlogged, and no
    revocation reached the controller again until it was restarted."""

    async def scenario() -> None:
        site, nodes, (nid,) = await feed_site(tmp_path, 1)
        assert site.controller is not None
        try:
            assert (await bootstrap_node(nodes[0], timeout=30, linger=1)).ok
            set_revocation_cursor(site, "'spoilt'")
            since = site.controller.log.stat().st_size
            site.admin("revoke", nid)
            await wait_for_log(site.controller, "revocations_seen is 'spoilt'", since, 15)
            set_revocation_cursor(site, "0")
            await wait_for_log(site.controller, f"node={nid} revoked by the server", since, 15)
            assert f"{nid}  revoked" in site.controller_cli("nodes")
            assert revocation_cursor(site) == 1
            warnings = site.controller.log_text()[since:].splitlines()
            assert all("Traceback" not in line for line in warnings)
        finally:
            site.stop()

    run(scenario())


class Refusing(aiocoap.resource.Resource):  # type: ignore[misc]  # aiocoap is untyped
    """Whatever answers on the server's address instead of it: 4.01 with any text."""

    def __init__(self, text: bytes) -> None:
        super().__init__()
        self.text = text

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(code=aiocoap.UNAUTHORIZED, payload=self.text)


def test_a_refusals_text_is_logged_as_one_escaped_line(tmp_path: Path) -> None:
    """A newline in a refusal's text wrote a log line of the sender's choosing,
    an escape sequence reached the operator's terminal, and any length was kept."""
    forged = b"no\n02:00:00 sbr INFO node=02:00:00:00:00:00:00:01 revoked\x1b[31m" + b"x" * 900

    async def scenario() -> None:
        site = Site(tmp_path / "site", channels=("raw", "raw"), revocation_poll=1)
        await site.prepare()
        site.register_controller()
        root = aiocoap.resource.Site()
        root.add_resource([], Refusing(forged))
        impostor = await aiocoap.Context.create_server_context(
            root, bind=("127.0.0.1", site.server_port)
        )
        try:
            controller = await site.start_controller()
            await wait_for_log(controller, "revocation feed: refused: 4.01 no", 0, 15)
            await asyncio.sleep(1.5)  # another poll, refused alike: not logged again
            log = controller.log_text()
        finally:
            site.stop()
            await impostor.shutdown()
        (refusal,) = [line for line in log.splitlines() if "refused: 4.01" in line]
        assert "x...; will ask again" in refusal and len(refusal) < 350
        assert "no\\n02:00:00 sbr INFO node=02:00:00:00:00:00:00:01 revoked\\x1b[31m" in refusal
        assert "\x1b" not in log
        assert not [line for line in log.splitlines() if line.startswith("02:00:00 sbr")]

    run(scenario())


def test_a_cursor_past_the_end_of_a_store_never_restored_asks_from_the_start(
    tmp_path: Path,
) -> None:
    """A controller whose cursor came from another store (moved to a new site, or
    a store restored by copying a file) is past this one's end: each of its
    revocations may be unseen, so none may be skipped."""

    async def scenario() -> None:
        site, nodes, (nid,) = await feed_site(tmp_path, 1)
        assert site.controller is not None
        try:
            assert (await bootstrap_node(nodes[0], timeout=30, linger=1)).ok
            site.controller.stop()
            set_revocation_cursor(site, "50")
            site.admin("revoke", nid)  # number 1 in this store
            await site.start_controller()
            await wait_for_log(site.controller, f"node={nid} revoked by the server", 0, 15)
            assert "the server went back from revocation 50 to 0" in site.controller.log_text()
            assert f"{nid}  revoked" in site.controller_cli("nodes")
            assert revocation_cursor(site) == 1
        finally:
            site.stop()

    run(scenario())


class OtherSite(aiocoap.resource.Resource):  # type: ignore[misc]  # aiocoap is untyped
    """A server that answers flight 9 under its own ``SK_cs`` (another site's), or,
    once ``key`` is set to the controller's, as this site's server would."""

    def __init__(self, key: bytes) -> None:
        super().__init__()
        self.key = key

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        controller_id, _, challenge = Flight9.clear_fields(request.payload)
        answer = Flight10(bytes(challenge), 0, ()).seal(self.key, bytes(controller_id))
        return aiocoap.Message(code=aiocoap.CHANGED, payload=answer)


def test_another_sites_answers_are_one_warning_until_the_feed_works_again(
    tmp_path: Path,
) -> None:
    """Every poll answered under another key was a warning line: 720 an hour."""

    async def scenario() -> None:
        site = Site(tmp_path / "site", channels=("raw", "raw"), revocation_poll=1)
        await site.prepare()
        site.register_controller()
        resource = OtherSite(secrets.token_bytes(16))
        root = aiocoap.resource.Site()
        root.add_resource([], resource)
        impostor = await aiocoap.Context.create_server_context(
            root, bind=("127.0.0.1", site.server_port)
        )
        try:
            controller = await site.start_controller()
            await wait_for_log(controller, "revocation list failed authentication", 0, 15)
            await asyncio.sleep(3.5)  # three more polls, refused alike
            resource.key = read_key_file(site.root / "data" / "controller-sk.key")
            await wait_for_log(controller, "revocation feed: answered again", 0, 15)
            log = controller.log_text()
        finally:
            site.stop()
            await impostor.shutdown()
        warnings = [line for line in log.splitlines() if " WARNING " in line]
        assert len(warnings) == 1, warnings
        assert "revocation list failed authentication); will ask again, quietly" in warnings[0]

    run(scenario())


def test_a_store_restored_over_the_live_one_numbers_new_revocations_after_its_own(
    tmp_path: Path,
) -> None:
    """Revocations made while the restored server is still down took the numbers
    the lost ones had: as many as the controller was past the backup's last were
    skipped (here both), since it asked after a number the store had reached."""

    async def scenario() -> None:
        site, nodes, ids = await feed_site(tmp_path, 4)
        assert site.controller is not None and site.server is not None
        try:
            runs = [bootstrap_node(path, timeout=30, linger=1) for path in nodes[2:]]
            assert all(result.ok for result in await asyncio.gather(*runs))
            site.admin("backup", str(tmp_path / "old.sqlite"))
            site.admin("revoke", ids[0])
            site.admin("revoke", ids[1])
            await cursor_becomes(site, 2)

            site.server.stop()
            site.admin("restore", str(tmp_path / "old.sqlite"), "--force")
            site.admin("revoke", ids[2])
            site.admin("revoke", ids[3])
            await site.start_server()
            await cursor_becomes(site, 4)
            listed = site.controller_cli("nodes")
            assert f"{ids[2]}  revoked" in listed and f"{ids[3]}  revoked" in listed
        finally:
            site.stop()

    run(scenario())


def test_a_revocation_numbered_beyond_flight_10_is_one_line_and_none_is_skipped(
    tmp_path: Path,
) -> None:
    """A revocation numbered 2^33 by hand in the server's store: every flight 9
    (and every request sharing its commit) got 5.03 "store unavailable" and the
    server logged an ERROR each time, for every controller. Now the revocation
    before it is applied, the server logs it once, the controller warns once and
    keeps its cursor before it, ``admin check`` names it, and once it is
    renumbered the controller applies it."""

    async def scenario() -> None:
        site, nodes, ids = await feed_site(tmp_path, 2)
        assert site.controller is not None and site.server is not None
        try:
            for node in nodes:
                assert (await bootstrap_node(node, timeout=30, linger=1)).ok
            site.admin("revoke", ids[0])
            await cursor_becomes(site, 1)
            since = site.server.log.stat().st_size, site.controller.log.stat().st_size
            with closing(sqlite3.connect(site.database)) as db:
                revoked = load_node_file(nodes[1]).state.node_id
                db.execute("UPDATE nodes SET status='revoked' WHERE id=?", (revoked,))
                db.execute("INSERT INTO revocations VALUES (?, ?, 0)", (2**33, revoked))
                db.commit()
            await wait_for_log(site.controller, "revocation 8589934592 is above 2^32-1", since[1])
            await asyncio.sleep(3)  # three more polls
            server_log = site.server.log_text()[since[0] :]
            errors = [line for line in server_log.splitlines() if " ERROR " in line]
            assert len(errors) == 1 and f"revocation 8589934592 (node={ids[1]})" in errors[0]
            controller_log = site.controller.log_text()[since[1] :]
            assert controller_log.count(" WARNING ") == 1
            assert revocation_cursor(site) == 1
            assert f"{ids[1]}  active" in site.controller_cli("nodes")  # not told: not skipped

            check = subprocess.run(
                keystrap_command("admin", "--config", str(site.server_config), "check"),
                cwd=site.root,
                capture_output=True,
                text=True,
                check=False,
            )
            assert check.returncode == 2
            assert f"problem: revocation 8589934592 (node {ids[1]}) is numbered" in check.stdout

            with closing(sqlite3.connect(site.database)) as db:
                db.execute("UPDATE revocations SET seq=2 WHERE seq=?", (2**33,))
                db.commit()
            await cursor_becomes(site, 2)
            assert f"{ids[1]}  revoked" in site.controller_cli("nodes")
            assert "Traceback" not in site.server.log_text() + site.controller.log_text()
        finally:
            site.stop()

    run(scenario())
