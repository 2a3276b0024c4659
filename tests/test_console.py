"""The console's rules, through its ASGI app (no browser): accounts, sessions, CSRF,
one-time bundles, paging and the node history's plain words."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.testclient import TestClient
from starlette.types import ASGIApp

from keystrap.cli.main import main
from keystrap.console import app as console_app
from keystrap.console import history, queries
from keystrap.console.app import HEADERS, MAX_BODY, ConsoleStore, build_app
from keystrap.console.sessions import FAILURES_ALLOWED
from keystrap.console.users import Users, check_password, hash_password
from keystrap.enrolment import create_order
from keystrap.ids import eui64
from keystrap.protocol import (
    BootstrapGranted,
    BootstrapRefused,
    NodeActivated,
    TransactionRecord,
    TransactionStatus,
)
from keystrap.store.activity import ActivityLog
from keystrap.store.errors import StoreError
from keystrap.store.keyfile import read_key_file
from keystrap.store.sqlite_repository import ControllerInfo, SqliteRepository
from keystrap_lab.processes import free_udp_port, keystrap_command

CONTROLLER = bytes.fromhex("02000000000000c0")
PASSWORD = "a long enough password"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConsoleStore]:
    repository = SqliteRepository(tmp_path / "sbs.sqlite", secrets.token_bytes(16))
    repository.add_controller(ControllerInfo(CONTROLLER, "demo", "127.0.0.1", 5684), bytes(16))
    users = Users(repository.path)
    users.add("alice", PASSWORD)
    console = ConsoleStore(repository, users, window=120, secure_cookie=False)
    yield console
    console.close()


def logged_in(store: ConsoleStore) -> tuple[TestClient, str]:
    client = TestClient(build_app(store))
    answer = client.post("/login", data={"user": "alice", "password": PASSWORD})
    assert answer.status_code == 200
    token = re.search(r'name="csrf" value="([^"]+)"', answer.text)
    assert token is not None
    return client, token.group(1)


def test_passwords_are_scrypt_hashes() -> None:
    stored = hash_password(PASSWORD)
    assert stored.startswith("scrypt$16384$8$1$") and PASSWORD not in stored
    assert check_password(PASSWORD, stored)
    assert not check_password(PASSWORD + "x", stored)
    assert hash_password(PASSWORD) != stored  # salted


def test_user_rules(tmp_path: Path) -> None:
    users = Users(tmp_path / "sbs.sqlite")
    with pytest.raises(ValueError, match="at least"):
        users.add("bob", "short")
    with pytest.raises(ValueError, match="user name"):
        users.add("bob smith", PASSWORD)
    users.add("bob", PASSWORD)
    with pytest.raises(StoreError, match="already exists"):
        users.add("bob", PASSWORD)
    assert users.authenticate("bob", PASSWORD)
    assert not users.authenticate("bob", "wrong password!")
    assert not users.authenticate("nobody", PASSWORD)
    users.remove("bob")
    assert not users.authenticate("bob", PASSWORD)


def test_admin_user_add_reads_the_password_from_stdin(tmp_path: Path) -> None:
    db, key = tmp_path / "sbs.sqlite", tmp_path / "master.key"
    admin = ["admin", "--database", str(db), "--master-key", str(key)]
    site = keystrap_command(*admin, "controller", "add", eui64(CONTROLLER), "--key-out")
    subprocess.run([*site, str(tmp_path / "sk.key")], check=True, capture_output=True)
    base = [*admin, "user"]
    added = subprocess.run(
        keystrap_command(*base, "add", "carol"),
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    short = subprocess.run(
        keystrap_command(*base, "add", "dave"), input="short\n", capture_output=True, text=True
    )
    assert short.returncode == 2 and "at least" in short.stderr
    assert "Traceback" not in short.stderr
    assert Users(db).authenticate("carol", PASSWORD)
    assert PASSWORD not in db.read_bytes().decode("latin-1")


@pytest.mark.parametrize(
    ("host", "warned"),
    [("", True), ("0.0.0.0", True), ("127.0.0.1", False)],
)
def test_plain_http_beyond_loopback_is_warned_of(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    host: str,
    warned: bool,
) -> None:
    """``--host ""`` binds every address, as 0.0.0.0 does, and gets the same
    warning: the login's password would cross the network in the clear."""

    def serve_nothing(server: uvicorn.Server, sockets: list[socket.socket]) -> None:
        for listening in sockets:
            listening.close()

    monkeypatch.setattr(uvicorn.Server, "run", serve_nothing)
    store = ["--database", str(tmp_path / "sbs.sqlite"), "--master-key", str(tmp_path / "m.key")]
    key_out = ["--key-out", str(tmp_path / "sk.key")]
    assert main(["admin", *store, "controller", "add", eui64(CONTROLLER), *key_out]) == 0
    port = str(free_udp_port())
    assert main(["console", *store, "--host", host, "--port", port]) == 0
    captured = capsys.readouterr()
    assert f"console on http://{host or '0.0.0.0'}:{port}/" in captured.out
    if warned:
        assert captured.err.count("\n") == 1
        assert "warning: plain HTTP on every address" in captured.err
        assert "--certfile" in captured.err
    else:
        assert captured.err == ""


