"""Retransmission schedule shared by node and controller: exponential back-off."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    initial: float = 2.0
    maximum: float = 60.0

    def after(self, interval: float) -> float:
        return min(interval * 2, self.maximum)


@dataclass
class Retransmission:
    due: float
    interval: float
    attempts: int = 0
