"""The common out-of-band frame: ``LEN (1) || flight || CRC-16 (2)``.

Every medium carries this frame, so a damaged or truncated signal is caught even
where the medium has no error detection of its own (light), and caught twice
where it has (QR and ggwave's Reed-Solomon, NFC's link CRC). CRC-16/CCITT-FALSE
(poly 0x1021, init 0xFFFF) over LEN and the flight: three bytes of overhead,
which matters on audio and light where each byte costs air time.
"""

from __future__ import annotations

import binascii

from keystrap.oob.channel import OobError

MAX_FLIGHT = 255


class OobDecodeError(OobError):
    """A signal or file did not yield a whole, intact flight. ``channel`` names the medium."""

    def __init__(self, channel: str, reason: str) -> None:
        super().__init__(f"{channel}: {reason}")
        self.channel = channel
        self.reason = reason


def crc16(data: bytes) -> int:
    return binascii.crc_hqx(data, 0xFFFF)


def frame(flight: bytes) -> bytes:
    if not 1 <= len(flight) <= MAX_FLIGHT:
        raise ValueError(f"a flight must be 1..{MAX_FLIGHT} bytes, got {len(flight)}")
    body = bytes([len(flight)]) + flight
    return body + crc16(body).to_bytes(2, "big")


def unframe(data: bytes, channel: str) -> bytes:
    """Return the flight; raise :class:`OobDecodeError` naming ``channel`` otherwise."""
    if len(data) < 4:
        raise OobDecodeError(channel, f"frame too short ({len(data)} bytes)")
    size = data[0]
    if len(data) != size + 3:
        raise OobDecodeError(
            channel, f"frame length mismatch: header says {size}, got {len(data) - 3} bytes"
        )
    body, check = data[:-2], int.from_bytes(data[-2:], "big")
    if crc16(body) != check:
        raise OobDecodeError(channel, "CRC mismatch: the frame was damaged")
    return body[1:]
