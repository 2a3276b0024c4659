"""Network faults on the in-band path: loss, duplication, reordering and delay.

A :class:`Netem` is a relay hook. It is also the constrained-link emulator's
lossy core; every decision comes from its own seeded generator, so a run can be
repeated.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from keystrap_lab.relay import Delayed, Outgoing


@dataclass
class Netem:
    loss: float = 0.0  # probability a datagram is dropped
    duplicate: float = 0.0  # probability it is sent twice
    reorder: float = 0.0  # probability it is held back behind the next one
    delay: float = 0.0  # fixed one-way delay, seconds
    jitter: float = 0.0  # extra uniform delay, seconds
    seed: int = 1
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311 - fault injection, not crypto

    def __call__(self, direction: str, datagram: bytes) -> list[Outgoing]:
        self._count("seen")
        if self._rng.random() < self.loss:
            self._count("dropped")
            return []
        wait = self.delay + self._rng.uniform(0, self.jitter)
        if self._rng.random() < self.reorder:
            self._count("reordered")
            wait += 0.05  # long enough for a later datagram to overtake it
        out: list[Outgoing] = [Delayed(wait, datagram) if wait else datagram]
        if self._rng.random() < self.duplicate:
            self._count("duplicated")
            out.append(Delayed(wait + 0.01, datagram))
        return out

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1
