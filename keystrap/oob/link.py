"""A session that carries every flight through a physical medium's full signal path.

The sender modulates (QR image, NDEF message, audio, brightness schedule); the
receiver captures and demodulates. Media are chosen per direction. A signal that
does not decode is reported (logged, and kept in ``errors``) and nothing reaches
the protocol; the receiver keeps listening, as a scanner would.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from keystrap.oob.channel import OobLink
from keystrap.oob.frame import OobDecodeError
from keystrap.oob.medium import Medium, decode_flight, encode_flight
from keystrap.store.atomic import make_private_dirs
from keystrap.wire import CompactFlight11, Flight11, Flight12

log = logging.getLogger("keystrap.oob")
_RAW = (Flight11, CompactFlight11, Flight12)


def travels_raw(frame: bytes) -> bool:
    """Flights 11 and 12 are carried on the session as they are, never through
    the medium.

    It tells the node's host that the server confirmed; the node itself acts on
    nothing but flight 4, so a device whose medium has no room for it loses
    nothing. No medium's signal is 13 bytes starting with 0x1B or 0x2B (flight
    11 of either profile).
    """
    return any(flight.matches(frame) for flight in _RAW)


_serial = itertools.count(1)


class MediumLink:
    def __init__(
        self,
        inner: OobLink,
        send_medium: Medium,
        receive_medium: Medium,
        capture_dir: Path | None = None,
        label: str = "oob",
        impair: Callable[[bytes], bytes] | None = None,
    ) -> None:
        """``impair`` alters each captured signal before it is decoded (tests and
        benchmarks: a blurred photo, a noisy room, a drifting clock)."""
        self._inner = inner
        self._impair = impair
        self.send_medium = send_medium
        self.receive_medium = receive_medium
        self._capture_dir = capture_dir
        self._label = label
        self.errors: list[OobDecodeError] = []

    async def send(self, flight: bytes) -> None:
        if travels_raw(flight):
            await self._inner.send(flight)
            return
        signal = await asyncio.to_thread(encode_flight, self.send_medium, flight)
        self._keep(signal, self.send_medium, "sent")
        await self._inner.send(signal)

    async def receive(self, timeout: float | None = None) -> bytes | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            signal = await self._inner.receive(remaining)
            if signal is None or travels_raw(signal):
                return signal
            medium = self.receive_medium
            try:
                captured = await asyncio.to_thread(medium.capture, signal)
                if self._impair is not None:
                    captured = await asyncio.to_thread(self._impair, captured)
                self._keep(captured, medium, "received")
                return await asyncio.to_thread(decode_flight, medium, captured)
            except OobDecodeError as exc:
                self.errors.append(exc)
                log.warning("%s: unreadable signal discarded: %s", self._label, exc)
            if deadline is not None and time.monotonic() >= deadline:
                return None

    async def close(self) -> None:
        await self._inner.close()

    def _keep(self, signal: bytes, medium: Medium, direction: str) -> None:
        """Write the signal to the capture directory, so a person can look at it.

        Each file is 0600 whatever the umask: a captured flight 4 read with the
        installer's IK gives RN_c, and so the node's new PSK."""
        if self._capture_dir is None:
            return
        make_private_dirs(self._capture_dir)
        while True:  # a name of an earlier run's capture is skipped, never overwritten
            name = f"{self._label}-{next(_serial):05d}-{direction}-{medium.name}{medium.suffix}"
            try:
                fd = os.open(self._capture_dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    out.write(signal)
                return
            except FileExistsError:
                continue
