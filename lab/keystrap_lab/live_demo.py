"""``make demo`` / ``keystrap demo``: the whole system through real processes.

An SBS and an SBR run as separate processes on 127.0.0.1; an order of nodes from
one installer sharing one IK_N is enrolled and installed; all nodes bootstrap at
once; then the demo shows that no IK is left and that the installer, who knows
IK_N, can neither bootstrap as those nodes again nor open their in-band flights.
Last, one node serves CoAPS with its new PSK: the controller configures it,
libcoap reads it back, IK_N gets nothing, and it is re-installed and revoked.
Keys are compared, never printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiocoap

from keystrap.ids import eui64, parse_eui64
from keystrap.services.node_agent import NodeResult, bootstrap_node
from keystrap.store.atomic import make_private_dirs, refuse_non_empty_dir
from keystrap.store.node_file import load_node_file
from keystrap.wire import VERSION, DecodeError, Flight2, Flight3, Flight6, Flight7, flight_class
from keystrap_lab.independent import independent_get
from keystrap_lab.pg_cluster import private_cluster
from keystrap_lab.processes import free_udp_port
from keystrap_lab.relay import Recording, forward_all
from keystrap_lab.site import Site

MEDIUM_WORDS = {
    "qr": "QR codes (PNG images, Base45 in alphanumeric mode)",
    "nfc": "NDEF messages (NFC Forum external type)",
    "audio": "data-over-sound (16-bit PCM WAV, ggwave)",
    "light": "light flashes (OOK + Manchester, sampled luminance)",
    "raw": "raw frames (no physical medium)",
}


class Progress:
    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.tty = sys.stdout.isatty()
        self._last_quarter = -1

    def tick(self) -> None:
        self.done += 1
        width = 30
        filled = width * self.done // self.total
        line = f"  [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} nodes"
        if self.tty:
            print("\r" + line, end="\n" if self.done == self.total else "", flush=True)
        elif self.done * 4 // self.total != self._last_quarter:
            self._last_quarter = self.done * 4 // self.total
            print(line, flush=True)


@contextlib.contextmanager
def _workdir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        refuse_non_empty_dir(path, "--workdir")
        make_private_dirs(path)
        yield path
    else:
        with tempfile.TemporaryDirectory(prefix="keystrap-demo-") as tmp:
            yield Path(tmp)


async def run_live_demo(
    count: int,
    workdir: Path | None,
    channel: str = "qr",
    small_network: bool = False,
    store: str = "sqlite",
) -> int:
    """With ``small_network``, the controller includes the server (the paper's small
    network): one process, and no in-band flight on any network to record. With
    ``store="postgresql"``, the server's store is a private PostgreSQL cluster
    started for the demo in a temporary directory (and removed after it)."""
    started = time.monotonic()
    with _workdir(workdir) as root, contextlib.ExitStack() as held:
        url = ""
        if store == "postgresql":
            cluster = held.enter_context(private_cluster())
            url = cluster.create_database("keystrap")
            print(f"PostgreSQL: a private cluster on a Unix socket in {cluster.root}")
        site = Site(
            root,
            channels=(channel, channel),
            capture=True,
            revocation_poll=1,
            small_network=small_network,
            store=url,
        )
        await site.prepare(relay_hook=None if small_network else forward_all)
        try:
            return await _demo(site, count, started, kept=workdir is not None)
        finally:
            site.stop()


async def _demo(site: Site, count: int, started: float, kept: bool) -> int:
    say = print
    say("keystrap demo: secure bootstrapping through real processes on 127.0.0.1")
    say("=" * 76)
    say(f"working directory: {site.root}" + ("" if kept else " (temporary)"))
    say()
    say("1. Enrolment (paper section 3)")
    site.register_controller()
    say(f"   $ keystrap admin controller add {site.controller_id} --key-out data/controller-sk.key")
    nodes = site.enrol(count, installer="acme")
    say(
        f"   $ keystrap admin order create --installer acme --count {count} --out nodes-bundle.json"
    )
    say(f"   $ keystrap install nodes-bundle.json --out nodes       -> {len(nodes)} node files")
    bundle = json.loads((site.root / "nodes-bundle.json").read_text())
    ik_n = bytes.fromhex(bundle["shared_key"])
    say(f"   all {count} nodes share ONE initial key IK_N, which the installer keeps")
    say()
    say("2. Services")
    await site.start()
    assert site.controller is not None
    record = site.relay.record if site.relay is not None else Recording()
    if site.server is not None and site.relay is not None:
        say(f"   SBS  pid {site.server.process.pid:<7} coap://127.0.0.1:{site.server_port}/bs")
        say(
            f"   SBR  pid {site.controller.process.pid:<7} out-of-band channel "
            f"{site.oob_socket.name}, in band via a recording relay on port {site.relay.address[1]}"
        )
    else:
        say("   $ keystrap controller --with-server --server-config server.toml")
        say(f"   SBR+SBS pid {site.controller.process.pid:<7} the paper's small network")
        say(
            f"   out-of-band channel {site.oob_socket.name}; flights 2, 3, 6 and 7 are "
            "handed across in memory, never on a network"
        )
    say()
    say(f"3. Bootstrapping {count} nodes concurrently (flights 1-7)")
    progress = Progress(count)

    async def one(path: Path) -> NodeResult:
        result = await bootstrap_node(path, timeout=60, linger=10, capture_dir=site.signals)
        progress.tick()
        return result

    results = await asyncio.gather(*(one(p) for p in nodes))
    inband = inband_sizes(record)
    say()
    say(
        f"   {'node':<24} {'outcome':<10} {'ms':>6} {'TID':>4}   bytes per flight 1..7"
        " (OOB: flight; in band: CoAP datagram)"
    )
    for r in sorted(results, key=lambda r: r.tid or 0):
        sizes = dict(r.flight_bytes)
        sizes.update(inband.get(r.tid or -1, {}))
        cells = " ".join(f"{sizes.get(k, 0):>3}" for k in range(1, 8))
        say(
            f"   {eui64(r.node_id):<24} {r.outcome:<10} {r.seconds * 1000:>6.0f} "
            f"{r.tid if r.tid is not None else '-':>4}   {cells}"
        )
    ok_nodes = sum(1 for r in results if r.ok)
    where = f"in {site.signals}" if kept else "(run with --workdir DIR to keep them)"
    say(
        f"   {ok_nodes}/{count} bootstrapped; {len(list(site.signals.iterdir()))} signal files "
        + where
    )
    micropython_ok = await micropython_node(site, say)
    say()

    say("4. What is left of IK_N, and what the installer can still do")
    node_ids = [parse_eui64(n["id"]) for n in bundle["nodes"]]
    held = {nid: key for nid, key in site.server_keys().items() if nid in node_ids}
    still_initial, listed = sum(1 for k in held.values() if k == ik_n), len(held)
    active = site.node_statuses().count("active")
    say(f"   repository: {still_initial} of {listed} node keys equal IK_N; {active} nodes active")

    victims = nodes[:3]
    again = site.root / "installer-copy"
    site.install(site.root / "nodes-bundle.json", again)
    attempts = await asyncio.gather(
        *(bootstrap_node(again / p.name, timeout=4, linger=0) for p in victims)
    )
    refused = sum(1 for a in attempts if not a.ok)
    say(
        f"   installer re-imprints {len(victims)} devices with IK_N and bootstraps as them: "
        f"{refused}/{len(victims)} refused"
    )
    for a in attempts:
        say(f"     {eui64(a.node_id)}: {a.outcome}")
    after = site.server_keys()
    unchanged = all(after[a.node_id] == held[a.node_id] for a in attempts)
    say(f"   the server's keys for those nodes are unchanged: {'yes' if unchanged else 'NO'}")

    node_ids = [parse_eui64(n["id"]) for n in bundle["nodes"]]
    opened, tried = try_open_with(record, ik_n, site.controller_id, node_ids)
    if site.relay is not None:
        say(f"   installer tries IK_N on every recorded in-band flight: {opened} of {tried} opened")
    else:
        say("   no in-band flight ever left the controller's process: nothing to record")
    say("   (RN_c, needed for PSK = AES_IK(RN_i XOR RN_c), only ever travels sealed under")
    say("    SK_cs in flight 2 and out of band in flight 4)")
    say()
    after_ok = await after_bootstrap(site, nodes[-1], ik_n, say)
    say()
    ok = (
        ok_nodes == count
        and still_initial == 0
        and refused == len(victims)
        and unchanged
        and opened == 0
        and after_ok
        and micropython_ok
    )
    say(f"demo {'succeeded' if ok else 'FAILED'} in {time.monotonic() - started:.1f} s")
    return 0 if ok else 1


async def micropython_node(site: Site, say: Callable[..., None]) -> bool:
    """One more node whose core (flights 1, 4, 5, 11) runs inside MicroPython."""
    [path] = site.enrol(1, installer="acme", name="micropython")
    say(f"   $ keystrap node micropython/{path.name} --runtime micropython")
    try:
        args = ("--runtime", "micropython", "--timeout", "30", "--linger", "5")
        out = await asyncio.to_thread(site.cli, "node", str(path), *args)
    except RuntimeError as exc:
        say(f"     FAILED: {str(exc).strip().splitlines()[-1]}")
        return False
    say(f"     {out.strip()}")
    node_id = load_node_file(path).state.node_id
    return ": confirmed in" in out and site.server_keys()[node_id] == load_node_file(path).state.key


async def after_bootstrap(site: Site, path: Path, ik_n: bytes, say: Callable[..., None]) -> bool:
    """Step 5: the new PSK at work -- DTLS, configuration, interoperability, lifecycle."""
    nid = eui64(load_node_file(path).state.node_id)
    port = free_udp_port()
    where = f"127.0.0.1:{port}"
    checks: dict[str, bool] = {}

    def check(name: str, passed: bool, good: str, bad: str) -> str:
        checks[name] = passed
        return good if passed else bad

    async def independent(key: bytes) -> str:
        return await asyncio.to_thread(independent_get, "127.0.0.1", port, nid, key)

    say("5. After bootstrapping: CoAPS (DTLS 1.2, TLS_PSK_WITH_AES_128_CCM_8) with PSK_i")
    node = await site.start_node(path, port)
    try:
        say(f"   $ keystrap node nodes/{path.name} --serve {port}    (pid {node.process.pid})")
        args = ["--domain", "plant.example.org", "--gateway", "fd00::1"]
        args += ["--proxy", "coap://[fd00::2]:5683", "--set", "report_interval=60"]
        say(f"   $ keystrap controller configure {nid} --address {where} {' '.join(args)}")
        applied = json.loads(site.controller_cli("configure", nid, "--address", where, *args))
        applied_text = json.dumps(applied, sort_keys=True)
        say(f"     node applied: {applied_text}")
        shown = json.loads(site.controller_cli("show", nid))
        say(f"   $ keystrap controller show {nid}: {check('show', shown == applied, 'same', 'NO')}")
        psk = load_node_file(path).state.key
        tool = "coap-client" if b"\x00" not in psk else "openssl s_client: PSK has a 0 byte"
        read = await independent(psk)
        same = check("libcoap", bool(read) and json.loads(read) == applied, "same", "NO")
        say(f"   independent stack ({tool}) with PSK_i reads it back: {same}")
        locked_out = check("ik", not await independent(ik_n), "no data, handshake fails", "DATA")
        say(f"   the same client with IK_N: {locked_out}")

        node.stop()
        say(f"   $ keystrap node nodes/{path.name} --reinstall --serve {port}")
        node = await site.start_node(path, port, "--reinstall")
        fresh = check("fresh", load_node_file(path).state.key != psk, "a new PSK", "SAME PSK")
        old = check("old", not await independent(psk), "no data", "DATA")
        kept = check("kept", json.loads(site.controller_cli("show", nid)) == applied, "yes", "NO")
        say(f"   re-installed: {fresh}; old PSK gets {old}; controller reads settings: {kept}")

        say(f"   $ keystrap admin revoke {nid}")
        site.admin("revoke", nid)
        dropped = await _wait_for_log(site, f"node={nid} revoked by the server")
        refused = site.controller_refuses("show", nid)
        outcome = check("revoked", dropped and refused, "dropped its PSK, refuses it", "KEPT IT")
        say(f"   controller {outcome}")
    finally:
        node.stop()
    return all(checks.values())


async def _wait_for_log(site: Site, text: str, timeout: float = 15.0) -> bool:
    assert site.controller is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in site.controller.log_text():
            return True
        await asyncio.sleep(0.1)
    return False


def _decoded(record: Recording) -> Iterator[tuple[str, int, bytes, bytes]]:
    """(direction, datagram size, CoAP token, payload) of each recorded CoAP message."""
    for direction, datagram in record.datagrams:
        with contextlib.suppress(aiocoap.error.Error):
            message = aiocoap.Message.decode(datagram)
            if message.payload:
                yield direction, len(datagram), message.token, message.payload


def inband_sizes(record: Recording) -> dict[int, dict[int, int]]:
    """Per TID, the CoAP datagram size of flights 2, 3, 6 and 7."""
    by_token: dict[bytes, tuple[int, int]] = {}
    sizes: dict[int, dict[int, int]] = {}
    for direction, size, token, payload in _decoded(record):
        try:
            kind = flight_class(payload)
            if direction == "up" and issubclass(kind, Flight2 | Flight6):
                tid = kind.peek_tid(payload)
                number = int(kind.TYPE)
                by_token[token] = (tid, number + 1)
                sizes.setdefault(tid, {})[number] = size
            elif direction == "down" and token in by_token:
                tid, answer = by_token[token]
                sizes.setdefault(tid, {})[answer] = size
        except DecodeError:
            pass  # an error answer's text, or someone else's traffic
    return sizes


def try_open_with(
    record: Recording, key: bytes, controller_id: str, node_ids: list[bytes]
) -> tuple[int, int]:
    """Try ``key`` on every recorded in-band flight, in every context the installer
    could guess (each node of its bundle); returns ``(opened, tried)``."""
    cid = parse_eui64(controller_id)
    opened = tried = 0
    tids: dict[bytes, int] = {}
    for direction, _, token, payload in _decoded(record):
        try:
            kind = flight_class(payload)
        except DecodeError:
            continue
        if kind.PROFILE != VERSION:
            continue
        if direction == "up" and issubclass(kind, Flight2 | Flight6):
            tried += 1
            tids[token] = kind.peek_tid(payload)
            with contextlib.suppress(DecodeError):
                kind.open(payload, key)
                opened += 1
        elif direction == "down" and issubclass(kind, Flight3 | Flight7):
            tried += 1
            for node_id in node_ids:
                with contextlib.suppress(DecodeError):
                    tid = tids.get(token, 0)
                    kind.open(payload, key, controller_id=cid, tid=tid, node_id=node_id)
                    opened += 1
                    break
    return opened, tried
