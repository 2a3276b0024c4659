"""Completion under loss at scale: 10^4 bootstraps per loss setting on a virtual clock.

keystrap: each bootstrap is one :class:`keystrap_lab.simulation.Simulation` (the real
node, controller and server cores, their own retransmission timers, a fresh
``IK`` and ``SK_cs``), driven through its public API. Every delivery first takes
its time on the channel (the fault plan advances the virtual clock by the
message's air time, so one message is in flight at a time, as on one half-duplex
medium), then is dropped or not:

- in band (controller <-> server): an IEEE 802.15.4 / 6LoWPAN path at ``--rate``
  (``keystrap_lab.link.lowpan``'s framing and air time; keystrap's CoAP headers
  as aiocoap encodes them, lake-authz's as bench/compare.py measures them); each
  frame is lost with the setting's probability;
- out of band (flights 1, 4, 5): the light medium's air time per flight
  (``keystrap.oob.light``; ``--medium audio`` for the audio modem), each flight
  lost with ``--oob-loss``; a lost flight is recovered as the node agent does,
  by the cores' timers (the node repeats flight 1, the controller flight 4, and a
  repeated flight 4 makes the node repeat flight 5).

lake-authz on the same clock: the device's two CoAP exchanges with V over the
same 6LoWPAN path (message_1 -> message_2, with V's voucher round trip to W on a
lossless 20 ms backbone; message_3 -> 2.04), each retransmitted by CoAP's own
rule (RFC 7252: ACK_TIMEOUT 2 s x random [1, 1.5], doubled each time,
MAX_RETRANSMIT 4); sizes are those lakers produces (bench/compare.py's
configuration), requests lost or answers lost alike.

A bootstrap counts as completed when it has finished within ``--deadline``
(60 s) of simulated time: keystrap's controller has flight 7 (every party holds
the key and knows it), lake-authz's device has the 2.04 to message_3.

    python bench/loss.py [--runs 10000] [--losses 0,0.1,0.3,0.5] [--profile paper|compact]
                         [--medium light|audio] [--plot docs/loss-curves.png]

Prints a table, then one JSON line; ``--plot`` draws the loss curves from that JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiocoap
from compare import BACKBONE_DELAY, CRED_V, KID_I, W_KEY, authz_exchange

from keystrap.coap.codes import BOOTSTRAP_ROOT
from keystrap.oob.frame import frame
from keystrap.protocol.events import BootstrapConfirmed
from keystrap.wire import COMPACT, VERSION
from keystrap_lab.link import LINK_PROFILES, LinkProfile, frame_sizes
from keystrap_lab.simulation import Fault, Message, one_bootstrap

CONTROLLER_ID = bytes.fromhex("02000000000000c0")
START = 1_800_000_000.0
# CoAP bytes around each EDHOC message, as bench/compare.py's lossless runs carry
# them: requests name their path ("/.well-known/edhoc").
EDHOC_COAP = {"request": 20, "response": 6}
ACK_TIMEOUT, ACK_RANDOM_FACTOR, MAX_RETRANSMIT = 2.0, 1.5, 4  # RFC 7252 section 4.8
QUANTILES = (0.5, 0.9, 0.99, 0.999)


def keystrap_coap() -> dict[str, int]:
    """CoAP bytes around a keystrap flight, encoded by aiocoap as the SBS client and
    server exchange them: a confirmable POST to the bootstrap resource
    (:data:`keystrap.coap.codes.BOOTSTRAP_ROOT`, no Content-Format) and its
    piggybacked 2.04, with the 2-byte token of aiocoap's client."""
    request = aiocoap.Message(code=aiocoap.POST, uri_path=BOOTSTRAP_ROOT)
    response = aiocoap.Message(code=aiocoap.CHANGED)
    for message, kind in ((request, aiocoap.CON), (response, aiocoap.ACK)):
        message.mtype, message.mid, message.token = kind, 1, bytes(2)
    marker = 1  # the payload marker, 0xFF, before any payload
    return {
        "request": len(request.encode()) + marker,
        "response": len(response.encode()) + marker,
    }


KEYSTRAP_COAP = keystrap_coap()


