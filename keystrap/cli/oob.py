"""``keystrap oob encode|decode``: try each out-of-band medium by hand."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from keystrap.cli.arg_types import seconds, whole_number
from keystrap.cli.stderr import c_libraries_silenced
from keystrap.oob.frame import MAX_FLIGHT, OobDecodeError, frame, unframe
from keystrap.oob.medium import MEDIA, Medium, decode_flight, encode_flight, get_medium
from keystrap.store.atomic import write_new
from keystrap.store.bounded_read import read_bounded

if TYPE_CHECKING:
    from keystrap.wire import FlightType

CAMERA = whole_number(0, 2**31 - 1, "a camera index")  # OpenCV crashed on a negative one
RECORDING = seconds(600, "a recording")
CHANNEL_HELP = "the medium: qr, nfc, audio, light, or raw (the frame's bytes as they are)"
MAX_SIGNAL = 256 * 1024 * 1024
"""Bytes of a signal file ``decode`` reads: a light trace of the most samples
the light medium takes (``MAX_TRACE_SAMPLES``, one line each) fits."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    oob = sub.add_parser(
        "oob",
        help="encode a flight into a medium's signal, or decode one",
        description="Turn a flight (1, 4 or 5) into a QR code, an NDEF message, a WAV file or "
        "a light schedule, and back. Decoding a light 'schedule' samples it as an ideal "
        "sensor would; a measured luminance trace is decoded as it is.",
    )
    what = oob.add_subparsers(dest="oob_command", required=True, metavar="ACTION")
    enc = what.add_parser("encode", help="flight -> signal file")
    enc.add_argument("--channel", choices=MEDIA, required=True, help=CHANNEL_HELP)
    source = enc.add_mutually_exclusive_group(required=True)
    source.add_argument("--hex", help="the flight as hex digits")
    source.add_argument("--in", dest="infile", type=Path, help="a file holding the flight bytes")
    enc.add_argument("--out", type=Path, help="signal file to write (PNG/SVG, .ndef, .wav, .csv)")
    enc.add_argument("--force", action="store_true", help="replace --out if it exists")
    enc.add_argument(
        "--format",
        choices=("png", "svg", "terminal"),
        default="png",
        help="QR code only: image format, or print it in the terminal (default png)",
    )
    enc.add_argument("--play", action="store_true", help="audio only: also play it")
    enc.add_argument("--tag", action="store_true", help="nfc only: write to a tag on a reader")
    dec = what.add_parser("decode", help="signal file -> flight")
    dec.add_argument("--channel", choices=MEDIA, required=True, help=CHANNEL_HELP)
    dec.add_argument("file", type=Path, nargs="?", help="the captured signal")
    dec.add_argument("--camera", type=CAMERA, help="qr only: read from this camera instead")
    dec.add_argument("--record", type=RECORDING, help="audio only: record this many seconds")
    dec.add_argument("--tag", action="store_true", help="nfc only: read a tag on a reader")


def run(args: argparse.Namespace) -> int:
    medium = get_medium(args.channel)
    if args.oob_command == "encode":
        return _encode(medium, args)
    return _decode(medium, args)


def _encode(medium: Medium, args: argparse.Namespace) -> int:
    source = "--hex" if args.infile is None else str(args.infile)
    try:
        flight = (
            bytes.fromhex(args.hex)
            if args.infile is None
            else read_bounded(args.infile, MAX_FLIGHT, "flight file")
        )
        kind = _check_flight(flight)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    if args.format != "png" and medium.name != "qr":
        raise ValueError("--format applies to the qr channel only")
    if args.format == "terminal":
        from keystrap.oob.qr import QrMedium

        assert isinstance(medium, QrMedium)
        print(medium.terminal(frame(flight)), end="")
        return 0
    if args.play or args.tag:
        _device_send(medium, flight, args)
    if args.out is None:
        if args.play or args.tag:
            return 0
        raise ValueError("give --out FILE (or --format terminal)")
    if args.format == "svg":
        from keystrap.oob.qr import QrMedium

        assert isinstance(medium, QrMedium)
        signal = medium.svg(frame(flight))
    else:
        signal = encode_flight(medium, flight)
    write_new(args.out, signal, force=args.force)
    print(
        f"{medium.name}: flight {int(kind)} ({len(flight)} bytes, frame "
        f"{len(flight) + 3}) -> {args.out} ({len(signal)} bytes)"
    )
    return 0


def _decode(medium: Medium, args: argparse.Namespace) -> int:
    if args.camera is not None or args.record is not None or args.tag:
        payload = _device_receive(medium, args)
        flight = unframe(payload, medium.name)
    else:
        if args.file is None:
            raise ValueError("give the signal file to decode")
        signal = read_bounded(args.file, MAX_SIGNAL, "signal file")
        if medium.name == "light" and signal.startswith(b"# keystrap light schedule"):
            signal = medium.capture(signal)
        with c_libraries_silenced():
            flight = decode_flight(medium, signal)
    kind = _check_flight(flight, medium.name)
    print(f"{medium.name}: flight {int(kind)} ({kind.name}), {len(flight)} bytes: {flight.hex()}")
    return 0


def _check_flight(flight: bytes, channel: str | None = None) -> FlightType:
    """An out-of-band flight of the right size, or a clear error. (The wire
    codec is imported here: ``keystrap``'s other commands start without it.)"""
    from keystrap.wire import DecodeError, FlightType, flight_class

    try:
        kind = flight_class(flight)
    except DecodeError as exc:
        message = f"not a keystrap flight ({exc})"
        raise (OobDecodeError(channel, message) if channel else ValueError(message)) from None
    oob_flights = (FlightType.F1_HELLO, FlightType.F4_CHALLENGE, FlightType.F5_PROOF)
    if kind.TYPE not in oob_flights or not kind.matches(flight):
        message = f"flight {int(kind.TYPE)} of {len(flight)} bytes is not an out-of-band flight"
        raise OobDecodeError(channel, message) if channel else ValueError(message)
    return kind.TYPE


def _device_send(medium: Medium, flight: bytes, args: argparse.Namespace) -> None:
    from keystrap.oob.audio import AudioMedium
    from keystrap.oob.nfc import NfcMedium

    if args.play and isinstance(medium, AudioMedium):
        medium.play(frame(flight))
    elif args.tag and isinstance(medium, NfcMedium):
        medium.write_tag(frame(flight))
    else:
        raise ValueError("--play is for the audio channel, --tag for nfc")


def _device_receive(medium: Medium, args: argparse.Namespace) -> bytes:
    from keystrap.oob.audio import AudioMedium
    from keystrap.oob.nfc import NfcMedium
    from keystrap.oob.qr import QrMedium

    if args.camera is not None and isinstance(medium, QrMedium):
        return medium.from_camera(args.camera)
    if args.record is not None and isinstance(medium, AudioMedium):
        return medium.record(args.record)
    if args.tag and isinstance(medium, NfcMedium):
        return medium.read_tag()
    raise ValueError("--camera is for qr, --record for audio, --tag for nfc")
