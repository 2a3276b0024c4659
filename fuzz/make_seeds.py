"""Write the seed corpora of the fuzz targets: ``fuzz/seeds/<target>/``.

A coverage-guided fuzzer started from nothing spends its time on the first
format check (the PNG signature, a CRC, a CCM tag) and rarely reaches the
decoders behind it. One valid input of each kind -- every flight, a QR PNG, an
NDEF message, a WAV, a light schedule and trace, TOML files, a node file, a
bundle, a settings update -- lets it mutate from inside the format. The flights
are sealed under the keys the wire harness opens with, so mutations reach the
code behind the tag check too.

Deterministic: run again, get the same files (``make fuzz-seeds``).
Seed names start with the decoder that must accept them (tests/test_fuzz_seeds.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from keystrap.config import ControllerConfig, ServerConfig, render_config
from keystrap.enrolment import Order, bundle_bytes
from keystrap.oob.audio import SAMPLE_RATE, AudioMedium, to_wav
from keystrap.oob.base45 import b45encode
from keystrap.oob.frame import frame
from keystrap.oob.light import LightMedium
from keystrap.oob.nfc import NfcMedium
from keystrap.oob.qr import QrMedium
from keystrap.protocol import NodeState
from keystrap.store.node_file import NodeFile, encode_node_file
from keystrap.wire import Flight9, Flight12, RefusalReason
from keystrap_lab.vectors import VectorInputs, run_vector

SEEDS = Path(__file__).resolve().parent / "seeds"

# What fuzz_wire.py opens flights with: IK, SK_cs and PSK guesses, ID_c, ID_i.
KEY = bytes(range(16))
CID = bytes(8)
NID = b"\x02" + bytes(7)


def flights() -> dict[int, bytes]:
    """One whole bootstrap under ``KEY`` (as IK and SK_cs), TID 1."""
    inputs = VectorInputs(
        ik=KEY,
        sk_cs=KEY,
        node_id=NID,
        controller_id=CID,
        rn_i=bytes(range(16, 32)),
        rn_c=bytes(range(32, 48)),
        tid=1,
        ts=1_700_000_000,
    )
    found = run_vector(inputs)["flights"]
    assert isinstance(found, dict)
    return {int(n): bytes.fromhex(h) for n, h in found.items()}


def seeds() -> dict[str, dict[str, bytes]]:
    wire = {f"flight-{n}": data for n, data in flights().items()}
    wire["flight-12"] = Flight12(NID, RefusalReason.UNKNOWN_NODE).encode()
    wire["revocation-query"] = Flight9(CID, 0, bytes(8)).seal(KEY)
    out_of_band = {n: data for n, data in flights().items() if n in (1, 4, 5)}
    light = LightMedium()
    oob: dict[str, bytes] = {}
    for n, flight in out_of_band.items():
        framed = frame(flight)
        oob[f"frame-{n}"] = framed
        oob[f"ndef-{n}"] = NfcMedium().modulate(framed)
        oob[f"schedule-{n}"] = light.modulate(framed)
        oob[f"base45-{n}"] = b45encode(framed).encode()
    oob["trace-1"] = light.capture(light.modulate(frame(out_of_band[1])))
    # The harness parses WAV files (from_wav); the head of a real signal keeps the
    # corpus, and libFuzzer's input size limit (the largest seed), small.
    oob["wav-head"] = to_wav(AudioMedium().samples(frame(out_of_band[1]))[:4096], SAMPLE_RATE)
    qr = {f"png-{n}": QrMedium().modulate(frame(f)) for n, f in out_of_band.items()}
    order = Order(1, "acme", CID, "127.0.0.1", 5684, "unix:oob.sock", "shared", KEY, {NID: KEY})
    node = NodeFile(NodeState(NID, CID, KEY), "127.0.0.1", 5684, "unix:oob.sock")
    config = {
        "server-toml": render_config(ServerConfig()).encode(),
        "controller-toml": render_config(ControllerConfig()).encode(),
        "node-file": encode_node_file(node),
        "bundle": bundle_bytes(order),
    }
    update = {
        "network": {"domain": "example.org", "gateway": "192.0.2.1", "proxy": "coap://p:5683"},
        "application": {"name": "kitchen", "sample_interval": 60, "units": "si"},
    }
    settings = {"update": json.dumps(update).encode()}
    return {"wire": wire, "oob": oob, "qr": qr, "config": config, "settings": settings}


def main() -> int:
    for target, files in seeds().items():
        folder = SEEDS / target
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            if old.name not in files:
                old.unlink()  # a seed this script no longer makes
        for name, data in files.items():
            (folder / name).write_bytes(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
