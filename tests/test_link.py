"""The 802.15.4 / 6LoWPAN link model: framing, air time, loss, a shared channel."""

from __future__ import annotations

import pytest

from keystrap_lab.link import LINK_PROFILES, LowpanLink, frame_sizes
from keystrap_lab.link.lowpan import MAX_FRAME, PHY_OVERHEAD
from keystrap_lab.relay import Delayed


def test_small_datagrams_fit_one_frame() -> None:
    assert frame_sizes(0) == [20]
    assert frame_sizes(107) == [127]


@pytest.mark.parametrize("payload", [108, 200, 500, 1024])
def test_large_datagrams_fragment_like_rfc4944(payload: int) -> None:
    frames = frame_sizes(payload)
    assert len(frames) > 1 and all(f <= MAX_FRAME for f in frames)
    first_payload = frames[0] - 11 - 4 - 9
    assert (48 + first_payload) % 8 == 0  # offsets count the uncompressed datagram
    middle = [f - 11 - 5 for f in frames[1:-1]]
    assert all(m % 8 == 0 for m in middle)
    assert first_payload + sum(f - 16 for f in frames[1:]) == payload


def test_air_time_follows_the_bit_rate_and_the_channel_is_shared() -> None:
    now = [100.0]
    slow = LowpanLink(LINK_PROFILES["20k"], clock=lambda: now[0])
    (first,) = slow("up", b"x" * 50)
    (second,) = slow("down", b"y" * 50)
    assert isinstance(first, Delayed) and isinstance(second, Delayed)
    frame_air = (11 + 9 + 50 + PHY_OVERHEAD) * 8 / 20_000
    assert frame_air < first.seconds < frame_air + 0.06
    assert second.seconds > first.seconds + frame_air  # waits for the channel
    fast = LowpanLink(LINK_PROFILES["250k"], clock=lambda: now[0])
    (quick,) = fast("up", b"x" * 50)
    assert isinstance(quick, Delayed) and quick.seconds < first.seconds / 8
    assert slow.stats["up"].air_bytes == 11 + 9 + 50 + PHY_OVERHEAD


def test_loss_is_per_frame_and_seeded() -> None:
    def run(seed: int) -> list[int]:
        link = LowpanLink(LINK_PROFILES["250k"], loss=0.3, seed=seed, clock=lambda: 0.0)
        return [len(link("up", b"z" * 400)) for _ in range(400)]

    outcomes = run(7)
    assert outcomes == run(7)
    delivered = sum(outcomes) / len(outcomes)
    frames = len(frame_sizes(400))
    assert abs(delivered - 0.7**frames) < 0.08  # all frames of a datagram must arrive
    lossless = LowpanLink(LINK_PROFILES["250k"], clock=lambda: 0.0)
    assert all(lossless("up", b"z" * 400) for _ in range(50))
