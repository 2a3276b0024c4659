"""Side by side: three ways a node could get a fresh key, on the same emulated
IEEE 802.15.4 / 6LoWPAN link (``keystrap_lab.link``), in one run on one machine.

- keystrap: Kang's scheme through the real SBS and SBR processes; the link sits
  on the in-band path (flights 2, 3, 6, 7 as CoAP); flights 1, 4, 5 go out of
  band. "all flights" also puts flights 1, 4, 5 on the link's frames (computed).
- DTLS 1.2 PSK, TLS_PSK_WITH_AES_128_CCM_8: tinydtls, the stack the node runs
  after bootstrapping (a ``keystrap node --serve`` process and aiocoap's client).
  Time is that of the first GET minus a GET on the established session.
- EDHOC (RFC 9528) with lakers-python: method 3 (static DH keys both sides),
  cipher suite 2, credentials by reference, over CoAP as in RFC 9528 A.2
  (POST /.well-known/edhoc: message_1, then C_R and message_3).
- lake-authz (draft-ietf-lake-authz, "ELA") with lakers-python, the three-party
  standard with keystrap's roles: device U = SBI (``AuthzDevice`` on an EDHOC
  initiator), domain authenticator V = SBR (``AuthzAutenticator`` on the EDHOC
  responder), enrollment server W = SBS (``AuthzEnrollmentServer`` with an ACL
  holding U's kid). Configuration as in lakers' own test_ead_authz.py (the
  traces-zeroconf values): EDHOC method 3, cipher suite 2 (P-256, SHA-256,
  AES-CCM-16-64-128), credentials by reference, ID_U = {4: h'2b'}, LOC_W =
  "coap://enrollment.server", EAD_1 = the voucher info, EAD_2 = the voucher,
  no EAD_3. U <-> V is EDHOC over CoAP as above; V posts the voucher request
  to W over CoAP (POST /.well-known/lake-authz: the path is ours, the draft
  leaves V <-> W to the deployment) and waits for the voucher before it answers
  message_1.

Placement as deployed: device <-> authenticator (EDHOC, DTLS, lake-authz U <-> V)
on the emulated 6LoWPAN link; authenticator <-> enrollment server (lake-authz
V <-> W) and keystrap's controller <-> server on a backbone of BACKBONE_DELAY
one-way latency and no loss. keystrap's node talks to its controller out of band
("keystrap deployed": flights 1, 4, 5 on the raw channel; their air time on a
medium is bench/oob.py's business), so no 6LoWPAN setting touches it; the row
"keystrap in-band on 6LoWPAN" keeps the older placement, the controller reaching
the server across the constrained link. The "compact" rows put the compact
profile's flights (keystrap.wire.compact) into the measured CoAP datagrams of
those runs: their bytes are computed, their times not measured.

Per link setting (20 and 250 kbit/s, per-frame loss 0/10/30 %): time to
complete (median, p99) over ``--trials`` fresh exchanges. Messages, bytes on
the air (PHY + MAC + 6LoWPAN + UDP payload) and round trips come from the
lossless run; bytes on the constrained link, on the backbone and sent and
received by the device itself are UDP payloads (CoAP included) of that run.
CPU per exchange per party from the protocol engines alone, in this process,
without I/O (keystrap: the sans-I/O cores; DTLS: tinydtls through DTLSSocket
with in-memory datagrams; EDHOC and lake-authz: lakers).

    python bench/compare.py [--trials 20] [--rates 20k,250k] [--losses 0,0.1,0.3]

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiocoap
import aiocoap.resource as resource
import lakers
from core import CONTROLLER_ID, one_bootstrap
from DTLSSocket import dtls

from keystrap.coap.node_client import NodeClient, NodeUnreachable
from keystrap.protocol import Controller, ControllerState, InMemoryRepository
from keystrap.protocol import Server as SbsCore
from keystrap.services.node_agent import bootstrap_node
from keystrap.wire import COMPACT_SIZES, FLIGHT_SIZES, FlightType, peek_type
from keystrap_lab.link import LINK_PROFILES, LowpanLink, frame_sizes
from keystrap_lab.link.lowpan import PHY_OVERHEAD
from keystrap_lab.processes import free_udp_port
from keystrap_lab.relay import Delayed, Outgoing, UdpRelay
from keystrap_lab.site import Site

TIMEOUT = 45.0  # per exchange; CoAP gives up on a request after 45 s (4 retransmissions)
T = TypeVar("T")
OOB_FLIGHTS = (FlightType.F1_HELLO, FlightType.F4_CHALLENGE, FlightType.F5_PROOF)

# EDHOC test credentials of RFC 9529 (public trace keys: a benchmark, not a deployment).
CRED_I = bytes.fromhex(
    "A2027734322D35302D33312D46462D45462D33372D33322D333908A101A5010202412B2001215820"
    "AC75E9ECE3E50BFC8ED60399889522405C47BF16DF96660A41298CB4307F7EB62258206E5DE61138"
    "8A4B8A8211334AC7D37ECB52A387D257E6DB3C2A93DF21FF3AFFC8"
)
I_KEY = bytes.fromhex("fb13adeb6518cee5f88417660841142e830a81fe334380a953406a1305e8706b")
R_KEY = bytes.fromhex("72cc4761dbd4c78f758931aa589d348d1ef874a7e303ede2f140dcf3e6aa4aac")
CRED_R = bytes.fromhex(
    "A2026008A101A5010202410A2001215820BBC34960526EA4D32E940CAD2A234148DDC21791A12AFBCB"
    "AC93622046DD44F02258204519E257236B2A0CE2023F0931F1F386CA7AFDA64FCDE0108C224C51EABF"
    "6072"
)
# lake-authz values of lakers' own test_ead_authz.py (traces-zeroconf): public test keys.
# V uses R_KEY with a credential naming "example.edu"; U is the initiator above.
ID_U = bytes.fromhex("a104412b")
G_W = bytes.fromhex("FFA4F102134029B3B156890B88C9D9619501196574174DCB68A07DB0588E4D41")
LOC_W = "coap://enrollment.server"
W_KEY = bytes.fromhex("4E5E15AB35008C15B89E91F9F329164D4AACD53D9923672CE0019F9ACD98573F")
KID_I = 0x2B
CRED_V = bytes.fromhex(
    "a2026b6578616d706c652e65647508a101a501020241322001215820bbc34960526ea4d32e940cad2a23"
    "4148ddc21791a12afbcbac93622046dd44f02258204519e257236b2a0ce2023f0931f1f386ca7afda64f"
    "cde0108c224c51eabf6072"
)
CBOR_TRUE = b"\xf5"
DTLS_CONNECTED = 0x1DE
BACKBONE_DELAY = 0.020  # one way: a site's router to a regional data centre
VOUCHER_PATH = (".well-known", "lake-authz")

PRIMITIVES = {
    "keystrap": "AES-128 block (CCM_8, CMAC on it)",
    "dtls": "AES-128-CCM_8, HMAC-SHA-256 (TLS PRF)",
    "edhoc": "P-256 ECDH x3, SHA-256, HKDF, AES-CCM-16-64-128",
    "authz": "P-256 ECDH x4, SHA-256, HKDF, AES-CCM-16-64-128 (+ voucher MAC check)",
}


def air_bytes(payload: int) -> int:
    return sum(size + PHY_OVERHEAD for size in frame_sizes(payload))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def backbone(_direction: str, datagram: bytes) -> list[Outgoing]:
    """The wired path to a server: a fixed one-way latency, nothing lost."""
    return [Delayed(BACKBONE_DELAY, datagram)]


@dataclass
class Wire:
    """What crossed one link in one exchange, from the relay's recording
    ("up" is what the relay's client sent)."""

    datagrams: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def messages(self) -> int:
        return len(self.datagrams)

    @property
    def payload(self) -> int:
        return sum(len(d) for _, d in self.datagrams)

    def sent(self, direction: str) -> int:
        return sum(len(d) for way, d in self.datagrams if way == direction)

    @property
    def air(self) -> int:
        return sum(air_bytes(len(d)) for _, d in self.datagrams)


def compact_wire(paper: Wire) -> Wire:
    """The same datagrams with each paper flight replaced by its compact-profile
    size: CoAP and lower layers as measured, flights as specified (computed)."""
    datagrams = []
    for direction, datagram in paper.datagrams:
        payload = aiocoap.Message.decode(datagram).payload
        flight = COMPACT_SIZES[peek_type(payload)] if payload else 0
        datagrams.append((direction, bytes(len(datagram) - len(payload) + flight)))
    return Wire(datagrams)


# -- CPU per exchange, engines only ---------------------------------------------------


def cpu_keystrap(runs: int) -> dict[str, float]:
    repository = InMemoryRepository()
    sk_cs, ik = secrets.token_bytes(16), secrets.token_bytes(16)
    server = SbsCore(repository, {CONTROLLER_ID: sk_cs})
    controller = Controller(ControllerState(CONTROLLER_ID, sk_cs), secrets.token_bytes)
    samples: dict[str, list[int]] = {"node": [], "controller": [], "server": []}
    now = time.time()
    for n in range(runs):
        for role, ns in one_bootstrap(n + 1, repository, server, controller, ik, now).items():
            samples[role].append(ns)
    return {role: statistics.median(ns) / 1000 for role, ns in samples.items()}


def dtls_handshake_cpu() -> tuple[float, float]:
    """One tinydtls PSK handshake between two engines; CPU of (client, server) in us."""
    psk, identity = secrets.token_bytes(16), b"02:00:00:00:00:00:00:01"
    to_server: list[bytes] = []
    to_client: list[bytes] = []
    connected = []

    def writer(queue: list[bytes]) -> Callable[..., int]:
        def write(*args: Any) -> int:
            queue.append(bytes(args[-1]))
            return len(args[-1])

        return write

    def read(*args: Any) -> int:
        return len(args[-1])

    client = dtls.DTLS(
        read=read,
        write=writer(to_server),
        event=lambda level, code: connected.append(code == DTLS_CONNECTED),
        pskId=identity,
        pskStore={identity: psk},
    )
    server = dtls.DTLS(
        read=read,
        write=writer(to_client),
        event=lambda level, code: None,
        pskId=b"server",
        pskStore={identity: psk},
    )
    spent = {"client": 0, "server": 0}
    start = time.thread_time_ns()
    connection = client.connect("::1", 1)
    spent["client"] += time.thread_time_ns() - start
    session = dtls.Session("::1", 1)
    while to_server or to_client:
        while to_server:
            start = time.thread_time_ns()
            server.handleMessage(session, to_server.pop(0))
            spent["server"] += time.thread_time_ns() - start
        while to_client:
            start = time.thread_time_ns()
            client.handleMessage(connection, to_client.pop(0))
            spent["client"] += time.thread_time_ns() - start
    if not any(connected):
        raise RuntimeError("tinydtls handshake did not complete")
    return spent["client"] / 1000, spent["server"] / 1000


class Stopwatch:
    """Thread CPU time charged to the party named on each step."""

    def __init__(self) -> None:
        self.spent: dict[str, int] = {}

    def on(self, party: str, step: Callable[[], T]) -> T:
        start = time.thread_time_ns()
        result = step()
        self.spent[party] = self.spent.get(party, 0) + time.thread_time_ns() - start
        return result

    def us(self, party: str) -> float:
        return self.spent.get(party, 0) / 1000


def initiator_message_1(authz: lakers.AuthzDevice | None) -> tuple[Any, bytes]:
    """U's first step: an initiator and message_1, with the voucher info as EAD_1."""
    initiator = lakers.EdhocInitiator()
    if authz is None:
        return initiator, initiator.prepare_message_1(c_i=None, ead_1=None)
    secret = initiator.compute_ephemeral_secret(authz.get_g_w())
    ead_1 = authz.prepare_ead_1(secret, initiator.selected_cipher_suite())
    message_1 = initiator.prepare_message_1(c_i=None, ead_1=[ead_1])
    authz.set_h_message_1(initiator.get_h_message_1())
    return initiator, message_1


def initiator_message_3(
    initiator: Any, message_2: bytes, authz: lakers.AuthzDevice | None
) -> tuple[bytes, bytes, bytes]:
    """U's second step: check message_2 (and the voucher in EAD_2); (C_R, message_3, PRK)."""
    c_r, id_cred_r, ead_2 = initiator.parse_message_2(message_2)
    cred_r = CRED_R if authz is None else CRED_V
    if authz is not None and not (ead_2 and authz.process_ead_2(ead_2[0], cred_r)):
        raise RuntimeError("lake-authz: no valid voucher in message_2")
    valid = lakers.credential_check_or_fetch(id_cred_r, lakers.Credential(cred_r))
    initiator.verify_message_2(I_KEY, lakers.Credential(CRED_I), valid)
    message_3, prk = initiator.prepare_message_3(lakers.CredentialTransfer.ByReference, None)
    initiator.completed_without_message_4()
    return bytes(c_r), message_3, prk


def responder_message_3(responder: Any, message_3: bytes) -> bytes:
    id_cred_i, _ = responder.parse_message_3(message_3)
    prk = responder.verify_message_3(
        lakers.credential_check_or_fetch(id_cred_i, lakers.Credential(CRED_I))
    )
    responder.completed_without_message_4()
    return bytes(prk)


def edhoc_exchange() -> tuple[float, float, list[int]]:
    """One EDHOC exchange between two lakers engines: (initiator us, responder us, sizes)."""
    watch = Stopwatch()
    initiator, m1 = watch.on("U", lambda: initiator_message_1(None))

    def responder_step() -> tuple[Any, bytes]:
        responder = lakers.EdhocResponder(R_KEY, lakers.Credential(CRED_R))
        responder.process_message_1(m1)
        return responder, responder.prepare_message_2(lakers.CredentialTransfer.ByReference)

    responder, m2 = watch.on("R", responder_step)
    _, m3, prk_i = watch.on("U", lambda: initiator_message_3(initiator, m2, None))
    prk_r = watch.on("R", lambda: responder_message_3(responder, m3))
    if prk_i != prk_r:
        raise RuntimeError("EDHOC peers disagree")
    return watch.us("U"), watch.us("R"), [len(m1), len(m2), len(m3)]


def authz_exchange(server: lakers.AuthzEnrollmentServer) -> tuple[float, float, float, list[int]]:
    """One lake-authz exchange between lakers engines: (U us, V us, W us, sizes of
    message_1, voucher request, voucher response, message_2, message_3)."""
    watch = Stopwatch()

    def device_step() -> tuple[lakers.AuthzDevice, Any, bytes]:
        device = lakers.AuthzDevice(ID_U, G_W, LOC_W)
        return (device, *initiator_message_1(device))

    device, initiator, m1 = watch.on("U", device_step)

    def authenticator_request() -> tuple[Any, lakers.AuthzAutenticator, bytes]:
        responder = lakers.EdhocResponder(R_KEY, lakers.Credential(CRED_V))
        _, ead_1 = responder.process_message_1(m1)
        authenticator = lakers.AuthzAutenticator()
        _, request = authenticator.process_ead_1(ead_1[0], m1)
        return responder, authenticator, bytes(request)

    responder, authenticator, request = watch.on("V", authenticator_request)
    voucher = watch.on("W", lambda: bytes(server.handle_voucher_request(request)))
    m2 = watch.on(
        "V",
        lambda: responder.prepare_message_2(
            lakers.CredentialTransfer.ByReference, None, [authenticator.prepare_ead_2(voucher)]
        ),
    )
    _, m3, prk_u = watch.on("U", lambda: initiator_message_3(initiator, m2, device))
    prk_v = watch.on("V", lambda: responder_message_3(responder, m3))
    if prk_u != prk_v:
        raise RuntimeError("lake-authz peers disagree")
    sizes = [len(m1), len(request), len(voucher), len(m2), len(m3)]
    return watch.us("U"), watch.us("V"), watch.us("W"), sizes


def median_of(runs: int, one: Callable[[], tuple[float, ...]]) -> list[float]:
    results = [one() for _ in range(runs)]
    return [statistics.median(r[i] for r in results) for i in range(2)]


# -- exchanges over the emulated link -------------------------------------------------


@dataclass
class Setting:
    rate: str
    loss: float

    @property
    def label(self) -> str:
        return f"{self.rate} {int(self.loss * 100)}%"


@dataclass
class Outcome:
    seconds: list[float] = field(default_factory=list)
    failures: int = 0
    air: list[int] = field(default_factory=list)
    wires: dict[str, Wire] = field(default_factory=dict)  # one clean exchange, per link


Exchange = Callable[[], Awaitable[tuple[float, list[tuple[str, bytes]] | None] | None]]
"""One fresh exchange: ``None`` if it failed, else its seconds and, if it is not
everything the constrained link's relay recorded, the datagrams that count."""


async def timed_trials(trials: int, links: dict[str, UdpRelay], exchange: Exchange) -> Outcome:
    """``links`` names the relays to record: "constrained" (6LoWPAN), "backbone"."""
    outcome = Outcome()
    for _ in range(trials):
        await asyncio.sleep(0.3)  # let the channel drain and late retransmissions die out
        for relay in links.values():
            relay.record.datagrams.clear()
        try:
            done = await asyncio.wait_for(exchange(), TIMEOUT)
        except (TimeoutError, aiocoap.error.Error, OSError, NodeUnreachable):
            done = None
        if done is None:
            outcome.failures += 1
            continue
        seconds, counted = done
        wires = {name: Wire(list(relay.record.datagrams)) for name, relay in links.items()}
        if counted is not None:
            wires["constrained"] = Wire(counted)
        outcome.seconds.append(seconds)
        if "constrained" in wires:
            outcome.air.append(wires["constrained"].air)
        if not outcome.wires:
            outcome.wires = wires
    return outcome


async def run_keystrap(
    root: Path, setting: Setting, trials: int, seed: int, deployed: bool = False
) -> Outcome:
    """The real SBS and SBR; the controller reaches the server across the 6LoWPAN
    link or, ``deployed``, across the backbone."""
    link = LowpanLink(LINK_PROFILES[setting.rate], loss=setting.loss, seed=seed)
    site = Site(root, channels=("raw", "raw"), revocation_poll=3600)
    await site.prepare(relay_hook=backbone if deployed else link)
    site.register_controller()
    nodes = iter(site.enrol(trials))
    await site.start()
    assert site.relay is not None

    async def exchange() -> tuple[float, None] | None:
        result = await bootstrap_node(next(nodes), timeout=TIMEOUT, linger=TIMEOUT)
        return (result.seconds, None) if result.outcome == "confirmed" else None

    try:
        name = "backbone" if deployed else "constrained"
        return await timed_trials(trials, {name: site.relay}, exchange)
    finally:
        site.stop()


async def run_keystrap_deployed(root: Path, setting: Setting, trials: int, seed: int) -> Outcome:
    return await run_keystrap(root, setting, trials, seed, deployed=True)


async def run_dtls(root: Path, setting: Setting, trials: int, seed: int) -> Outcome:
    link = LowpanLink(LINK_PROFILES[setting.rate], loss=setting.loss, seed=seed)
    node_id, psk = bytes.fromhex("02000000000000d7"), secrets.token_bytes(16)
    port = free_udp_port()
    node = await Site(root).start_keyed_node(node_id, psk, port)
    relay = await UdpRelay.start("127.0.0.1", free_udp_port(), ("127.0.0.1", port), link)
    get_times: list[float] = []

    async def exchange() -> tuple[float, list[tuple[str, bytes]]] | None:
        client = await NodeClient.connect(node_id, psk, *relay.address, timeout=TIMEOUT)
        try:
            start = time.monotonic()
            await client.read_config()
            first = time.monotonic() - start
            handshake = [d for d in relay.record.datagrams if _is_dtls_handshake(d[1])]
            start = time.monotonic()
            await client.read_config()
            get_times.append(time.monotonic() - start)
            return first, handshake
        finally:
            await client.close()

    try:
        outcome = await timed_trials(trials, {"constrained": relay}, exchange)
    finally:
        relay.close()
        node.stop()
    get = statistics.median(get_times) if get_times else 0.0
    outcome.seconds = [max(0.0, s - get) for s in outcome.seconds]
    return outcome


def _is_dtls_handshake(datagram: bytes) -> bool:
    """A datagram with a Handshake or ChangeCipherSpec record (content types 22, 20)."""
    offset = 0
    while offset + 13 <= len(datagram):
        if datagram[offset] in (20, 22):
            return True
        offset += 13 + int.from_bytes(datagram[offset + 11 : offset + 13], "big")
    return False


class EdhocResource(resource.Resource):  # type: ignore[misc]
    """A responder at /.well-known/edhoc (RFC 9528 A.2), one exchange per C_R."""

    def __init__(self, cred_r: bytes = CRED_R) -> None:
        super().__init__()
        self.cred_r = lakers.Credential(cred_r)
        self.sessions: dict[bytes, Any] = {}
        self.next_c_r = 0

    async def ead_2(self, message_1: bytes, ead_1: list[Any]) -> list[Any] | None:
        """What message_2 carries besides the handshake (nothing in plain EDHOC)."""
        return None

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        payload = request.payload
        if payload[:1] == CBOR_TRUE:
            responder = lakers.EdhocResponder(R_KEY, self.cred_r)
            _, ead_1 = responder.process_message_1(payload[1:])
            ead_2 = await self.ead_2(payload[1:], ead_1)
            self.next_c_r = (self.next_c_r + 1) % 24
            c_r = bytes([self.next_c_r])
            message_2 = responder.prepare_message_2(
                lakers.CredentialTransfer.ByReference, c_r, ead_2
            )
            self.sessions[c_r] = responder
            return aiocoap.Message(code=aiocoap.CHANGED, payload=message_2)
        responder = self.sessions.pop(payload[:1], None)
        if responder is None:
            return aiocoap.Message(code=aiocoap.BAD_REQUEST, payload=b"unknown C_R")
        responder_message_3(responder, payload[1:])
        return aiocoap.Message(code=aiocoap.CHANGED)


class AuthenticatorResource(EdhocResource):
    """V: the EDHOC responder that turns EAD_1 into a voucher request to W and
    W's voucher into EAD_2 before it answers message_1."""

    def __init__(self, client: aiocoap.Context, enrollment_uri: str) -> None:
        super().__init__(CRED_V)
        self.client = client
        self.enrollment_uri = enrollment_uri

    async def ead_2(self, message_1: bytes, ead_1: list[Any]) -> list[Any] | None:
        authenticator = lakers.AuthzAutenticator()
        _, voucher_request = authenticator.process_ead_1(ead_1[0], message_1)
        post = aiocoap.Message(
            code=aiocoap.POST, uri=self.enrollment_uri, payload=bytes(voucher_request)
        )
        answer = await self.client.request(post).response
        return [authenticator.prepare_ead_2(answer.payload)]


class EnrollmentResource(resource.Resource):  # type: ignore[misc]
    """W: answers a voucher request for a device on its ACL with a voucher."""

    def __init__(self) -> None:
        super().__init__()
        self.server = lakers.AuthzEnrollmentServer(W_KEY, CRED_V, [KID_I])

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        voucher = self.server.handle_voucher_request(request.payload)
        return aiocoap.Message(code=aiocoap.CHANGED, payload=bytes(voucher))


async def coap_server(site: resource.Site) -> tuple[aiocoap.Context, int]:
    port = free_udp_port()
    return await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", port)), port


async def run_edhoc(
    root: Path, setting: Setting, trials: int, seed: int, authz: bool = False
) -> Outcome:
    """U on the client side of the 6LoWPAN link, the responder (V) behind it; with
    ``authz``, W behind V across the backbone."""
    link = LowpanLink(LINK_PROFILES[setting.rate], loss=setting.loss, seed=seed)
    contexts: list[aiocoap.Context] = []
    relays: dict[str, UdpRelay] = {}
    responder_site = resource.Site()
    if authz:
        enrollment_site = resource.Site()
        enrollment_site.add_resource(list(VOUCHER_PATH), EnrollmentResource())
        enrollment, w_port = await coap_server(enrollment_site)
        relays["backbone"] = await UdpRelay.start(
            "127.0.0.1", free_udp_port(), ("127.0.0.1", w_port), backbone
        )
        v_client = await aiocoap.Context.create_client_context()
        contexts += [enrollment, v_client]
        w_uri = f"coap://127.0.0.1:{relays['backbone'].address[1]}/" + "/".join(VOUCHER_PATH)
        responder: EdhocResource = AuthenticatorResource(v_client, w_uri)
    else:
        responder = EdhocResource()
    responder_site.add_resource([".well-known", "edhoc"], responder)
    server, port = await coap_server(responder_site)
    relays["constrained"] = await UdpRelay.start(
        "127.0.0.1", free_udp_port(), ("127.0.0.1", port), link
    )
    client = await aiocoap.Context.create_client_context()
    contexts += [server, client]
    uri = f"coap://127.0.0.1:{relays['constrained'].address[1]}/.well-known/edhoc"

    async def exchange() -> tuple[float, None] | None:
        start = time.monotonic()
        device = lakers.AuthzDevice(ID_U, G_W, LOC_W) if authz else None
        initiator, message_1 = initiator_message_1(device)
        post = aiocoap.Message(code=aiocoap.POST, uri=uri, payload=CBOR_TRUE + message_1)
        answer = await client.request(post).response
        c_r, message_3, _ = initiator_message_3(initiator, answer.payload, device)
        post = aiocoap.Message(code=aiocoap.POST, uri=uri, payload=c_r + message_3)
        done = await client.request(post).response
        return (time.monotonic() - start, None) if done.code == aiocoap.CHANGED else None

    try:
        return await timed_trials(trials, relays, exchange)
    finally:
        for relay in relays.values():
            relay.close()
        for context in reversed(contexts):
            await context.shutdown()


async def run_authz(root: Path, setting: Setting, trials: int, seed: int) -> Outcome:
    return await run_edhoc(root, setting, trials, seed, authz=True)


# -- the run ----------------------------------------------------------------------------


RUNNERS: dict[str, Callable[[Path, Setting, int, int], Awaitable[Outcome]]] = {
    "keystrap deployed": run_keystrap_deployed,
    "keystrap": run_keystrap,
    "dtls": run_dtls,
    "edhoc": run_edhoc,
    "authz": run_authz,
}
LINK_INDEPENDENT = {"keystrap deployed"}  # no 6LoWPAN hop: measured once, shown per setting


async def measure(settings: list[Setting], trials: int) -> dict[str, dict[str, Outcome]]:
    results: dict[str, dict[str, Outcome]] = {name: {} for name in RUNNERS}
    for n, setting in enumerate(settings):
        for name, runner in RUNNERS.items():
            if name in LINK_INDEPENDENT and n > 0:
                results[name][setting.label] = results[name][settings[0].label]
                continue
            seed = 1000 + n
            with tempfile.TemporaryDirectory(prefix="keystrap-compare-") as tmp:
                outcome = await runner(Path(tmp), setting, trials, seed)
            results[name][setting.label] = outcome
            ok = len(outcome.seconds)
            print(
                f"  {setting.label:<9} {name:<17} {ok}/{trials} completed, median "
                f"{statistics.median(outcome.seconds) * 1000 if ok else float('nan'):.0f} ms",
                file=sys.stderr,
                flush=True,
            )
    return results


def summarise(
    results: dict[str, dict[str, Outcome]], settings: list[Setting], cpu_runs: int
) -> dict[str, Any]:
    keystrap_cpu = cpu_keystrap(cpu_runs)
    dtls_cpu = median_of(cpu_runs, dtls_handshake_cpu)
    edhoc_runs = [edhoc_exchange() for _ in range(cpu_runs)]
    edhoc_cpu = [  # by position: the tuples mix times and a size list
        statistics.median(r[0] for r in edhoc_runs),
        statistics.median(r[1] for r in edhoc_runs),
    ]
    enrollment = lakers.AuthzEnrollmentServer(W_KEY, CRED_V, [KID_I])
    authz_runs = [authz_exchange(enrollment) for _ in range(cpu_runs)]
    authz_cpu = [
        statistics.median(r[0] for r in authz_runs),
        statistics.median(r[1] for r in authz_runs),
        statistics.median(r[2] for r in authz_runs),
    ]
    clean = settings[0].label
    oob_sizes = [FLIGHT_SIZES[k] for k in OOB_FLIGHTS]
    compact_oob = [COMPACT_SIZES[k] for k in OOB_FLIGHTS]
    device_sent = FLIGHT_SIZES[FlightType.F1_HELLO] + FLIGHT_SIZES[FlightType.F5_PROOF]
    device_received = FLIGHT_SIZES[FlightType.F4_CHALLENGE]

    def wires(name: str) -> dict[str, Wire]:
        found = results[name][clean].wires
        if not found:
            raise RuntimeError(f"{name}: no clean exchange at {clean}")
        return found

    keystrap_common = {
        "device_sent": device_sent,
        "device_received": device_received,
        "cpu_node_us": keystrap_cpu["node"],
        "cpu_relay_us": keystrap_cpu["controller"],
        "cpu_server_us": keystrap_cpu["server"],
        "primitives": PRIMITIVES["keystrap"],
    }
    deployed = wires("keystrap deployed")["backbone"]
    in_band = wires("keystrap")["constrained"]
    rows: dict[str, dict[str, Any]] = {
        "keystrap deployed": {
            "constrained_link": "out of band",
            "messages": len(oob_sizes),
            "payload_bytes": sum(oob_sizes),
            "air_bytes": None,
            "backbone_bytes": deployed.payload,
            "backbone_messages": deployed.messages,
            "round_trips": 1.5,
            "source": "keystrap deployed",
            **keystrap_common,
        },
        "keystrap in-band 6LoWPAN": {
            "constrained_link": "6LoWPAN (controller-server)",
            "messages": in_band.messages,
            "payload_bytes": in_band.payload,
            "air_bytes": in_band.air,
            "backbone_bytes": 0,
            "backbone_messages": 0,
            "round_trips": 2,
            "source": "keystrap",
            **keystrap_common,
        },
        "keystrap all flights": {
            "constrained_link": "6LoWPAN (computed)",
            "messages": in_band.messages + 3,
            "payload_bytes": in_band.payload + sum(oob_sizes),
            "air_bytes": in_band.air + sum(air_bytes(s) for s in oob_sizes),
            "backbone_bytes": 0,
            "backbone_messages": 0,
            "round_trips": 3.5,
            "source": "keystrap",
            "extra_air_seconds": {
                rate: sum(
                    LINK_PROFILES[rate].air_time(f) for s in oob_sizes for f in frame_sizes(s)
                )
                for rate in LINK_PROFILES
            },
            **keystrap_common,
        },
        "keystrap compact deployed": {
            **keystrap_common,
            "constrained_link": "out of band",
            "messages": len(compact_oob),
            "payload_bytes": sum(compact_oob),
            "air_bytes": None,
            "backbone_bytes": compact_wire(deployed).payload,
            "backbone_messages": deployed.messages,
            "device_sent": compact_oob[0] + compact_oob[2],
            "device_received": compact_oob[1],
            "round_trips": 1.5,
            "source": None,
        },
        "keystrap compact in-band": {
            **keystrap_common,
            "constrained_link": "6LoWPAN (controller-server)",
            "messages": in_band.messages,
            "payload_bytes": compact_wire(in_band).payload,
            "air_bytes": compact_wire(in_band).air,
            "backbone_bytes": 0,
            "backbone_messages": 0,
            "device_sent": compact_oob[0] + compact_oob[2],
            "device_received": compact_oob[1],
            "round_trips": 2,
            "source": None,
        },
    }
    for name, label, trips, cpu in (
        ("dtls", "DTLS 1.2 PSK CCM_8", 3, [dtls_cpu[0], None, dtls_cpu[1]]),
        ("edhoc", "EDHOC (lakers)", 2, [edhoc_cpu[0], None, edhoc_cpu[1]]),
        ("authz", "lake-authz (lakers)", 2, authz_cpu),
    ):
        found = wires(name)
        wire, over = found["constrained"], found.get("backbone", Wire())
        rows[label] = {
            "constrained_link": "6LoWPAN (device-responder)",
            "messages": wire.messages,
            "payload_bytes": wire.payload,
            "air_bytes": wire.air,
            "backbone_bytes": over.payload,
            "backbone_messages": over.messages,
            "device_sent": wire.sent("up"),
            "device_received": wire.sent("down"),
            "round_trips": trips,
            "cpu_node_us": cpu[0],
            "cpu_relay_us": cpu[1],
            "cpu_server_us": cpu[2],
            "primitives": PRIMITIVES[name],
            "source": name,
        }
    for row in rows.values():
        row["time"] = {}
        if row["source"] is None:
            continue  # computed from another row's datagrams: no exchange of its own
        outcomes = results[row["source"]]
        extra = row.get("extra_air_seconds", {})
        for setting in settings:
            outcome = outcomes[setting.label]
            shift = extra.get(setting.rate, 0.0)
            seconds = [s + shift for s in outcome.seconds]
            row["time"][setting.label] = {
                "median_ms": round(statistics.median(seconds) * 1000, 1) if seconds else None,
                "p99_ms": round(pct(seconds, 0.99) * 1000, 1) if seconds else None,
                "completed": len(seconds),
                "failed": outcome.failures,
                "mean_air_bytes": round(statistics.mean(outcome.air)) if outcome.air else None,
            }
    return {
        "backbone_one_way_ms": BACKBONE_DELAY * 1000,
        "edhoc_message_sizes": edhoc_runs[0][2],
        "authz_message_sizes": dict(
            zip(
                ("message_1", "voucher_request", "voucher_response", "message_2", "message_3"),
                authz_runs[0][3],
                strict=True,
            )
        ),
        "rows": rows,
    }


def ratio(ours: float | None, theirs: float | None) -> str:
    if not ours or not theirs:
        return "-"
    return f"{ours / theirs:.2f}"


def cell(value: float | None, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.0f}"


def print_table(summary: dict[str, Any], settings: list[Setting]) -> None:
    rows = summary["rows"]
    print(
        "Static cost per exchange (lossless run). Constrained link: what the device's own"
        " link carries (UDP payload; air = PHY+MAC+6LoWPAN); backbone: one way "
        f"{summary['backbone_one_way_ms']:.0f} ms, no loss"
    )
    print(
        f"  {'protocol':<26} {'msgs':>4} {'constr B':>8} {'air B':>6} {'backbone B':>10} "
        f"{'dev tx/rx B':>11} {'RTTs':>5} {'device us':>9} {'relay us':>8} {'server us':>9}"
    )
    for label, r in rows.items():
        device = f"{r['device_sent']}/{r['device_received']}"
        print(
            f"  {label:<26} {r['messages']:>4} {r['payload_bytes']:>8} "
            f"{cell(r['air_bytes'], 6)} {r['backbone_bytes']:>10} {device:>11} "
            f"{r['round_trips']:>5} {cell(r['cpu_node_us'], 9)} {cell(r['cpu_relay_us'], 8)} "
            f"{cell(r['cpu_server_us'], 9)}"
        )
    print("  relay = keystrap's controller / lake-authz's V; server = SBS / W / the responder")
    print("  keystrap deployed: the constrained bytes are flights 1, 4, 5 out of band")
    print("  compact rows: the compact profile's flights in the measured CoAP datagrams (computed)")
    print()
    print("Primitives the device needs")
    for label, r in rows.items():
        if not label.startswith("keystrap") or label == "keystrap deployed":
            print(f"  {label:<26} {r['primitives']}")
    print()
    print("Time to complete, median / p99 in ms (completed of trials)")
    header = "".join(f" {s.label:>19}" for s in settings)
    print(f"  {'protocol':<26}{header}")
    for label, r in rows.items():
        if not r["time"]:
            continue
        cells = ""
        for s in settings:
            t = r["time"][s.label]
            if t["median_ms"] is None:
                cells += f" {'none':>19}"
            else:
                cells += f" {t['median_ms']:>8.0f}/{t['p99_ms']:<7.0f}({t['completed']:>2})"
        print(f"  {label:<26}{cells}")
    print("  (keystrap deployed: no 6LoWPAN hop, one run shown in every column; add the")
    print("   out-of-band medium's air time from bench/oob.py)")
    print()
    print("Ratio keystrap / peer (below 1: keystrap costs less)")
    pairs = [
        ("keystrap deployed", "lake-authz (lakers)"),
        ("keystrap deployed", "EDHOC (lakers)"),
        ("keystrap in-band 6LoWPAN", "lake-authz (lakers)"),
        ("keystrap in-band 6LoWPAN", "EDHOC (lakers)"),
        ("keystrap in-band 6LoWPAN", "DTLS 1.2 PSK CCM_8"),
        ("keystrap all flights", "EDHOC (lakers)"),
        ("keystrap compact deployed", "lake-authz (lakers)"),
        ("keystrap compact in-band", "EDHOC (lakers)"),
    ]
    for ours_label, label in pairs:
        ours, peer = rows[ours_label], rows[label]
        times = (
            ", ".join(
                f"{s.label} "
                + ratio(ours["time"][s.label]["median_ms"], peer["time"][s.label]["median_ms"])
                for s in settings
                if ours["time"]
            )
            or "not measured (computed row)"
        )
        device = ratio(
            ours["device_sent"] + ours["device_received"],
            peer["device_sent"] + peer["device_received"],
        )
        print(
            f"  {ours_label} vs {label}: constrained bytes "
            f"{ratio(ours['payload_bytes'], peer['payload_bytes'])}, air bytes "
            f"{ratio(ours['air_bytes'], peer['air_bytes'])}, backbone bytes "
            f"{ratio(ours['backbone_bytes'], peer['backbone_bytes'])}, device bytes {device}, "
            f"device CPU {ratio(ours['cpu_node_us'], peer['cpu_node_us'])}, server CPU "
            f"{ratio(ours['cpu_server_us'], peer['cpu_server_us'])}; median time: {times}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--rates", default="20k,250k")
    parser.add_argument("--losses", default="0,0.1,0.3")
    parser.add_argument("--cpu-runs", type=int, default=300)
    args = parser.parse_args()
    settings = [
        Setting(rate, float(loss))
        for rate in args.rates.split(",")
        for loss in args.losses.split(",")
    ]
    settings.sort(key=lambda s: (s.loss, s.rate))  # the first one is lossless: intrinsic costs
    results = asyncio.run(measure(settings, args.trials))
    summary = summarise(results, settings, args.cpu_runs)
    print_table(summary, settings)
    print(json.dumps({"bench": "compare", "trials": args.trials, **summary}))


if __name__ == "__main__":
    main()
