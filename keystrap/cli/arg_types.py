"""argparse types that bound what a number flag accepts.

A flag's value travels on into SQLite, OpenCV or a sound card, each of which
has its own limits and its own way of failing past them: a traceback (an
integer past 64 bits), or a crash of the whole process (OpenCV given a
negative camera index). Checked here, a bad value is argparse's one line.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def within(text: str, low: int, high: int, what: str) -> int:
    """``text`` as an integer from ``low`` to ``high``, else a ValueError saying so
    (also for the console's forms, which take the same values as these flags)."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{what} must be a whole number, got {text!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{what} must be {low} to {high}, got {text}")
    return value


def whole_number(low: int, high: int, what: str) -> Callable[[str], int]:
    """An integer from ``low`` to ``high``, e.g. ``whole_number(1, 65535, "a port")``."""

    def parse(text: str) -> int:
        try:
            return within(text, low, high, what)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def seconds(high: float, what: str) -> Callable[[str], float]:
    """A duration above zero and at most ``high`` seconds (``nan`` and ``inf`` refused)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not (math.isfinite(value) and 0 < value <= high):
            raise argparse.ArgumentTypeError(
                f"{what} must be above 0 and at most {high:g} seconds, got {text}"
            )
        return value

    return parse
