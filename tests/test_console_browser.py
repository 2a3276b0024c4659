"""The console in a real browser (Debian's chromium driven by Playwright) against
real server, controller and console processes: log in, order nodes and download
the bundle once, watch them bootstrap live, read a failed node's history, revoke
a node through the confirmation step. Screenshots go to docs/console/."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from keystrap.ids import eui64
from keystrap.services.node_agent import NodeResult, bootstrap_node
from keystrap.store.node_file import load_node_file
from keystrap_lab.processes import Service, free_udp_port, keystrap_command, start_service
from keystrap_lab.site import Site

from .services_helpers import bootstrap_all

SHOTS = Path(__file__).resolve().parent.parent / "docs" / "console"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
USER, PASSWORD = "alice", "correct horse battery staple"


def wait_for_http(url: str, service: Service, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(f"console exited early:\n{service.log_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer")


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as refused:
        return refused.code


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Site, str]]:
    site = Site(tmp_path, channels=("raw", "raw"))
    asyncio.run(site.prepare())
    site.register_controller()
    added = subprocess.run(
        keystrap_command("admin", "--config", str(site.server_config), "user", "add", USER),
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    asyncio.run(site.start())
    port = free_udp_port()
    console = start_service(
        "console",
        ["console", "--config", str(site.server_config), "--port", str(port)],
        tmp_path,
        tmp_path / "console.log",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(base + "/login", console)
        yield site, base
    finally:
        console.stop()
        site.stop()


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def test_console_in_a_browser(site: tuple[Site, str], browser: Browser, tmp_path: Path) -> None:
    site_, base = site
    # A node revoked before it ever bootstraps: its attempt fails at the server.
    spare = site_.install(site_.order(1, installer="spares", name="spare"), tmp_path / "spare")[0]
    spare_id = eui64(load_node_file(spare).state.node_id)
    site_.admin("revoke", spare_id)

    # Nothing without a login but the login page.
    for path in ("/", "/nodes", "/live/events", "/static/live.js", f"/nodes/{spare_id}"):
        assert status_of(base + path) == 401, path
    page = browser.new_page(base_url=base, accept_downloads=True)
    page.goto("/nodes")
    expect(page).to_have_url(base + "/login")
    page.fill("input[name=user]", USER)
    page.fill("input[name=password]", "wrong password")
    page.click("button")
    expect(page.get_by_role("alert")).to_contain_text("wrong user name or password")
    shot(page, "login")
    page.fill("input[name=user]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button")
    expect(page).to_have_url(base + "/")
    cookie = next(c for c in page.context.cookies() if c["name"] == "keystrap_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # An order of 20 nodes; its bundle is offered once.
    page.goto("/orders")
    page.fill("input[name=installer]", "acme")
    page.fill("input[name=count]", "20")
    page.fill("input[name=oob]", f"unix:{site_.oob_socket}")
    page.click("text=Create order")
    expect(page.locator("#bundle")).to_be_visible()  # the new page, not the one it left
    shot(page, "order-created")
    with page.expect_download() as download:
        page.click("#bundle")
    bundle = tmp_path / "acme-bundle.json"
    download.value.save_as(bundle)
    link = page.get_attribute("#bundle", "href")
    assert page.request.get(base + str(link)).status == 410
    nodes = site_.install(bundle, tmp_path / "acme")
    assert len(nodes) == 20

    # Watch them bootstrap on the live view.
    page.goto("/live")
    expect(page.locator("#status")).to_have_text("connected")
    results: list[NodeResult] = []

    async def bootstrap() -> None:
        confirmed, _ = await asyncio.gather(
            bootstrap_all(nodes, timeout=30, linger=1),
            bootstrap_node(spare, timeout=3, linger=0),
        )
        results.extend(confirmed)

    worker = threading.Thread(target=lambda: asyncio.run(bootstrap()))
    worker.start()
    expect(page.locator("#confirmed")).to_have_text("20", timeout=45_000)
    expect(page.locator("#live tr.refused").first).to_contain_text("the node is revoked")
    shot(page, "live")
    worker.join()
    assert [r.outcome for r in results] == ["confirmed"] * 20

    page.goto("/")
    expect(page.locator(".card.active b")).to_have_text("20")
    shot(page, "dashboard")
    page.goto("/nodes?installer=acme&state=active")
    expect(page.locator("#nodes td.active")).to_have_count(20)
    shot(page, "nodes")

    page.goto("/controllers")
    expect(page.locator("td.id").first).to_have_text(site_.controller_id)
    shot(page, "controllers")

    # The failed node's history says why, in plain words.
    page.goto(f"/nodes/{spare_id}")
    expect(page.locator(".cause").first).to_contain_text(
        "flight 2 (key request) refused: the node is revoked"
    )
    shot(page, "node-failed")

    # A form posted without its CSRF token is refused, and changes nothing.
    victim = eui64(load_node_file(nodes[0]).state.node_id)
    refused = page.request.post(f"{base}/nodes/{victim}/revoke", form={"confirmed": "yes"})
    assert refused.status == 403
    page.goto(f"/nodes/{victim}")
    expect(page.locator("strong.active")).to_have_text("active")

    # Revoke through the confirmation step.
    page.click("text=Revoke…")
    expect(page.get_by_role("alertdialog")).to_contain_text(f"Revoke {victim}?")
    shot(page, "revoke-confirm")
    page.click("text=Yes, revoke it")
    expect(page.locator("strong.revoked")).to_have_text("revoked")
    assert site_.node_statuses().count("revoked") == 2