def test_nothing_without_a_login(store: ConsoleStore) -> None:
    client = TestClient(build_app(store))
    for path in ("/", "/nodes", "/orders", "/controllers", "/live", "/live/events"):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 401 and "nodes" not in answer.text.lower(), path
    page = client.get("/nodes", headers={"accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login"
    sneaky = client.post("/orders", data={"installer": "x", "count": "1"})
    assert sneaky.status_code == 401
    assert store.repository.list_orders() == []
    assert client.get("/login").status_code == 200


def test_every_form_needs_its_csrf_token(store: ConsoleStore) -> None:
    client, token = logged_in(store)
    forms = [
        "/orders",
        "/orders/1/remove",
        "/installers/acme/remove",
        "/controllers",
        "/controllers/02:00:00:00:00:00:00:c0/remove",
        "/nodes/02:00:00:00:00:00:00:01/revoke",
        "/nodes/02:00:00:00:00:00:00:01/re-enrol",
        "/controllers/02:00:00:00:00:00:00:c0/rotate",
        "/logout",
    ]
    for path in forms:
        for sent in ({}, {"csrf": "forged"}):
            answer = client.post(path, data={"installer": "x", "count": "1", **sent})
            assert answer.status_code == 403, path
    assert store.repository.list_orders() == []
    assert len(store.repository.list_controllers()) == 1
    html = client.get("/orders").text
    posts = html.count('method="post"')
    assert posts >= 2 and html.count(f'name="csrf" value="{token}"') == posts


def test_login_is_rate_limited(store: ConsoleStore) -> None:
    client = TestClient(build_app(store))
    for _ in range(FAILURES_ALLOWED):
        answer = client.post("/login", data={"user": "alice", "password": "guess guess"})
        assert answer.status_code == 401
    blocked = client.post("/login", data={"user": "alice", "password": PASSWORD})
    assert blocked.status_code == 429 and "keystrap_session" not in blocked.headers.get(
        "set-cookie", ""
    )


LOGIN_SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/login",
    "raw_path": b"/login",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
    "client": ("192.0.2.7", 40000),
    "server": ("127.0.0.1", 8080),
}


async def post_login(app: Starlette, password: str) -> int:
    """The status of one login through the ASGI interface itself, so that many
    can be in flight at once (a TestClient request runs to its end)."""
    body = urlencode({"user": "alice", "password": password}).encode()
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    started: list[int] = []

    async def receive() -> dict[str, object]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.append(message["status"])

    await app(LOGIN_SCOPE, receive, send)
    return started[0]


def test_login_rate_limit_holds_for_guesses_sent_at_once(store: ConsoleStore) -> None:
    """Each guess is checked in a thread (50 ms of scrypt); a failure counted only
    after that let 100 guesses sent together all through, not 5."""
    app = build_app(store)

    async def guesses() -> list[int]:
        return await asyncio.gather(*(post_login(app, f"guess {n:04}") for n in range(20)))

    codes = asyncio.run(guesses())
    assert sorted(codes) == [401] * FAILURES_ALLOWED + [429] * (20 - FAILURES_ALLOWED)
    assert asyncio.run(post_login(app, PASSWORD)) == 429


def test_cookie_flags_and_logout(store: ConsoleStore) -> None:
    client = TestClient(build_app(store))
    answer = client.post(
        "/login", data={"user": "alice", "password": PASSWORD}, follow_redirects=False
    )
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/").text)
    assert token is not None
    client.post("/logout", data={"csrf": token.group(1)})
    assert client.get("/nodes").status_code == 401


def test_bundle_is_offered_once_and_no_page_shows_a_key(store: ConsoleStore) -> None:
    client, token = logged_in(store)
    created = client.post(
        "/orders",
        data={
            "csrf": token,
            "installer": "acme",
            "controller": eui64(CONTROLLER),
            "count": "3",
            "key_mode": "shared",
            "oob": "unix:oob.sock",
        },
    )
    link = re.search(r'href="(/bundles/[^"]+)"', created.text)
    assert link is not None
    bundle = client.get(link.group(1))
    assert bundle.status_code == 200 and "attachment" in bundle.headers["content-disposition"]
    doc = json.loads(bundle.content)
    assert len(doc["nodes"]) == 3
    assert client.get(link.group(1)).status_code == 410
    ik = doc["shared_key"]
    pages = ["/", "/nodes", "/orders", "/controllers", "/live"]
    pages += [f"/nodes/{node['id']}" for node in doc["nodes"]]
    for path in pages:
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert ik not in answer.text.lower() and ik.upper() not in answer.text, path


def test_order_remove_and_errors_are_pages_not_tracebacks(store: ConsoleStore) -> None:
    client, token = logged_in(store)
    answer = client.post("/orders/99/remove", data={"csrf": token})
    assert answer.status_code == 400 and "no order 99" in answer.text
    answer = client.post(
        "/orders", data={"csrf": token, "installer": "x", "controller": "nonsense", "count": "1"}
    )
    assert answer.status_code == 400 and "EUI-64" in answer.text
    assert client.get("/nodes/not-an-id").status_code == 400


def enrol(repository: SqliteRepository, start: int, count: int, installer: str) -> list[bytes]:
    ids = [(0x0200000000000000 + n).to_bytes(8, "big") for n in range(start, start + count)]
    create_order(repository, installer, CONTROLLER, ids, oob="unix:x")
    return ids


def test_nodes_are_paged_by_key_and_filtered(store: ConsoleStore) -> None:
    first = enrol(store.repository, 0, 120, "acme")
    enrol(store.repository, 120, 30, "globex")
    store.repository.revoke(first[5])
    db = store.db
    seen: list[bytes] = []
    after = b""
    while page := queries.page_nodes(db, queries.NodeFilter(installer="acme"), after):
        seen += [row.node_id for row in page]
        after = page[-1].node_id
    assert seen == sorted(first)
    revoked = queries.page_nodes(db, queries.NodeFilter(state="revoked"))
    assert [row.node_id for row in revoked] == [first[5]]
    search = queries.page_nodes(db, queries.NodeFilter(search=eui64(first[7])))
    assert [row.node_id for row in search] == [first[7]]
    prefix = queries.page_nodes(db, queries.NodeFilter(search="02:00:00:00:00:00:00:1"))
    assert [row.node_id[-1] for row in prefix] == list(range(0x10, 0x20))
    board = queries.dashboard(db, 0.0, 120)
    assert board.states == {"enrolled": 149, "bootstrapping": 0, "active": 0, "revoked": 1}
    store.repository.remove_order(2)  # the counts follow every write, whoever makes it
    board = queries.dashboard(db, 0.0, 120)
    assert board.states == {"enrolled": 119, "bootstrapping": 0, "active": 0, "revoked": 1}


def test_history_tells_each_attempt_in_plain_words(store: ConsoleStore) -> None:
    node = enrol(store.repository, 0, 1, "acme")[0]
    log = ActivityLog(store.repository.path)
    log.record(BootstrapGranted(node, CONTROLLER, 1), 100.0)
    log.record(BootstrapRefused(node, CONTROLLER, 2, 2, "node revoked"), 200.0)
    log.record(BootstrapGranted(node, CONTROLLER, 3), 300.0)
    log.record(NodeActivated(node, CONTROLLER, 3), 301.0)
    log.close()
    rows = [
        (e.at, e.controller_id, e.tid, e.flight, e.outcome, e.cause)
        for e in queries.node_log(store.db, node)
    ]
    assert len(rows) == 4
    granted = [(CONTROLLER, 1, "pending", 100), (CONTROLLER, 3, "confirmed", 300)]
    tries = history.attempts(rows, granted, now=1000.0, window=120)
    assert [(a.tid, a.outcome) for a in tries] == [(3, "confirmed"), (2, "failed"), (1, "failed")]
    assert tries[1].cause == (
        "flight 2 (key request) refused: the node is revoked; re-enrol it to let it bootstrap again"
    )
    assert "initial key does not match the order" in tries[2].cause
    recent = history.attempts(rows[:1], granted[:1], now=150.0, window=120)
    assert recent[0].outcome == "in progress"


def test_the_logs_read_indexes_are_the_consoles(tmp_path: Path) -> None:
    """The server only appends to its activity log; reading it by node and by time
    is the console's, which adds the indexes for it (docs/performance.md §3)."""
    path = tmp_path / "sbs.sqlite"
    SqliteRepository(path, secrets.token_bytes(16)).close()
    log = ActivityLog(path)
    node = bytes.fromhex("0200000000000001")
    log.record(BootstrapGranted(node, CONTROLLER, 1), 100.0)
    log.close()

    def log_indexes(db: sqlite3.Connection) -> set[str]:
        rows = db.execute(
            "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='bootstrap_log'"
        )
        return {name for (name,) in rows}

    with contextlib.closing(sqlite3.connect(path)) as db:
        assert log_indexes(db) == set()
    db = queries.open_store(path)
    try:
        assert log_indexes(db) == {"bootstrap_log_by_node", "bootstrap_log_by_time"}
        plan = " ".join(
            str(row[-1])
            for row in db.execute(
                "EXPLAIN QUERY PLAN SELECT seq FROM bootstrap_log WHERE node_id = ? ORDER BY seq",
                (node,),
            )
        )
        assert "bootstrap_log_by_node" in plan
        assert [e.tid for e in queries.node_log(db, node)] == [1]
    finally:
        db.close()


OLD_LOG_TABLE = """CREATE TABLE bootstrap_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, node_id BLOB NOT NULL,
    controller_id BLOB NOT NULL, tid INTEGER NOT NULL, flight INTEGER NOT NULL,
    outcome TEXT NOT NULL, cause TEXT NOT NULL)"""


@pytest.mark.parametrize("made_before", [False, True], ids=["new site", "log made earlier"])
def test_the_logs_seq_only_grows_and_the_live_feed_sees_every_row(
    tmp_path: Path, made_before: bool
) -> None:
    """The log's ``seq`` is the rowid, without AUTOINCREMENT on a new site (rows
    are never deleted); a log made with it keeps it. Either way the console's
    live feed, which reads ``seq > last seen``, sees each row once, in order,
    across batches and reopenings."""
    path = tmp_path / "sbs.sqlite"
    SqliteRepository(path, secrets.token_bytes(16)).close()
    if made_before:
        with contextlib.closing(sqlite3.connect(path)) as old:
            old.execute(OLD_LOG_TABLE)
    node = bytes.fromhex("0200000000000001")
    seen: list[int] = []
    for batch in range(3):
        log = ActivityLog(path)
        for tid in range(batch * 4, batch * 4 + 4):
            log.record(BootstrapGranted(node, CONTROLLER, tid), 100.0 + tid)
            if tid % 2:
                log.flush()
        log.close()
        db = queries.open_store(path)
        try:
            seen += [row.seq for row in queries.log_after(db, seen[-1] if seen else 0)]
            assert queries.last_seq(db) == seen[-1]
        finally:
            db.close()
    assert seen == sorted(set(seen)) and len(seen) == 12
    with contextlib.closing(sqlite3.connect(path)) as db:
        (table,) = db.execute("SELECT sql FROM sqlite_master WHERE name='bootstrap_log'").fetchone()
    assert ("AUTOINCREMENT" in table) is made_before


def test_re_enrol_a_revoked_node_and_rotate_a_controller_key(
    store: ConsoleStore, tmp_path: Path
) -> None:
    client, token = logged_in(store)
    node = enrol(store.repository, 0, 1, "acme")[0]
    refused = client.post(f"/nodes/{eui64(node)}/re-enrol", data={"csrf": token})
    assert refused.status_code == 400 and "revoke it first" in refused.text
    store.repository.revoke(node)
    page = client.post(f"/nodes/{eui64(node)}/re-enrol", data={"csrf": token, "oob": "unix:x"})
    link = re.search(r'href="(/bundles/[^"]+)"', page.text)
    assert link is not None
    doc = json.loads(client.get(link.group(1)).content)
    assert [n["id"] for n in doc["nodes"]] == [eui64(node)]
    assert queries.page_nodes(store.db, queries.NodeFilter(state="enrolled"))[0].node_id == node

    old_key = store.repository.controller_keys()[CONTROLLER]
    key_out = tmp_path / "new-sk.key"
    rotate = f"/controllers/{eui64(CONTROLLER)}/rotate"
    assert client.post(rotate, data={"key_out": str(key_out)}).status_code == 403
    client.post(rotate, data={"csrf": token, "key_out": str(key_out)})
    new_key = store.repository.controller_keys()[CONTROLLER]
    assert new_key != old_key and read_key_file(key_out) == new_key
    assert key_out.stat().st_mode & 0o777 == 0o600
    again = client.post(rotate, data={"csrf": token, "key_out": str(key_out)})
    assert again.status_code == 400 and read_key_file(key_out) == new_key
    listing = client.get("/controllers").text
    assert new_key.hex() not in listing and old_key.hex() not in listing


def test_a_controller_with_unfinished_bootstraps_keeps_its_key(
    store: ConsoleStore, tmp_path: Path
) -> None:
    """Counted in the rotation's own transaction (tests/test_store.py races it),
    and told as a page: the console has no --force."""
    client, token = logged_in(store)
    node = enrol(store.repository, 0, 1, "acme")[0]
    store.repository.add_transaction(
        TransactionRecord(
            CONTROLLER, 1, node, b"r", b"g", bytes(16), bytes(16), TransactionStatus.PENDING, 0
        )
    )
    old_key = store.repository.controller_keys()[CONTROLLER]
    key_out = tmp_path / "new-sk.key"
    rotate = f"/controllers/{eui64(CONTROLLER)}/rotate"
    answer = client.post(rotate, data={"csrf": token, "key_out": str(key_out)})
    assert answer.status_code == 400 and "1 unfinished bootstrap(s)" in answer.text
    assert "let them finish first" in answer.text
    assert store.repository.controller_keys() == {CONTROLLER: old_key}
    assert not key_out.exists()


def test_a_form_field_with_a_control_character_is_refused(
    store: ConsoleStore, tmp_path: Path
) -> None:
    """As on the command line: a stored name would be printed by the admin listings."""
    client, token = logged_in(store)
    key_out = tmp_path / "c1.key"
    new = {"csrf": token, "id": "02:00:00:00:00:00:00:c1", "key_out": str(key_out)}
    for field, value in (("name", "x\n02:00:00:00:00:00:00:c9 fake"), ("host", "h\x1b[2J")):
        answer = client.post("/controllers", data={**new, field: value})
        assert answer.status_code == 400 and f"{field} must be printable text" in answer.text
    order = {"csrf": token, "controller": eui64(CONTROLLER), "count": "1"}
    answer = client.post("/orders", data={**order, "installer": "ac\x1bme"})
    assert answer.status_code == 400 and "installer must be printable text" in answer.text
    assert [c.name for c in store.repository.list_controllers()] == ["demo"]
    assert store.repository.list_installers() == [] and not key_out.exists()


def test_a_request_body_is_bounded_before_any_login(store: ConsoleStore) -> None:
    """Starlette's form parser alone keeps up to 1,000 fields of 1 MiB in memory
    (and spools file parts of any size to disk): /login, which reads its form
    before anyone has logged in, took about a gigabyte for one request."""
    client = TestClient(build_app(store))
    field = "a" * (1024 * 1024 - 100)
    declared = client.post("/login", content="&".join(f"f{n}={field}" for n in range(3)))
    assert declared.status_code == 413

    def chunked() -> Iterator[bytes]:  # no Content-Length to judge it by
        for n in range(3):
            yield f"f{n}={field}&".encode()

    headers = {"content-type": "application/x-www-form-urlencoded"}
    streamed = client.post("/login", content=chunked(), headers=headers)
    assert streamed.status_code == 413
    upload = client.post("/login", files={"user": ("user.txt", b"x" * 2 * 1024 * 1024)})
    assert upload.status_code == 413
    small = client.post("/login", data={"user": "alice", "password": PASSWORD})
    assert small.status_code == 200


def test_every_answer_carries_the_security_headers(
    store: ConsoleStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pages had them; what Starlette answers itself did not: the 413 of a
    body sent without a length, the 400 of a form it cannot parse, 404, 405, 500."""

    def broken(*args: object) -> None:
        raise RuntimeError("a bug in a page")

    client, _ = logged_in(store)
    client = TestClient(client.app, raise_server_exceptions=False, cookies=client.cookies)
    monkeypatch.setattr(queries, "dashboard", broken)

    def chunked() -> Iterator[bytes]:
        for n in range(3):
            yield f"f{n}={'a' * MAX_BODY}&".encode()

    form = {"content-type": "application/x-www-form-urlencoded"}
    answers = {
        413: client.post("/login", content=chunked(), headers=form),
        400: client.post("/login", content=b"x", headers={"content-type": "multipart/form-data"}),
        404: client.get("/nowhere"),
        405: client.put("/login"),
        500: client.get("/"),
        200: client.get("/login"),
    }
    for status, answer in answers.items():
        assert answer.status_code == status
        assert {name: answer.headers.get(name) for name in HEADERS} == HEADERS, status


@pytest.mark.parametrize("port", ["0", "-1", "65536", "99999999", "9" * 30])
def test_a_controllers_port_is_bounded_as_on_the_command_line(
    store: ConsoleStore, tmp_path: Path, port: str
) -> None:
    """The store takes any integer; the bundles of its orders then told the
    nodes to reach their controller on a port that cannot be."""
    client, token = logged_in(store)
    key_out = tmp_path / "c1.key"
    form = {"csrf": token, "id": "02:00:00:00:00:00:00:c1", "key_out": str(key_out), "port": port}
    answer = client.post("/controllers", data=form)
    assert answer.status_code == 400 and "port must be 1 to 65535" in answer.text
    assert [c.port for c in store.repository.list_controllers()] == [5684]
    assert not key_out.exists()


@pytest.mark.parametrize("number", [str(2**63), "9" * 30, "9" * 5000])
def test_an_order_number_past_sqlites_integers_is_refused(store: ConsoleStore, number: str) -> None:
    """SQLite's OverflowError, and int()'s refusal of over 4,300 digits while
    routing, ended these requests in a 500."""
    client, token = logged_in(store)
    enrol(store.repository, 0, 1, "acme")
    removed = client.post(f"/orders/{number}/remove", data={"csrf": token})
    assert removed.status_code == 400 and "order number is from 1 to" in removed.text
    listed = client.get("/nodes", params={"order": number})
    assert listed.status_code == 400 and "order number is from 1 to" in listed.text
    assert len(store.repository.list_orders()) == 1


@pytest.mark.parametrize("action", ["add", "rotate"])
def test_a_key_file_name_the_file_system_refuses_is_a_400(
    store: ConsoleStore, tmp_path: Path, action: str
) -> None:
    """Asking whether ``key_out`` exists raises OSError for a name too long
    (or a directory that may not be searched): it was a 500."""
    client, token = logged_in(store)
    key_out = str(tmp_path / ("k" * 300) / "sk.key")
    old_key = store.repository.controller_keys()[CONTROLLER]
    if action == "add":
        form = {"csrf": token, "id": "02:00:00:00:00:00:00:c1", "key_out": key_out}
        answer = client.post("/controllers", data=form)
    else:
        rotate = f"/controllers/{eui64(CONTROLLER)}/rotate"
        answer = client.post(rotate, data={"csrf": token, "key_out": key_out})
    assert answer.status_code == 400 and "File name too long" in answer.text
    assert store.repository.controller_keys() == {CONTROLLER: old_key}


@pytest.mark.parametrize("last_event_id", ["9" * 30, "9" * 5000], ids=["huge", "long"])
def test_a_last_event_id_the_console_never_sent_starts_the_feed_now(
    store: ConsoleStore, monkeypatch: pytest.MonkeyPatch, last_event_id: str
) -> None:
    """A reconnecting EventSource sends back a row's seq; a larger number sent
    there overflowed SQLite, or failed int() (over 4,300 digits), inside the
    stream: a traceback on stderr, and the feed dead."""
    monkeypatch.setattr(console_app, "LIVE_POLL", 0.01)
    client, _ = logged_in(store)
    node = bytes.fromhex("0200000000000001")

    def log_one_step() -> None:
        time.sleep(0.3)
        log = ActivityLog(store.repository.path)
        log.record(BootstrapGranted(node, CONTROLLER, 7), time.time())
        log.close()

    writer = threading.Thread(target=log_one_step)
    writer.start()
    headers = {"last-event-id": last_event_id}
    with client.stream("GET", "/live/events", headers=headers) as feed:
        data = next(line for line in feed.iter_lines() if line.startswith("data:"))
    writer.join()
    assert json.loads(data.removeprefix("data:"))["tid"] == 7


def test_a_store_locked_by_another_writer_is_a_503_page(store: ConsoleStore) -> None:
    """SQLite's "database is locked" (another writer past the busy timeout) was
    a 500 and a traceback on stderr; the request changed nothing either way."""
    client, token = logged_in(store)
    store.repository._db.execute("PRAGMA busy_timeout=50")  # instead of 10 s
    with contextlib.closing(sqlite3.connect(store.repository.path)) as other:
        other.execute("BEGIN EXCLUSIVE")
        order = {"csrf": token, "installer": "acme", "controller": eui64(CONTROLLER), "count": "2"}
        answer = client.post("/orders", data=order)
        assert answer.status_code == 503 and "database is locked" in answer.text
        assert "nothing was changed" in answer.text
        other.rollback()
    assert store.repository.list_orders() == []


async def asgi_request(
    app: ASGIApp, method: str, path: str, cookie: str, body: bytes = b""
) -> tuple[int, bytes]:
    """Status and body of one request through the ASGI interface itself, so that
    several can be in flight at once (a TestClient request runs to its end)."""
    headers = [(b"content-type", b"application/x-www-form-urlencoded")]
    scope = LOGIN_SCOPE | {
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "headers": [*headers, (b"cookie", cookie.encode())],
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status: list[int] = []
    content = bytearray()

    async def receive() -> dict[str, object]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
        elif message["type"] == "http.response.body":
            content.extend(message.get("body", b""))

    await app(scope, receive, send)
    return status[0], bytes(content)


def test_a_write_waiting_for_the_store_holds_up_no_other_request(store: ConsoleStore) -> None:
    """While another process holds the store's write lock (a server's batch, a
    large order), a write waits up to the busy timeout. It waited on the event
    loop, so every request of every user waited with it, even those that only
    read (which WAL lets through) or do not touch the store at all."""
    client, token = logged_in(store)
    cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    store.repository._db.execute("PRAGMA busy_timeout=3000")  # instead of 10 s
    order = {"csrf": token, "installer": "acme", "controller": eui64(CONTROLLER), "count": "2"}
    others = ("/", "/nodes", "/orders", "/controllers", "/static/live.js", "/login")

    async def meanwhile() -> tuple[dict[str, tuple[int, float]], bool, tuple[int, bytes]]:
        app = client.app
        writing = asyncio.create_task(
            asgi_request(app, "POST", "/orders", cookie, urlencode(order).encode())
        )
        await asyncio.sleep(0.3)
        answered = {}
        for path in others:
            begun = time.monotonic()
            status, _ = await asgi_request(app, "GET", path, cookie)
            answered[path] = status, time.monotonic() - begun
        return answered, writing.done(), await writing

    with contextlib.closing(sqlite3.connect(store.repository.path)) as other:
        other.execute("BEGIN IMMEDIATE")
        begun = time.monotonic()
        answered, written_meanwhile, (status, page) = asyncio.run(meanwhile())
        waited = time.monotonic() - begun
        other.rollback()
    assert not written_meanwhile
    for path, (code, seconds) in answered.items():
        assert code == 200 and seconds < 1.0, (path, code, seconds)
    assert status == 503 and b"database is locked" in page and waited >= 3.0
    assert store.repository.list_orders() == []


@pytest.mark.parametrize("action", ["add", "rotate"])
def test_a_key_file_is_removed_when_its_store_change_fails(
    store: ConsoleStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    """The key file is written inside the store's transaction; if the commit then
    fails (a full disk, say) the store is rolled back, and the file, a key the
    store never took, must go too, as admin controller add removes it."""
    client, token = logged_in(store)
    key_out = tmp_path / "sk.key"
    method = "add_controller" if action == "add" else "rotate_controller_key"
    real = getattr(store.repository, method)

    def commit_fails(first: object, sk_cs: bytes, publish: Callable[[], None]) -> None:
        def written_then_fails() -> None:
            publish()
            assert key_out.exists()
            raise sqlite3.OperationalError("database or disk is full")

        real(first, sk_cs, written_then_fails)

    monkeypatch.setattr(store.repository, method, commit_fails)
    old_key = store.repository.controller_keys()[CONTROLLER]
    if action == "add":
        form = {"csrf": token, "id": "02:00:00:00:00:00:00:c1", "key_out": str(key_out)}
        answer = client.post("/controllers", data=form)
    else:
        rotate = f"/controllers/{eui64(CONTROLLER)}/rotate"
        answer = client.post(rotate, data={"csrf": token, "key_out": str(key_out)})
    assert answer.status_code == 503 and "disk is full" in answer.text
    assert not key_out.exists()
    assert store.repository.controller_keys() == {CONTROLLER: old_key}


def test_a_client_that_hangs_up_mid_form_leaves_no_traceback(store: ConsoleStore) -> None:
    """Starlette raises ClientDisconnect from the form parser; it reached the
    server, which logged it with a traceback. There is no one to answer."""
    messages: list[dict[str, object]] = [
        {"type": "http.request", "body": b"user=alice&pass", "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, object]:
        return messages.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(build_app(store)(LOGIN_SCOPE, receive, send))
    assert sent == []


def test_a_head_request_leaves_the_bundle_for_its_download(store: ConsoleStore) -> None:
    """HEAD is GET without the body: a link checker or ``curl -I`` took the bundle
    and the operator's download then answered 410, the keys lost for good."""
    client, token = logged_in(store)
    order = {"csrf": token, "installer": "acme", "controller": eui64(CONTROLLER), "count": "2"}
    link = re.search(r'href="(/bundles/[^"]+)"', client.post("/orders", data=order).text)
    assert link is not None
    assert client.head(link.group(1)).status_code == 200
    bundle = client.get(link.group(1))
    assert bundle.status_code == 200 and len(json.loads(bundle.content)["nodes"]) == 2
    assert client.head(link.group(1)).status_code == 410
    assert client.get(link.group(1)).status_code == 410