def oob_seconds(medium: str) -> Callable[[int], float]:
    """Air time of an out-of-band flight of n bytes on the medium."""
    if medium == "audio":
        import numpy as np

        from keystrap.oob.audio import SAMPLE_RATE, AudioMedium, from_wav
        from keystrap.oob.medium import encode_flight

        def audio(n: int) -> float:
            samples, _ = from_wav(encode_flight(AudioMedium(), bytes(n)), "audio")
            voiced = np.flatnonzero(np.abs(samples) > 1e-3)
            return float(voiced[-1] - voiced[0]) / SAMPLE_RATE

        return audio
    from keystrap.oob.light import LightMedium, chips_for

    rate = LightMedium().profile.chip_rate
    return lambda n: len(chips_for(frame(bytes(n)))) / rate


@dataclass
class Channel:
    """Per-frame loss and air time of the in-band path; per-flight of the out-of-band one."""

    profile: LinkProfile
    loss: float
    oob_loss: float
    oob_time: Callable[[int], float]
    rng: random.Random

    def datagram(self, size: int) -> tuple[bool, float]:
        """(lost, seconds) for a UDP payload of ``size`` bytes on the 6LoWPAN path."""
        frames = frame_sizes(size)
        lost = any(self.rng.random() < self.loss for _ in frames)
        return lost, sum(self.profile.air_time(f) for f in frames)

    def flight(self, size: int) -> tuple[bool, float]:
        return self.rng.random() < self.oob_loss, self.oob_time(size)


def keystrap_bootstrap(n: int, channel: Channel, deadline: float, version: int) -> float | None:
    """One bootstrap in its own simulation (wire profile ``version``); seconds to
    flight 7, or None."""
    node_id = n.to_bytes(8, "big")
    sk_cs, ik = secrets.token_bytes(16), secrets.token_bytes(16)
    sim = one_bootstrap(
        CONTROLLER_ID, sk_cs, node_id, ik, secrets.token_bytes, version=version, now=START
    )

    def plan(_index: int, message: Message) -> Fault:
        if "server" in (message.sender, message.recipient):
            overhead = KEYSTRAP_COAP["request" if message.recipient == "server" else "response"]
            lost, seconds = channel.datagram(len(message.data) + overhead)
        else:
            lost, seconds = channel.flight(len(message.data))
        sim.now += seconds
        return Fault.DROP if lost else Fault.NONE

    sim.start(node_id)
    sim.run(plan, max_steps=100_000, until=START + deadline)
    for at, party, event in sim.trace.events:
        if party == "controller" and isinstance(event, BootstrapConfirmed):
            return at - START if at - START <= deadline else None
    return None


def authz_bootstrap(sizes: dict[str, int], channel: Channel, deadline: float) -> float | None:
    """The device's two confirmable CoAP exchanges with V, on CoAP's own timers."""
    exchanges = (
        (1 + sizes["message_1"], sizes["message_2"], 2 * BACKBONE_DELAY),
        (1 + sizes["message_3"], 0, 0.0),
    )
    now = 0.0
    for request, response, behind in exchanges:
        timeout = ACK_TIMEOUT * channel.rng.uniform(1, ACK_RANDOM_FACTOR)
        for _ in range(MAX_RETRANSMIT + 1):
            lost, up = channel.datagram(request + EDHOC_COAP["request"])
            if not lost:
                lost, down = channel.datagram(response + EDHOC_COAP["response"])
                if not lost:
                    now += up + behind + down
                    break
            now += timeout
            timeout *= 2
        else:
            return None
    return now if now <= deadline else None


@dataclass
class Curve:
    seconds: list[float]
    runs: int

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.seconds)

        def q(p: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 3)

        return {
            "runs": self.runs,
            "completed": len(ordered),
            "share": len(ordered) / self.runs,
            "mean_s": round(statistics.mean(ordered), 3) if ordered else None,
            **{f"p{str(p * 100).rstrip('0').rstrip('.')}_s": q(p) for p in QUANTILES},
            "cdf": [
                sum(1 for s in ordered if s <= t) / self.runs for t in range(0, 61, 1)
            ],  # share completed by t = 0, 1, ..., 60 s
        }


