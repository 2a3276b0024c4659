"""Side by side: three ways a node could get a fresh key, on the same emulated
IEEE 802.15.4 / 6LoWPAN link (``keystrap.link``), in one run on one machine.

- keystrap: Kang's scheme through the real SBS and SBR processes; the link sits
  on the in-band path (flights 2, 3, 6, 7 as CoAP); flights 1, 4, 5 go out of
  band. "all flights" also puts flights 1, 4, 5 on the link's frames (computed).
- DTLS 1.2 PSK, TLS_PSK_WITH_AES_128_CCM_8: tinydtls, the stack the node runs
  after bootstrapping (a ``keystrap node --serve`` process and aiocoap's client).
  Time is that of the first GET minus a GET on the established session.
- EDHOC (RFC 9528) with lakers-python: method 3 (static DH keys both sides),
  cipher suite 2, credentials by reference, over CoAP as in RFC 9528 A.2
  (POST /.well-known/edhoc: message_1, then C_R and message_3).

Per link setting (20 and 250 kbit/s, per-frame loss 0/10/30 %): time to
complete (median, p99) over ``--trials`` fresh exchanges. Messages, bytes on
the air (PHY + MAC + 6LoWPAN + UDP payload) and round trips come from the
lossless run; CPU per exchange per side from the protocol engines alone, in
this process, without I/O (keystrap: the sans-I/O cores; DTLS: tinydtls
through DTLSSocket with in-memory datagrams; EDHOC: lakers).

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
from typing import Any

import aiocoap
import aiocoap.resource as resource
import lakers
from core import CONTROLLER_ID, one_bootstrap
from DTLSSocket import dtls

from keystrap.coap.node_client import NodeClient, NodeUnreachable
from keystrap.coap.relay import UdpRelay
from keystrap.link import LINK_PROFILES, LowpanLink, frame_sizes
from keystrap.link.lowpan import PHY_OVERHEAD
from keystrap.protocol import Controller, ControllerState, InMemoryRepository
from keystrap.protocol import Server as SbsCore
from keystrap.services.node_agent import bootstrap_node
from keystrap.services.processes import free_udp_port
from keystrap.services.site import Site
from keystrap.wire import FLIGHT_SIZES, FlightType

TIMEOUT = 45.0  # per exchange; CoAP gives up on a request after 45 s (4 retransmissions)
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
CBOR_TRUE = b"\xf5"
DTLS_CONNECTED = 0x1DE


def air_bytes(payload: int) -> int:
    return sum(size + PHY_OVERHEAD for size in frame_sizes(payload))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Wire:
    """What crossed the link in one exchange, from the relay's recording."""

    datagrams: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def messages(self) -> int:
        return len(self.datagrams)

    @property
    def payload(self) -> int:
        return sum(len(d) for _, d in self.datagrams)

    @property
    def air(self) -> int:
        return sum(air_bytes(len(d)) for _, d in self.datagrams)


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


def edhoc_exchange() -> tuple[float, float, list[int]]:
    """One EDHOC exchange between two lakers engines: (initiator us, responder us, sizes)."""
    cred_i, cred_r = lakers.Credential(CRED_I), lakers.Credential(CRED_R)
    clock = time.thread_time_ns
    t0 = clock()
    initiator = lakers.EdhocInitiator()
    m1 = initiator.prepare_message_1(c_i=None, ead_1=None)
    t1 = clock()
    responder = lakers.EdhocResponder(R_KEY, cred_r)
    _, ead_1 = responder.process_message_1(m1)
    m2 = responder.prepare_message_2(lakers.CredentialTransfer.ByReference, None, ead_1)
    t2 = clock()
    _, id_cred_r, _ = initiator.parse_message_2(m2)
    initiator.verify_message_2(I_KEY, cred_i, lakers.credential_check_or_fetch(id_cred_r, cred_r))
    m3, prk_i = initiator.prepare_message_3(lakers.CredentialTransfer.ByReference, None)
    initiator.completed_without_message_4()
    t3 = clock()
    id_cred_i, _ = responder.parse_message_3(m3)
    prk_r = responder.verify_message_3(lakers.credential_check_or_fetch(id_cred_i, cred_i))
    responder.completed_without_message_4()
    t4 = clock()
    if prk_i != prk_r:
        raise RuntimeError("EDHOC peers disagree")
    return (
        ((t1 - t0) + (t3 - t2)) / 1000,
        ((t2 - t1) + (t4 - t3)) / 1000,
        [len(m1), len(m2), len(m3)],
    )


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
    wire: Wire | None = None  # one clean exchange (first one at 0 % loss)


Exchange = Callable[[], Awaitable[tuple[float, list[tuple[str, bytes]] | None] | None]]
"""One fresh exchange: ``None`` if it failed, else its seconds and, if it is not
everything the relay recorded, the datagrams that count."""


