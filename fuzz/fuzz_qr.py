"""Fuzz the QR decoder with arbitrary image files."""

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from keystrap.oob.frame import OobDecodeError
    from keystrap.oob.qr import QrMedium

MEDIUM = QrMedium()


def one_input(data: bytes) -> None:
    with contextlib.suppress(OobDecodeError):
        MEDIUM.demodulate(data)


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
