"""QR code: the frame as Base45 text in alphanumeric mode, rendered with segno
(PNG, SVG, or the terminal) and read back with OpenCV's detector.

Content: ``KS1:`` followed by Base45 of the frame. The prefix tells a keystrap
code from any other QR code before anything is decoded. Error correction level Q
(25 % of the code words may be lost) keeps a printed or displayed code readable
when it is scaled, tilted, blurred or noisy.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import segno

from keystrap.oob.base45 import Base45Error, b45decode, b45encode
from keystrap.oob.frame import OobDecodeError

PREFIX = "KS1:"


class QrMedium:
    name = "qr"
    suffix = ".png"

    def __init__(self, scale: int = 6, error: str = "q") -> None:
        self.scale = scale
        self.error = error

    def symbol(self, frame: bytes) -> segno.QRCode:
        return segno.make_qr(PREFIX + b45encode(frame), error=self.error, boost_error=False)

    def modulate(self, frame: bytes) -> bytes:
        buffer = io.BytesIO()
        self.symbol(frame).save(buffer, kind="png", scale=self.scale, border=4)
        return buffer.getvalue()

    def svg(self, frame: bytes) -> bytes:
        buffer = io.BytesIO()
        self.symbol(frame).save(buffer, kind="svg", scale=self.scale, border=4)
        return buffer.getvalue()

    def terminal(self, frame: bytes) -> str:
        buffer = io.StringIO()
        self.symbol(frame).terminal(out=buffer, compact=True)
        return buffer.getvalue()

    def capture(self, emitted: bytes) -> bytes:
        return emitted

    def demodulate(self, captured: bytes) -> bytes:
        cv2 = _opencv()
        if not captured:
            raise OobDecodeError(self.name, "empty image file")
        _check_png_chunks(captured, self.name)
        try:
            image = cv2.imdecode(np.frombuffer(captured, np.uint8), cv2.IMREAD_GRAYSCALE)
        except cv2.error:  # e.g. a header that claims more pixels than OpenCV allows
            image = None
        if image is None:
            raise OobDecodeError(self.name, "not an image OpenCV can read")
        return self.decode_image(image)

    def decode_image(self, image: np.ndarray) -> bytes:
        """Decode from a grayscale image array (a file, or a camera frame)."""
        cv2 = _opencv()
        text = ""
        for detector in (cv2.QRCodeDetector(), cv2.QRCodeDetectorAruco()):
            text, _, _ = detector.detectAndDecode(image)
            if text:
                break
        if not text:
            raise OobDecodeError(self.name, "no readable QR code in the image")
        if not text.startswith(PREFIX):
            raise OobDecodeError(
                self.name, "the QR code holds something else, not a keystrap flight"
            )
        try:
            return b45decode(text[len(PREFIX) :])
        except Base45Error as exc:
            raise OobDecodeError(self.name, f"bad Base45 content: {exc}") from None

    def from_camera(self, device: int = 0, frames: int = 150) -> bytes:
        """Read the frame from camera frames (OpenCV VideoCapture) until one decodes."""
        cv2 = _opencv()
        camera = cv2.VideoCapture(device)
        if not camera.isOpened():
            raise OobDecodeError(self.name, f"no camera at index {device}")
        try:
            last: OobDecodeError | None = None
            for _ in range(frames):
                ok, picture = camera.read()
                if not ok:
                    break
                try:
                    return self.decode_image(cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY))
                except OobDecodeError as exc:
                    last = exc
            raise last or OobDecodeError(self.name, "camera delivered no frames")
        finally:
            camera.release()


def _opencv() -> Any:
    """OpenCV, told to keep quiet: it prints its own complaint on stderr about
    every unreadable file and every camera it cannot open (two ``[ WARN ]`` lines
    for a missing one); the error we raise says it once, naming the channel."""
    import cv2
    import cv2.utils.logging

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    return cv2


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png_chunks(data: bytes, channel: str) -> None:
    """Refuse a PNG whose chunk lengths run past the end of the file.

    OpenCV allocates what a chunk's length field claims before reading it: a
    375-byte file claiming a 2.6 GB IDAT made it take 2.5 GB (found by fuzzing
    from the seed corpus). Other image formats go to OpenCV as they are.
    """
    if not data.startswith(PNG_SIGNATURE):
        return
    position = len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        position += 12 + length  # length, type, data, CRC
        if position > len(data):
            raise OobDecodeError(channel, "truncated or malformed PNG file")
        if kind == b"IEND":
            return
