"""Fuzz the out-of-band decoders: common frame, Base45, NDEF, light traces, WAV."""

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from keystrap.oob.audio import from_wav
    from keystrap.oob.base45 import Base45Error, b45decode
    from keystrap.oob.frame import OobDecodeError, unframe
    from keystrap.oob.light import LightMedium, parse_schedule
    from keystrap.oob.nfc import NfcMedium


def one_input(data: bytes) -> None:
    for decode in (
        lambda d: unframe(d, "fuzz"),
        NfcMedium().demodulate,
        LightMedium().demodulate,
        lambda d: parse_schedule(d, "light"),
        lambda d: from_wav(d, "audio"),
    ):
        with contextlib.suppress(OobDecodeError):
            decode(data)
    with contextlib.suppress(Base45Error):
        b45decode(data.decode("latin-1"))


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
