"""A medium turns a frame into a signal and back.

``modulate`` gives what the emitter produces (an image, an NDEF message, audio
samples, a brightness schedule); ``capture`` turns that into what a sensor on
the other side records (identity for most media; the light medium samples its
schedule as a photodiode or camera would); ``demodulate`` decodes a captured
signal. Decoders raise :class:`keystrap.oob.frame.OobDecodeError` naming the
medium and what was wrong, and never hand a damaged frame on.
"""

from __future__ import annotations

from typing import Protocol

from keystrap.extras import require_medium
from keystrap.oob.frame import frame, unframe


class Medium(Protocol):
    name: str
    suffix: str  # file suffix of a captured signal, e.g. ".png"

    def modulate(self, frame: bytes) -> bytes: ...

    def capture(self, emitted: bytes) -> bytes: ...

    def demodulate(self, captured: bytes) -> bytes: ...


def encode_flight(medium: Medium, flight: bytes) -> bytes:
    return medium.modulate(frame(flight))


def decode_flight(medium: Medium, captured: bytes) -> bytes:
    return unframe(medium.demodulate(captured), medium.name)


class RawMedium:
    """No physical medium: the frame as it is (CRC still checked). For local tests
    and benchmarks of everything but the medium."""

    name = "raw"
    suffix = ".bin"

    def modulate(self, frame: bytes) -> bytes:
        return frame

    def capture(self, emitted: bytes) -> bytes:
        return emitted

    def demodulate(self, captured: bytes) -> bytes:
        return captured


def get_medium(name: str) -> Medium:
    """The medium called ``name`` (qr, nfc, audio, light, raw), imported on demand;
    :class:`keystrap.extras.MissingExtra` if its libraries are not installed."""
    require_medium(name)
    if name == "raw":
        return RawMedium()
    if name == "qr":
        from keystrap.oob.qr import QrMedium

        return QrMedium()
    if name == "nfc":
        from keystrap.oob.nfc import NfcMedium

        return NfcMedium()
    if name == "audio":
        from keystrap.oob.audio import AudioMedium

        return AudioMedium()
    if name == "light":
        from keystrap.oob.light import LightMedium

        return LightMedium()
    raise ValueError(f"unknown out-of-band channel {name!r}; choose one of {', '.join(MEDIA)}")


MEDIA = ("qr", "nfc", "audio", "light", "raw")