async def timed_trials(trials: int, relay: UdpRelay, exchange: Exchange) -> Outcome:
    outcome = Outcome()
    for _ in range(trials):
        await asyncio.sleep(0.3)  # let the channel drain and late retransmissions die out
        relay.record.datagrams.clear()
        try:
            done = await asyncio.wait_for(exchange(), TIMEOUT)
        except (TimeoutError, aiocoap.error.Error, OSError, NodeUnreachable):
            done = None
        if done is None:
            outcome.failures += 1
            continue
        seconds, counted = done
        wire = Wire(list(relay.record.datagrams) if counted is None else counted)
        outcome.seconds.append(seconds)
        outcome.air.append(wire.air)
        if outcome.wire is None:
            outcome.wire = wire
    return outcome


async def run_keystrap(root: Path, setting: Setting, trials: int, seed: int) -> Outcome:
    link = LowpanLink(LINK_PROFILES[setting.rate], loss=setting.loss, seed=seed)
    site = Site(root, channels=("raw", "raw"), revocation_poll=3600)
    await site.prepare(relay_hook=link)
    site.register_controller()
    nodes = iter(site.enrol(trials))
    await site.start()
    assert site.relay is not None

    async def exchange() -> tuple[float, None] | None:
        result = await bootstrap_node(next(nodes), timeout=TIMEOUT, linger=TIMEOUT)
        return (result.seconds, None) if result.outcome == "confirmed" else None

    try:
        return await timed_trials(trials, site.relay, exchange)
    finally:
        site.stop()


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
        outcome = await timed_trials(trials, relay, exchange)
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

    def __init__(self) -> None:
        super().__init__()
        self.cred_r = lakers.Credential(CRED_R)
        self.cred_i = lakers.Credential(CRED_I)
        self.sessions: dict[bytes, Any] = {}
        self.next_c_r = 0

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        payload = request.payload
        if payload[:1] == CBOR_TRUE:
            responder = lakers.EdhocResponder(R_KEY, self.cred_r)
            _, ead_1 = responder.process_message_1(payload[1:])
            self.next_c_r = (self.next_c_r + 1) % 24
            c_r = bytes([self.next_c_r])
            message_2 = responder.prepare_message_2(
                lakers.CredentialTransfer.ByReference, c_r, ead_1
            )
            self.sessions[c_r] = responder
            return aiocoap.Message(code=aiocoap.CHANGED, payload=message_2)
        responder = self.sessions.pop(payload[:1], None)
        if responder is None:
            return aiocoap.Message(code=aiocoap.BAD_REQUEST, payload=b"unknown C_R")
        id_cred_i, _ = responder.parse_message_3(payload[1:])
        responder.verify_message_3(lakers.credential_check_or_fetch(id_cred_i, self.cred_i))
        responder.completed_without_message_4()
        return aiocoap.Message(code=aiocoap.CHANGED)


async def run_edhoc(root: Path, setting: Setting, trials: int, seed: int) -> Outcome:
    link = LowpanLink(LINK_PROFILES[setting.rate], loss=setting.loss, seed=seed)
    site = resource.Site()
    site.add_resource([".well-known", "edhoc"], EdhocResource())
    port = free_udp_port()
    server = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", port))
    relay = await UdpRelay.start("127.0.0.1", free_udp_port(), ("127.0.0.1", port), link)
    client = await aiocoap.Context.create_client_context()
    uri = f"coap://127.0.0.1:{relay.address[1]}/.well-known/edhoc"
    cred_i, cred_r = lakers.Credential(CRED_I), lakers.Credential(CRED_R)

    async def exchange() -> tuple[float, None] | None:
        start = time.monotonic()
        initiator = lakers.EdhocInitiator()
        message_1 = initiator.prepare_message_1(c_i=None, ead_1=None)
        post = aiocoap.Message(code=aiocoap.POST, uri=uri, payload=CBOR_TRUE + message_1)
        answer = await client.request(post).response
        c_r, id_cred_r, _ = initiator.parse_message_2(answer.payload)
        valid = lakers.credential_check_or_fetch(id_cred_r, cred_r)
        initiator.verify_message_2(I_KEY, cred_i, valid)
        message_3, _ = initiator.prepare_message_3(lakers.CredentialTransfer.ByReference, None)
        post = aiocoap.Message(code=aiocoap.POST, uri=uri, payload=bytes(c_r) + message_3)
        done = await client.request(post).response
        initiator.completed_without_message_4()
        return (time.monotonic() - start, None) if done.code == aiocoap.CHANGED else None

    try:
        return await timed_trials(trials, relay, exchange)
    finally:
        relay.close()
        await client.shutdown()
        await server.shutdown()


# -- the run ----------------------------------------------------------------------------


RUNNERS: dict[str, Callable[[Path, Setting, int, int], Awaitable[Outcome]]] = {
    "keystrap": run_keystrap,
    "dtls": run_dtls,
    "edhoc": run_edhoc,
}


