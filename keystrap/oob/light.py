"""Light: on-off keying with Manchester coding, a preamble and the frame's CRC.

The emitter's *brightness schedule* is one level per chip (1 = LED on or screen
white). A bit is two chips, 1 = on-off and 0 = off-on, so the light changes at
least once per bit: the receiver recovers the clock from the edges and drifts
along with the sender. The receiver decodes a *sampled luminance trace* (a
photodiode reading, or a camera frame's mean brightness) without knowing the
sender's exact clock, the light levels or the ambient light.

    schedule = idle (8 chips off) | Manchester(16 x bit 1 | SFD 01011010 | frame) | idle

The preamble's 32 alternating chips give the receiver the chip length (averaged
over 16 edges, so jitter hardly matters) and the start; the delimiter byte marks
where the frame begins.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from keystrap.oob.frame import OobDecodeError

PREAMBLE_BITS = "1" * 16
SFD_BITS = "01011010"
IDLE = "0" * 8


MAX_TRACE_SAMPLES = 10_000_000
"""Samples an ideal sensor may take of one schedule: about 40 minutes at the
profile's rate, where a flight takes seconds; a schedule that would need more (a
tiny chip rate) is refused rather than filling the memory."""

MAX_LEVEL = 1e12
"""The largest luminance a trace may give, in any unit (a photodiode's counts,
lux): far above any sensor's range, and low enough that the sums of
:data:`MAX_TRACE_SAMPLES` of them stay finite. ``nan`` and ``inf``, which
``float()`` accepts, are refused with it: they made NumPy warn on stderr
beside the decoder's error."""


@dataclass(frozen=True)
class LightProfile:
    chip_rate: float = 500.0  # chips per second the emitter shows
    sample_rate: float = 4000.0  # samples per second the sensor takes


def chips_for(frame: bytes) -> str:
    bits = PREAMBLE_BITS + SFD_BITS + "".join(f"{byte:08b}" for byte in frame)
    return IDLE + "".join("10" if b == "1" else "01" for b in bits) + IDLE