def run_setting(
    loss: float, args: argparse.Namespace, sizes: dict[str, int], seed: int
) -> dict[str, dict[str, Any]]:
    oob_time = oob_seconds(args.medium)
    version = COMPACT if args.profile == "compact" else VERSION
    out: dict[str, dict[str, Any]] = {}
    for name in ("keystrap", "lake-authz"):
        channel = Channel(
            LINK_PROFILES[args.rate], loss, args.oob_loss, oob_time, random.Random(seed)
        )
        started = time.perf_counter()
        seconds = []
        for n in range(args.runs):
            if name == "keystrap":
                done = keystrap_bootstrap(n + 1, channel, args.deadline, version)
            else:
                done = authz_bootstrap(sizes, channel, args.deadline)
            if done is not None:
                seconds.append(done)
        out[name] = Curve(seconds, args.runs).summary()
        print(
            f"  {int(loss * 100):>3}% {name:<10} {out[name]['share']:.4%} completed "
            f"({time.perf_counter() - started:.0f} s wall)",
            file=sys.stderr,
            flush=True,
        )
    return out


def print_table(results: dict[str, dict[str, dict[str, Any]]], args: argparse.Namespace) -> None:
    print(
        f"Completion within {args.deadline:.0f} s simulated, {args.runs} bootstraps per cell "
        f"(in-band 6LoWPAN {args.rate}, out of band: {args.medium}, {args.oob_loss:.0%} lost; "
        f"keystrap's {args.profile} profile)"
    )
    print(
        f"  {'loss':>5} {'protocol':<11} {'completed':>10} {'mean s':>7} {'p50 s':>6} "
        f"{'p90 s':>6} {'p99 s':>6} {'p99.9 s':>7}"
    )
    for loss, rows in results.items():
        for name, r in rows.items():
            cells = " ".join(
                f"{'-' if r[k] is None else format(r[k], '.2f'):>{w}}"
                for k, w in (
                    ("mean_s", 7),
                    ("p50_s", 6),
                    ("p90_s", 6),
                    ("p99_s", 6),
                    ("p99.9_s", 7),
                )
            )
            print(f"  {loss:>5} {name:<11} {r['share']:>10.3%} {cells}")


def plot(report: dict[str, Any], path: Path) -> None:
    """Share completed against time, one curve per protocol and loss, from the JSON."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5), dpi=120)
    styles = {"keystrap": "-", "lake-authz": "--"}
    colours = ["tab:green", "tab:blue", "tab:orange", "tab:red"]
    for colour, (loss, rows) in zip(colours, report["results"].items(), strict=False):
        for name, r in rows.items():
            axis.plot(
                range(len(r["cdf"])),
                [100 * s for s in r["cdf"]],
                styles[name],
                color=colour,
                label=f"{name}, {loss} loss ({r['share']:.2%})",
            )
    axis.set_xlabel("simulated seconds since the bootstrap began")
    axis.set_ylabel("% of bootstraps completed")
    axis.set_title(
        f"{report['runs']} bootstraps per curve; in band 6LoWPAN {report['rate']}, "
        f"out of band {report['medium']} ({report['oob_loss']:.0%} lost), {report['profile']}"
    )
    axis.set_ylim(0, 100.5)
    axis.set_xlim(0, report["deadline"])
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path)


def lakers_server() -> Any:
    """W as bench/compare.py configures it, to have lakers size the messages."""
    import lakers

    return lakers.AuthzEnrollmentServer(W_KEY, CRED_V, [KID_I])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--losses", default="0,0.1,0.3,0.5")
    parser.add_argument("--oob-loss", type=float, default=0.1)
    parser.add_argument("--medium", choices=("light", "audio"), default="light")
    parser.add_argument("--rate", choices=sorted(LINK_PROFILES), default="20k")
    parser.add_argument("--deadline", type=float, default=60.0)
    parser.add_argument("--profile", choices=("paper", "compact"), default="paper")
    parser.add_argument("--plot", type=Path, help="write the loss curves (PNG) here")
    args = parser.parse_args()
    authz_sizes = dict(
        zip(
            ("message_1", "voucher_request", "voucher_response", "message_2", "message_3"),
            authz_exchange(lakers_server())[3],
            strict=True,
        )
    )
    results = {
        f"{int(float(loss) * 100)}%": run_setting(float(loss), args, authz_sizes, seed=7 + n)
        for n, loss in enumerate(args.losses.split(","))
    }
    print_table(results, args)
    report = {
        "bench": "loss",
        "runs": args.runs,
        "rate": args.rate,
        "medium": args.medium,
        "profile": args.profile,
        "oob_loss": args.oob_loss,
        "deadline": args.deadline,
        "authz_sizes": authz_sizes,
        "results": results,
    }
    print(json.dumps(report))
    if args.plot is not None:
        plot(report, args.plot)


if __name__ == "__main__":
    main()
