"""Retransmission schedule shared by node and controller: exponential back-off."""

from __future__ import annotations

from dataclasses import dataclass

from keystrap.wire.frozen import frozen


@frozen
class Backoff:
    initial: float = 2.0
    maximum: float = 60.0

    def after(self, interval: float) -> float:
        return min(interval * 2, self.maximum)


IN_BAND = Backoff(initial=2.0, maximum=3.0)
"""The controller's repeats of flights 2 and 6 to the server. Capped low: each
in-band round trip must get through once, and at 30 % datagram loss a round
trip fails half the time, so what decides completion within a minute is how
many tries fit in it -- 20 at this cap, 5 with the 60 s cap. bench/loss.py, 10^4
bootstraps at 30 % loss: 99.97 % completed within 60 s, the rest lost to the
out-of-band channel (96.3 % with the 60 s cap, 99.93 % with a 4 s cap); the
lossless case is unchanged. A try costs one datagram to a
mains-powered server; flight 2 stops at the timestamp window. The node and
flight 4 keep :class:`Backoff`'s default: the out-of-band medium is slow and shared."""


@dataclass
class Retransmission:
    due: float
    interval: float
    attempts: int = 0