def sample_schedule(
    chips: str,
    chip_rate: float,
    sample_rate: float,
    *,
    drift: float = 0.0,
    jitter: float = 0.0,
    noise: float = 0.0,
    low: float = 0.05,
    high: float = 0.95,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """What a sensor samples from the schedule. ``drift`` is the sender's clock error
    (0.03 = 3 % slow), ``jitter`` each edge's random shift in chips, ``noise`` the
    standard deviation of additive noise, in units of the light swing."""
    rng = rng or np.random.default_rng()
    chip = (1.0 + drift) / chip_rate
    edges = np.arange(len(chips) + 1) * chip
    if jitter:
        edges[1:-1] += rng.uniform(-jitter, jitter, len(chips) - 1) * chip
    times = np.arange(0.0, edges[-1], 1.0 / sample_rate)
    index = np.clip(np.searchsorted(edges, times, side="right") - 1, 0, len(chips) - 1)
    levels = np.frombuffer(chips.encode(), dtype=np.uint8)[index] - ord("0")
    trace = low + (high - low) * levels.astype(np.float64)
    if noise:
        trace = trace + rng.normal(0.0, noise * (high - low), len(trace))
    return trace


def write_trace(trace: np.ndarray, sample_rate: float) -> bytes:
    lines = [f"# keystrap luminance trace: sample_rate={sample_rate:g}"]
    lines += [f"{value:.4f}" for value in trace]
    return ("\n".join(lines) + "\n").encode()


def read_trace(data: bytes, channel: str) -> tuple[np.ndarray, float]:
    """Parse a trace: ``# ... sample_rate=N`` then one value per line (or ``t,value``)."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise OobDecodeError(channel, "the trace is not text") from None
    rate = _rate(text, "sample_rate", channel)
    values = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            value = float(line.rsplit(",", 1)[-1])
        except ValueError:
            raise OobDecodeError(channel, f"line {number} of the trace is not a number") from None
        if not abs(value) <= MAX_LEVEL:  # also nan
            message = f"line {number} of the trace is not a level within ±{MAX_LEVEL:g}"
            raise OobDecodeError(channel, f"{message}: {value:g}")
        values.append(value)
    return np.asarray(values, dtype=np.float64), rate


def _rate(text: str, name: str, channel: str) -> float:
    """The positive, finite rate ``name=N`` a schedule or trace declares."""
    match = re.search(rf"{name}=([0-9.]+)", text)
    if match is None:
        raise OobDecodeError(channel, f"not a keystrap light signal: it names no {name}")
    try:
        rate = float(match.group(1))
    except ValueError:
        raise OobDecodeError(channel, f"{name}={match.group(1)} is not a number") from None
    if not 0 < rate < float("inf"):
        raise OobDecodeError(channel, f"{name} must be a positive number, not {rate:g}")
    return rate


class LightMedium:
    name = "light"
    suffix = ".csv"

    def __init__(self, profile: LightProfile | None = None) -> None:
        self.profile = profile or LightProfile()

    def modulate(self, frame: bytes) -> bytes:
        """The brightness schedule: a header and one character per chip."""
        return (
            f"# keystrap light schedule: chip_rate={self.profile.chip_rate:g}\n{chips_for(frame)}\n"
        ).encode()

    def capture(self, emitted: bytes) -> bytes:
        """An ideal sensor in front of the emitter (tests add noise, jitter, drift)."""
        chips, chip_rate = parse_schedule(emitted, self.name)
        if len(chips) / chip_rate * self.profile.sample_rate > MAX_TRACE_SAMPLES:
            raise OobDecodeError(self.name, f"a schedule at chip_rate={chip_rate:g} is too long")
        trace = sample_schedule(chips, chip_rate, self.profile.sample_rate)
        return write_trace(trace, self.profile.sample_rate)

    def demodulate(self, captured: bytes) -> bytes:
        trace, rate = read_trace(captured, self.name)
        return decode_trace(trace, rate, self.profile.chip_rate, self.name)


def parse_schedule(data: bytes, channel: str) -> tuple[str, float]:
    text = data.decode("ascii", "replace")
    chips = "".join(line for line in text.splitlines() if not line.startswith("#")).strip()
    if not chips or set(chips) - {"0", "1"}:
        raise OobDecodeError(channel, "not a keystrap light schedule")
    return chips, _rate(text, "chip_rate", channel)


def decode_trace(trace: np.ndarray, sample_rate: float, chip_rate: float, channel: str) -> bytes:
    nominal = sample_rate / chip_rate
    if nominal < 3:
        raise OobDecodeError(channel, f"{nominal:.1f} samples per chip is too few (need 3)")
    if len(trace) < nominal * 2 * (len(PREAMBLE_BITS) + len(SFD_BITS) + 32):
        raise OobDecodeError(channel, "the trace is too short to hold a frame")
    window = max(1, round(nominal / 4))
    smooth = np.convolve(trace, np.ones(window) / window, mode="same")
    low, high = np.percentile(smooth, 2), np.percentile(smooth, 98)
    if high - low < 1e-3 * max(1.0, abs(high)):
        raise OobDecodeError(channel, "constant light: no modulation in the trace")
    level = smooth - (low + high) / 2
    begin, chip = _find_preamble(level, nominal, channel)
    header = ""
    bits: list[int] | None = None  # the frame's bits, once the delimiter was seen
    out = bytearray()
    for value, _, _ in _bits(level, begin, chip):
        if bits is None:
            header += str(value)
            if header.endswith("11" + SFD_BITS):
                bits = []
            elif len(header) > len(PREAMBLE_BITS) + len(SFD_BITS) + 8:
                raise OobDecodeError(channel, "no start-of-frame delimiter after the preamble")
            continue
        bits.append(value)
        if len(bits) % 8 == 0:
            out.append(int("".join(map(str, bits[-8:])), 2))
            if len(out) == out[0] + 3:
                return bytes(out)
    raise OobDecodeError(channel, "the trace ends before the frame does")


def _find_preamble(level: np.ndarray, nominal: float, channel: str) -> tuple[float, float]:
    """The first rising edge followed by 16 evenly spaced edges; returns its sample
    position and the chip length measured over those edges."""
    above = level > 0
    edges = np.flatnonzero(above[1:] != above[:-1]) + 1
    kept: list[int] = []
    for edge in edges:  # an edge closer than 40 % of a chip to the last is noise
        if kept and edge - kept[-1] < 0.4 * nominal:
            kept.pop()
        else:
            kept.append(int(edge))
    for i in range(len(kept) - 16):
        if not above[kept[i]]:
            continue
        gaps = np.diff(kept[i : i + 17])
        if np.all((gaps > 0.6 * nominal) & (gaps < 1.4 * nominal)):
            return float(kept[i]), (kept[i + 16] - kept[i]) / 16
    raise OobDecodeError(channel, "no preamble found at the expected chip rate")


def _bits(level: np.ndarray, begin: float, chip: float) -> Iterator[tuple[int, float, float]]:
    """Manchester bits by integrating each half bit, re-timed on every mid-bit edge.

    Averaging a whole half bit beats noise; following the mid-bit edge (a simple
    phase-locked loop) follows jitter and a sender clock that drifts."""
    while begin + 2 * chip <= len(level):
        margin = 0.25 * chip
        first = level[int(begin + margin) : int(begin + chip - margin)].mean()
        second = level[int(begin + chip + margin) : int(begin + 2 * chip - margin)].mean()
        value = 1 if first > second else 0
        lo, hi = int(begin + 0.5 * chip), int(begin + 1.5 * chip)
        segment = level[lo:hi]
        crossings = np.flatnonzero(
            (segment[:-1] > 0) & (segment[1:] <= 0)
            if value
            else (segment[:-1] <= 0) & (segment[1:] > 0)
        )
        if len(crossings):
            edge = lo + crossings[np.argmin(np.abs(crossings + lo - (begin + chip)))] + 0.5
            error = edge - (begin + chip)
            chip += 0.02 * error
            begin += 0.3 * error
        yield value, begin, chip
        begin += 2 * chip