async def measure(settings: list[Setting], trials: int) -> dict[str, dict[str, Outcome]]:
    results: dict[str, dict[str, Outcome]] = {name: {} for name in RUNNERS}
    for n, setting in enumerate(settings):
        for name, runner in RUNNERS.items():
            with tempfile.TemporaryDirectory(prefix="keystrap-compare-") as tmp:
                outcome = await runner(Path(tmp), setting, trials, seed=1000 + n)
            results[name][setting.label] = outcome
            ok = len(outcome.seconds)
            print(
                f"  {setting.label:<9} {name:<9} {ok}/{trials} completed, median "
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
    edhoc_cpu = [statistics.median(r[i] for r in edhoc_runs) for i in range(2)]
    clean = settings[0].label
    oob_sizes = [FLIGHT_SIZES[k] for k in OOB_FLIGHTS]

    def intrinsic(name: str) -> Wire:
        wire = results[name][clean].wire
        if wire is None:
            raise RuntimeError(f"{name}: no clean exchange at {clean}")
        return wire

    ours = intrinsic("keystrap")
    rows: dict[str, dict[str, Any]] = {
        "keystrap in-band": {
            "messages": ours.messages,
            "payload_bytes": ours.payload,
            "air_bytes": ours.air,
            "round_trips": 2,
            "cpu_node_us": keystrap_cpu["node"],
            "cpu_server_us": keystrap_cpu["server"],
            "cpu_controller_us": keystrap_cpu["controller"],
            "source": "keystrap",
        },
        "keystrap all flights": {
            "messages": ours.messages + 3,
            "payload_bytes": ours.payload + sum(oob_sizes),
            "air_bytes": ours.air + sum(air_bytes(s) for s in oob_sizes),
            "round_trips": 3.5,
            "cpu_node_us": keystrap_cpu["node"],
            "cpu_server_us": keystrap_cpu["server"],
            "cpu_controller_us": keystrap_cpu["controller"],
            "source": "keystrap",
            "extra_air_seconds": {
                rate: sum(
                    LINK_PROFILES[rate].air_time(f) for s in oob_sizes for f in frame_sizes(s)
                )
                for rate in LINK_PROFILES
            },
        },
    }
    for name, label, trips, cpu in (
        ("dtls", "DTLS 1.2 PSK CCM_8", 3, dtls_cpu),
        ("edhoc", "EDHOC (lakers)", 2, edhoc_cpu),
    ):
        wire = intrinsic(name)
        rows[label] = {
            "messages": wire.messages,
            "payload_bytes": wire.payload,
            "air_bytes": wire.air,
            "round_trips": trips,
            "cpu_node_us": cpu[0],
            "cpu_server_us": cpu[1],
            "source": name,
        }
    for row in rows.values():
        outcomes = results[row["source"]]
        extra = row.get("extra_air_seconds", {})
        row["time"] = {}
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
    return {"edhoc_message_sizes": edhoc_runs[0][2], "rows": rows}


def ratio(ours: float | None, theirs: float | None) -> str:
    if not ours or not theirs:
        return "-"
    return f"{ours / theirs:.2f}"


def print_table(summary: dict[str, Any], settings: list[Setting]) -> None:
    rows = summary["rows"]
    print("Static cost per exchange (lossless run; air bytes = PHY+MAC+6LoWPAN+UDP payload)")
    print(
        f"  {'protocol':<22} {'msgs':>4} {'UDP B':>6} {'air B':>6} {'RTTs':>5} "
        f"{'node CPU us':>11} {'server CPU us':>13}"
    )
    for label, r in rows.items():
        print(
            f"  {label:<22} {r['messages']:>4} {r['payload_bytes']:>6} {r['air_bytes']:>6} "
            f"{r['round_trips']:>5} {r['cpu_node_us']:>11.0f} {r['cpu_server_us']:>13.0f}"
        )
    print(
        "  (keystrap's controller spends a further "
        f"{rows['keystrap in-band']['cpu_controller_us']:.0f} us)"
    )
    print()
    print("Time to complete, median / p99 in ms (completed of trials)")
    header = "".join(f" {s.label:>19}" for s in settings)
    print(f"  {'protocol':<22}{header}")
    for label, r in rows.items():
        cells = ""
        for s in settings:
            t = r["time"][s.label]
            if t["median_ms"] is None:
                cells += f" {'none':>19}"
            else:
                cells += f" {t['median_ms']:>8.0f}/{t['p99_ms']:<7.0f}({t['completed']:>2})"
        print(f"  {label:<22}{cells}")
    print()
    print("Ratio keystrap / peer (below 1: keystrap costs less)")
    for ours_label in ("keystrap in-band", "keystrap all flights"):
        ours = rows[ours_label]
        for label in ("DTLS 1.2 PSK CCM_8", "EDHOC (lakers)"):
            peer = rows[label]
            times = ", ".join(
                f"{s.label} "
                + ratio(ours["time"][s.label]["median_ms"], peer["time"][s.label]["median_ms"])
                for s in settings
            )
            print(
                f"  {ours_label} vs {label}: messages {ratio(ours['messages'], peer['messages'])}, "
                f"air bytes {ratio(ours['air_bytes'], peer['air_bytes'])}, "
                f"node CPU {ratio(ours['cpu_node_us'], peer['cpu_node_us'])}; median time: {times}"
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
