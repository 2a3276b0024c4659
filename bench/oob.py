"""Out-of-band benchmark: for each medium and each out-of-band flight (1, 4, 5), the
bytes, symbols and seconds on air, and the decode success rate over impairments.

Impairments: QR codes scaled, rotated, blurred and noisy (tests' list, cycled);
audio with white noise at 10 dB SNR, attenuation to 5 %, and a receiver clock
off by up to +-0.2 %; light with sensor noise (20 % of the swing), edge jitter
(+-10 % of a chip) and sender clock drift up to +-3 %; NFC with one flipped bit
(a success there means the damage was *detected*). Prints a table, then a JSON line.

    python bench/oob.py [--trials 20] [--profile paper|compact]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from keystrap.oob.audio import SAMPLE_RATE, AudioMedium, from_wav
from keystrap.oob.frame import OobDecodeError, frame
from keystrap.oob.impair import QR_IMPAIRMENTS, impair_audio, impair_qr
from keystrap.oob.light import LightMedium, chips_for, sample_schedule, write_trace
from keystrap.oob.medium import decode_flight, encode_flight
from keystrap.oob.nfc import NfcMedium
from keystrap.oob.qr import QrMedium
from keystrap.vectors import VectorInputs, run_vector
from keystrap.wire import COMPACT, VERSION
from keystrap.wire.compact import derive_rn_c

NFC_BITRATE = 106_000  # ISO 14443-A, bits per second


def sample_flights(version: int) -> dict[str, bytes]:
    """Flights 1, 4, 5 of one bootstrap in the profile ``version`` (2: compact)."""
    sk_cs, controller_id = bytes(range(16, 32)), b"\1" * 8
    rn_c = derive_rn_c(sk_cs, controller_id, 1) if version == COMPACT else bytes(range(48, 64))
    vector = run_vector(
        VectorInputs(
            ik=bytes(range(16)),
            sk_cs=sk_cs,
            node_id=bytes(8),
            controller_id=controller_id,
            rn_i=bytes(range(32, 48)),
            rn_c=rn_c,
            tid=1,
            ts=1_800_000_000,
        ),
        version,
    )
    flights = vector["flights"]
    assert isinstance(flights, dict)
    return {k: bytes.fromhex(flights[k]) for k in ("1", "4", "5")}


def qr_row(flight: bytes, trials: int, rng: np.random.Generator) -> dict[str, object]:
    medium = QrMedium()
    symbol = medium.symbol(frame(flight))
    png = encode_flight(medium, flight)
    ok = 0
    for i in range(trials):
        damaged = impair_qr(png, QR_IMPAIRMENTS[i % len(QR_IMPAIRMENTS)], rng)
        ok += _decodes(medium, damaged, flight)
    return {
        "signal_bytes": len(png),
        "symbols": f"v{symbol.version} {symbol.symbol_size()[0]}"
        f"x{symbol.symbol_size()[0]} modules (with border)",
        "seconds": 0.0,
        "success": ok / trials,
    }


def nfc_row(flight: bytes, trials: int, rng: np.random.Generator) -> dict[str, object]:
    medium = NfcMedium()
    message = encode_flight(medium, flight)
    detected = 0
    for _ in range(trials):
        damaged = bytearray(message)
        damaged[int(rng.integers(len(damaged)))] ^= 1 << int(rng.integers(8))
        try:
            decode_flight(medium, bytes(damaged))
        except OobDecodeError:
            detected += 1
    assert decode_flight(medium, message) == flight
    return {
        "signal_bytes": len(message),
        "symbols": f"{len(message)} NDEF bytes",
        "seconds": len(message) * 8 / NFC_BITRATE,
        "success": detected / trials,
    }


def audio_row(flight: bytes, trials: int, rng: np.random.Generator) -> dict[str, object]:
    medium = AudioMedium()
    wav = encode_flight(medium, flight)
    samples, _ = from_wav(wav, "audio")
    voiced = np.flatnonzero(np.abs(samples) > 1e-3)
    seconds = (voiced[-1] - voiced[0]) / SAMPLE_RATE
    ok = 0
    for _ in range(trials):
        damaged = impair_audio(
            wav, rng, snr_db=10, gain=0.05, rate_factor=1 + float(rng.uniform(-0.002, 0.002))
        )
        ok += _decodes(medium, damaged, flight)
    return {
        "signal_bytes": len(wav),
        "symbols": f"{len(samples)} samples @48 kHz",
        "seconds": seconds,
        "success": ok / trials,
    }


def light_row(flight: bytes, trials: int, rng: np.random.Generator) -> dict[str, object]:
    medium = LightMedium()
    chips = chips_for(frame(flight))
    ok = 0
    for _ in range(trials):
        trace = sample_schedule(
            chips,
            medium.profile.chip_rate,
            medium.profile.sample_rate,
            drift=float(rng.uniform(-0.03, 0.03)),
            jitter=0.1,
            noise=0.2,
            rng=rng,
        )
        ok += _decodes(medium, write_trace(trace, medium.profile.sample_rate), flight)
    return {
        "signal_bytes": len(medium.modulate(frame(flight))),
        "symbols": f"{len(chips)} chips @{medium.profile.chip_rate:g}/s",
        "seconds": len(chips) / medium.profile.chip_rate,
        "success": ok / trials,
    }


def _decodes(medium: object, signal: bytes, flight: bytes) -> int:
    try:
        return int(decode_flight(medium, signal) == flight)  # type: ignore[arg-type]
    except OobDecodeError:
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument(
        "--profile", choices=("paper", "compact"), default="paper", help="whose flights"
    )
    args = parser.parse_args()
    version = COMPACT if args.profile == "compact" else VERSION
    rng = np.random.default_rng(2026)
    rows = []
    print(
        f"{'medium':<6} {'flight':>6} {'frame B':>7} {'signal B':>9} {'on air s':>8} "
        f"{'ok rate':>7}  symbols"
    )
    for name, measure in (
        ("qr", qr_row),
        ("nfc", nfc_row),
        ("audio", audio_row),
        ("light", light_row),
    ):
        for label, flight in sample_flights(version).items():
            start = time.process_time()
            row = measure(flight, args.trials, rng)
            row.update(
                medium=name,
                flight=int(label),
                frame_bytes=len(flight) + 3,
                cpu_ms_per_trial=round((time.process_time() - start) * 1000 / args.trials, 1),
            )
            rows.append(row)
            print(
                f"{name:<6} {label:>6} {len(flight) + 3:>7} {row['signal_bytes']:>9} "
                f"{row['seconds']:>8.3f} {row['success']:>7.0%}  {row['symbols']}",
                flush=True,
            )
    for name in ("qr", "nfc", "audio", "light"):
        total = sum(float(str(r["seconds"])) for r in rows if r["medium"] == name)
        print(f"  {name}: flights 1+4+5 take {total:.2f} s on air")
    print(
        "  (QR: one static image per flight, read as soon as it is in view; NFC 'ok rate' "
        "= damaged messages detected)"
    )
    print(
        json.dumps({"bench": "oob", "profile": args.profile, "trials": args.trials, "rows": rows})
    )


if __name__ == "__main__":
    main()
