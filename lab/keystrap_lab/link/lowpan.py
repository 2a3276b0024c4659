"""An IEEE 802.15.4 / 6LoWPAN path, emulated as a :class:`keystrap_lab.relay.UdpRelay`
hook: each UDP datagram is cut into 127-byte frames, the frames take their air
time on one shared half-duplex channel, each frame may be lost, and the
datagram arrives (whole) when its last frame has, or never if any frame is lost.

Framing, per frame (RFC 4944, RFC 6282, IEEE 802.15.4-2015):

- PHY: 4-byte preamble, 1-byte SFD, 1-byte length (6 bytes, not in the 127);
- MAC: frame control 2, sequence 1, PAN ID 2, short destination and source
  addresses 2 + 2, FCS 2 (11 bytes), leaving 116 bytes of MAC payload;
- 6LoWPAN: IPHC with link-local addresses derived from the MAC addresses
  (2 bytes) and UDP NHC with ports inline and the checksum (7 bytes) -- the
  48 bytes of IPv6 and UDP headers travel as 9;
- fragmentation when that does not fit: FRAG1 header 4 bytes, FRAGN 5 bytes,
  every fragment but the last carrying a multiple of 8 bytes of the
  uncompressed datagram.

Timing per frame: unslotted CSMA-CA (a random initial backoff of 0-7 units of
20 symbols, then an 8-symbol CCA), the frame's air time, the 12-symbol
turnaround and the 11-byte acknowledgement. ``loss`` is the per-frame loss
that the upper layers see, i.e. after any link-layer retries; nothing here
retransmits. ``delay`` adds a fixed one-way latency per datagram (forwarding
over several hops, processing).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from keystrap_lab.relay import Delayed, Outgoing

MAX_FRAME = 127
PHY_OVERHEAD = 6
MAC_OVERHEAD = 11
MAC_PAYLOAD = MAX_FRAME - MAC_OVERHEAD
COMPRESSED_IP_UDP = 9
UNCOMPRESSED_IP_UDP = 48
FRAG1 = 4
FRAGN = 5
ACK_FRAME = 5
BACKOFF_UNIT_SYMBOLS = 20
CCA_SYMBOLS = 8
TURNAROUND_SYMBOLS = 12


@dataclass(frozen=True)
class LinkProfile:
    name: str
    bitrate: int  # bits per second
    bits_per_symbol: int

    @property
    def symbol(self) -> float:
        return self.bits_per_symbol / self.bitrate

    def air_time(self, frame_bytes: int) -> float:
        return (frame_bytes + PHY_OVERHEAD) * 8 / self.bitrate


LINK_PROFILES = {
    "20k": LinkProfile("868 MHz BPSK, 20 kbit/s", 20_000, 1),
    "250k": LinkProfile("2.4 GHz O-QPSK, 250 kbit/s", 250_000, 4),
}


def frame_sizes(payload: int) -> list[int]:
    """Bytes of each 802.15.4 frame (MAC header to FCS) carrying a UDP payload."""
    if COMPRESSED_IP_UDP + payload <= MAC_PAYLOAD:
        return [MAC_OVERHEAD + COMPRESSED_IP_UDP + payload]
    first = (MAC_PAYLOAD - FRAG1 - COMPRESSED_IP_UDP + UNCOMPRESSED_IP_UDP) // 8 * 8
    first -= UNCOMPRESSED_IP_UDP
    frames = [MAC_OVERHEAD + FRAG1 + COMPRESSED_IP_UDP + first]
    left = payload - first
    chunk = (MAC_PAYLOAD - FRAGN) // 8 * 8
    while left > 0:
        part = min(chunk, left)
        frames.append(MAC_OVERHEAD + FRAGN + part)
        left -= part
    return frames


@dataclass
class LinkStats:
    datagrams: int = 0
    frames: int = 0
    air_bytes: int = 0  # PHY + MAC + 6LoWPAN + payload, acknowledgements not included
    payload_bytes: int = 0
    lost: int = 0

    def add(self, other: LinkStats) -> LinkStats:
        return LinkStats(
            self.datagrams + other.datagrams,
            self.frames + other.frames,
            self.air_bytes + other.air_bytes,
            self.payload_bytes + other.payload_bytes,
            self.lost + other.lost,
        )


@dataclass
class LowpanLink:
    """A relay hook; ``stats`` counts per direction ("up", "down")."""

    profile: LinkProfile
    loss: float = 0.0
    delay: float = 0.0
    seed: int = 1
    clock: Callable[[], float] = time.monotonic
    stats: dict[str, LinkStats] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311 - channel model, not crypto
        self._busy_until = 0.0

    def reset(self) -> None:
        self.stats.clear()

    @property
    def total(self) -> LinkStats:
        out = LinkStats()
        for stats in self.stats.values():
            out = out.add(stats)
        return out

    def __call__(self, direction: str, datagram: bytes) -> list[Outgoing]:
        p = self.profile
        now = self.clock()
        at = max(now, self._busy_until)
        lost = False
        stats = self.stats.setdefault(direction, LinkStats())
        stats.datagrams += 1
        stats.payload_bytes += len(datagram)
        for size in frame_sizes(len(datagram)):
            backoff = self._rng.randrange(8) * BACKOFF_UNIT_SYMBOLS + CCA_SYMBOLS
            at += backoff * p.symbol + p.air_time(size)
            at += TURNAROUND_SYMBOLS * p.symbol + p.air_time(ACK_FRAME)
            stats.frames += 1
            stats.air_bytes += size + PHY_OVERHEAD
            lost = lost or self._rng.random() < self.loss
        self._busy_until = at
        if lost:
            stats.lost += 1
            return []
        return [Delayed(at - now + self.delay, datagram)]
