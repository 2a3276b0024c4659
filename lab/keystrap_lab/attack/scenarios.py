"""keystrap under attack, through real server and controller processes.

The in-band adversary sits in the UDP relay between controller and server; it
records everything and applies whatever rules a scenario installs. The installer
knows IK_N (from its bundle) and sees all in-band traffic; a rogue node holds the
key its installer imprinted.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from dataclasses import replace as dc_replace
from pathlib import Path

import aiocoap

from keystrap.crypto import aes_encrypt_block, xor_bytes
from keystrap.ids import parse_eui64
from keystrap.protocol import Node
from keystrap.services.node_agent import NodeResult, bootstrap_node
from keystrap.store.keyfile import read_key_file
from keystrap.store.node_file import load_node_file, save_node_file
from keystrap.wire import DecodeError, Flight1, Flight2, Flight3, Flight4, Flight8, FlightType
from keystrap_lab.attack.coapview import Captured, flip_bit, view, with_payload
from keystrap_lab.attack.report import HOLDS, RESIDUAL, Row
from keystrap_lab.relay import Outgoing
from keystrap_lab.site import Site

Rule = Callable[[str, bytes], list[Outgoing] | None]
SCHEME = "keystrap"


@dataclass
class Lab:
    """A running site with an adversary on its in-band path."""

    site: Site
    nodes: list[Path]
    rules: list[Rule] = field(default_factory=list)
    used: int = 0

    def hook(self, direction: str, datagram: bytes) -> list[Outgoing]:
        for rule in list(self.rules):
            out = rule(direction, datagram)
            if out is not None:
                return out
        return [datagram]

    def take(self, count: int) -> list[Path]:
        """Fresh, never bootstrapped nodes."""
        chosen = self.nodes[self.used : self.used + count]
        self.used += count
        assert len(chosen) == count, "the lab ran out of enrolled nodes"
        return chosen

    def captured(self) -> list[Captured]:
        assert self.site.relay is not None
        seen = (view(d, g) for d, g in self.site.relay.record.datagrams)
        return [c for c in seen if c is not None]

    def server_keys(self) -> dict[bytes, bytes]:
        return self.site.server_keys()

    def bundle_key(self) -> bytes:
        bundle = json.loads((self.site.root / "nodes-bundle.json").read_text())
        return bytes.fromhex(bundle["shared_key"])

    async def post(self, payload: bytes) -> aiocoap.Message:
        context = await aiocoap.Context.create_client_context()
        try:
            message = aiocoap.Message(
                code=aiocoap.POST,
                payload=payload,
                content_format=42,
                uri=f"coap://127.0.0.1:{self.site.server_port}/bs",
            )
            return await asyncio.wait_for(context.request(message).response, 10)
        finally:
            await context.shutdown()


async def open_lab(
    root: Path, *, count: int, window: int = 120, profile: str = "paper", key_mode: str = "shared"
) -> Lab:
    lab = Lab(Site(root, window=window, channels=("raw", "raw"), profile=profile), [])
    await lab.site.prepare(relay_hook=lab.hook)
    lab.site.register_controller()
    lab.nodes = lab.site.enrol(count, key_mode=key_mode)
    await lab.site.start()
    return lab


async def bootstrap(paths: list[Path], timeout: float = 30) -> list[NodeResult]:
    return list(
        await asyncio.gather(*(bootstrap_node(p, timeout=timeout, linger=5) for p in paths))
    )


def consistent(lab: Lab, paths: list[Path]) -> bool:
    keys = lab.server_keys()
    return all(keys[load_node_file(p).state.node_id] == load_node_file(p).state.key for p in paths)


# -- replay --------------------------------------------------------------------------


async def replay_flight2_later(lab: Lab, wait: float) -> Row:
    (path,) = lab.take(1)
    start = len(lab.captured())
    await bootstrap([path])
    request = next(c for c in lab.captured()[start:] if c.kind is FlightType.F2_REQUEST)
    await asyncio.sleep(wait)
    before = lab.server_keys()
    reply = await lab.post(request.payload)
    unchanged = lab.server_keys() == before
    observed = f"{reply.code.dotted} {reply.payload.decode(errors='replace')}"
    ok = reply.code.dotted == "4.03" and unchanged
    attack = f"replay recorded flight 2 after {wait:.0f} s (window {lab.site.window} s)"
    if not unchanged:
        observed += ", KEY CHANGED"
    return Row(
        SCHEME, attack, "refused as stale, no key changes", observed, HOLDS if ok else "FAILS"
    )


async def replay_flight2_used_tid(lab: Lab) -> Row:
    (path,) = lab.take(1)
    start = len(lab.captured())
    await bootstrap([path])
    request = next(c for c in lab.captured()[start:] if c.kind is FlightType.F2_REQUEST)
    before = lab.server_keys()
    reply = await lab.post(request.payload)
    ok = reply.code.dotted == "4.03" and lab.server_keys() == before
    return Row(
        SCHEME,
        "replay flight 2 within the window (TID already used)",
        "refused, no second re-key",
        f"{reply.code.dotted} {reply.payload.decode(errors='replace')}",
        HOLDS if ok else "FAILS",
    )


async def replay_flight3_elsewhere(lab: Lab) -> Row:
    first, second = lab.take(2)
    start = len(lab.captured())
    await bootstrap([first])
    old_grant = next(c for c in lab.captured()[start:] if c.kind is FlightType.F3_GRANT)
    swapped: list[bytes] = []

    def swap(direction: str, datagram: bytes) -> list[Outgoing] | None:
        c = view(direction, datagram)
        if c is None or c.kind is not FlightType.F3_GRANT or swapped:
            return None
        swapped.append(c.payload)
        return [with_payload(datagram, old_grant.payload)]

    lab.rules.append(swap)
    try:
        (result,) = await bootstrap([second])
    finally:
        lab.rules.remove(swap)
    log = lab.site.controller.log_text() if lab.site.controller else ""
    rejected = "flight 3 failed authentication" in log
    ok = bool(swapped) and rejected and consistent(lab, [second])
    return Row(
        SCHEME,
        "replay flight 3 into another transaction",
        "rejected by the controller; bootstrap completes on retry",
        f"{'rejected' if rejected else 'ACCEPTED'}; node {result.outcome}",
        HOLDS if ok else "FAILS",
    )


# -- tampering ------------------------------------------------------------------------


async def bit_flips(lab: Lab, kind: FlightType) -> Row:
    """Flip one bit in every byte position of the flight, one position per node's
    first transaction, all nodes at once; every damaged flight must be refused."""
    size = {FlightType.F2_REQUEST: 66, FlightType.F3_GRANT: 33}[kind]
    paths = lab.take(size)
    start = len(lab.captured())
    flipped: dict[bytes, int] = {}
    positions = iter(range(size))

    def flip(direction: str, datagram: bytes) -> list[Outgoing] | None:
        c = view(direction, datagram)
        if c is None or c.kind is not kind:
            return None
        key = c.token if kind is FlightType.F2_REQUEST else c.payload
        if key not in flipped:
            position = next(positions, None)
            if position is None:
                return None
            flipped[key] = position
        return [with_payload(datagram, flip_bit(c.payload, flipped[key]))]

    lab.rules.append(flip)
    try:
        results = await bootstrap(paths, timeout=60)
    finally:
        lab.rules.remove(flip)
    if kind is FlightType.F2_REQUEST:
        answers = [c for c in lab.captured()[start:] if c.direction == "down"]
        flipped_tokens = set(flipped)
        refused = {c.token for c in answers if c.token in flipped_tokens and c.code[0] == "4"}
        detected = len(refused)
    else:
        log = lab.site.controller.log_text() if lab.site.controller else ""
        detected = min(log.count("flight 3 failed authentication") + log.count("flight 3 is"), size)
    done = sum(r.outcome == "confirmed" for r in results)
    ok = detected >= size and done == size and consistent(lab, paths)
    return Row(
        SCHEME,
        f"flip a bit in each of the {size} bytes of flight {int(kind)}",
        f"all {size} refused; retries complete",
        f"{detected}/{size} refused; {done}/{size} nodes confirmed",
        HOLDS if ok else "FAILS",
    )


async def impersonate_controller(lab: Lab) -> Row:
    (path,) = lab.take(1)
    node = load_node_file(path).state
    flight1 = Flight1(node.node_id, secrets.token_bytes(16))
    before = lab.server_keys()
    codes = []
    for controller_id in (parse_eui64(lab.site.controller_id), secrets.token_bytes(8)):
        request = Flight2(controller_id, 1, int(time.time()), secrets.token_bytes(16), flight1)
        forged = request.seal(secrets.token_bytes(16))
        codes.append((await lab.post(forged)).code.dotted)
    ok = codes == ["4.01", "4.01"] and lab.server_keys() == before
    return Row(
        SCHEME,
        "controller impersonator without SK_cs (real and unknown ID_c)",
        "4.01 both",
        " / ".join(codes),
        HOLDS if ok else "FAILS",
    )


async def man_in_the_middle(lab: Lab) -> Row:
    (path,) = lab.take(1)
    node_id = load_node_file(path).state.node_id
    before = lab.server_keys()[node_id]
    altered = 0

    def replace(direction: str, datagram: bytes) -> list[Outgoing] | None:
        nonlocal altered
        c = view(direction, datagram)
        if c is None or c.kind not in (FlightType.F3_GRANT, FlightType.F2_REQUEST):
            return None
        altered += 1
        forged = c.payload[:1] + secrets.token_bytes(len(c.payload) - 1)
        return [with_payload(datagram, forged)]

    lab.rules.append(replace)
    try:
        (during,) = await bootstrap([path], timeout=4)
    finally:
        lab.rules.remove(replace)
    unchanged = lab.server_keys()[node_id] == before
    (after,) = await bootstrap([path])
    ok = during.outcome.startswith("failed") and unchanged and after.outcome == "confirmed"
    return Row(
        SCHEME,
        "man in the middle rewrites flights 2 and 3",
        "nothing accepted, no key changes; completes once it leaves",
        f"{altered} rewritten, node {during.outcome.split(' (')[0]}; key unchanged: "
        f"{unchanged}; afterwards {after.outcome}",
        HOLDS if ok else "FAILS",
    )


# -- the installer and rogue nodes ----------------------------------------------------


async def installer_eavesdrops(lab: Lab) -> Row:
    """The installer knows IK_N, hears every in-band flight (and, generously, every
    flight 1), and tries to reach the new keys, then to inject."""
    paths = lab.take(3)
    start = len(lab.captured())
    await bootstrap(paths)
    ik_n = lab.bundle_key()
    traffic = lab.captured()[start:]
    states = [load_node_file(p).state for p in paths]
    secrets_found = 0
    candidates = {c.payload[i : i + 16] for c in traffic for i in range(len(c.payload) - 15)}
    opened = 0
    for c in traffic:
        if c.kind is FlightType.F2_REQUEST:
            try:
                Flight2.open(c.payload, ik_n)
                opened += 1
            except DecodeError:
                pass
    for state in states:
        # Any 16 recorded bytes as RN_c, with any recorded 16 bytes as RN_i.
        for rn_c in candidates:
            for rn_i in candidates:
                if aes_encrypt_block(ik_n, xor_bytes(rn_i, rn_c)) == state.key:
                    secrets_found += 1
    injected = 0
    for state in states:
        forged = Flight4(state.controller_id, 99, state.node_id, bytes(16), bytes(16)).seal(ik_n)
        node = Node(state, secrets.token_bytes)
        node.receive(forged, time.time())
        injected += node.state != state
    copies = lab.site.root / "installer-copies"
    lab.site.install(lab.site.root / "nodes-bundle.json", copies)
    (again,) = await bootstrap([copies / paths[0].name], timeout=4)
    ok = opened == 0 and secrets_found == 0 and injected == 0 and not again.ok
    return Row(
        SCHEME,
        "installer with IK_N records all in-band traffic, injects, re-bootstraps",
        "learns no PSK/SK_i, nothing accepted",
        f"opened {opened}/{len(traffic)}, {len(candidates)}^2 RN guesses matched "
        f"{secrets_found}, injections accepted {injected}, "
        f"re-bootstrap {again.outcome.split(' (')[0]}",
        HOLDS if ok else "FAILS",
    )


async def rogue_node(lab: Lab, key_mode: str) -> Row:
    """A node of the same installer answers, out of band, as another node that has
    not bootstrapped yet: it holds what its installer imprinted into it."""
    rogue_path, victim_path = lab.take(2)
    rogue = load_node_file(rogue_path)
    victim = load_node_file(victim_path)
    impostor = lab.site.root / f"impostor-{key_mode}.json"
    save_node_file(
        impostor, dc_replace(rogue, state=dc_replace(rogue.state, node_id=victim.state.node_id))
    )
    (result,) = await bootstrap([impostor], timeout=4)
    if key_mode == "shared":
        return Row(
            SCHEME,
            "rogue node of the same installer poses as an unbootstrapped node (shared IK_N)",
            "succeeds: the paper's shared IK_N; stopped only by the "
            "out-of-band channel's physical presence",
            result.outcome.split(" (")[0],
            RESIDUAL if result.ok else HOLDS,
        )
    return Row(
        SCHEME,
        f"rogue node of the same installer poses as another ({key_mode} keys)",
        "refused",
        result.outcome.split(" (")[0],
        HOLDS if not result.ok else "FAILS",
    )


async def controller_learns_ik(lab: Lab, profile: str) -> Row:
    """What a compromised controller holds after bootstrapping one node."""
    (path,) = lab.take(1)
    start = len(lab.captured())
    await bootstrap([path])
    ik_n = lab.bundle_key()
    sk_cs = read_key_file(lab.site.root / "data" / "controller-sk.key")
    state = load_node_file(path).state
    learned = False
    cid, tid, nid = state.controller_id, state.tid or 0, state.node_id
    for c in lab.captured()[start:]:
        if c.kind is FlightType.F3_GRANT:
            grant = Flight3.open(c.payload, sk_cs, controller_id=cid, tid=tid, node_id=nid)
            learned |= grant.ik == ik_n
        if c.kind is FlightType.F8_SEALED_GRANT:
            body = Flight8.open(c.payload, sk_cs, controller_id=cid, tid=tid, node_id=nid)
            learned |= ik_n in body.psk + body.challenge
    if profile == "paper":
        return Row(
            SCHEME,
            "compromised controller reads IK_N from flight 3 (paper profile)",
            "yes: the paper's flight 3 hands every controller the installer's key",
            "learned IK_N" if learned else "did not learn IK_N",
            RESIDUAL if learned else HOLDS,
        )
    return Row(
        SCHEME,
        "compromised controller reads IK_N (hardened profile, flight 8)",
        "never sees an IK",
        "learned IK_N" if learned else "did not learn IK_N",
        HOLDS if not learned else "FAILS",
    )


async def run_scheme(root: Path) -> list[Row]:
    rows: list[Row] = []
    lab = await open_lab(root / "paper", count=130, window=3)
    try:
        rows.append(await replay_flight2_used_tid(lab))
        rows.append(await replay_flight2_later(lab, wait=4))
        rows.append(await replay_flight3_elsewhere(lab))
        rows.append(await bit_flips(lab, FlightType.F2_REQUEST))
        rows.append(await bit_flips(lab, FlightType.F3_GRANT))
        rows.append(await impersonate_controller(lab))
        rows.append(await man_in_the_middle(lab))
        rows.append(await installer_eavesdrops(lab))
        rows.append(await rogue_node(lab, "shared"))
        rows.append(await controller_learns_ik(lab, "paper"))
    finally:
        lab.site.stop()
    lab = await open_lab(root / "hardened", count=6, profile="hardened", key_mode="diversified")
    try:
        rows.append(await rogue_node(lab, "diversified"))
        rows.append(await controller_learns_ik(lab, "hardened"))
    finally:
        lab.site.stop()
    return rows
