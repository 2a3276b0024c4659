"""Captured out-of-band signals: the directory checked at start-up, and no earlier
capture ever overwritten."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from keystrap.oob import OobError
from keystrap.oob import link as link_module
from keystrap.oob.capture import capture_directory
from keystrap.oob.link import MediumLink
from keystrap.oob.medium import get_medium
from keystrap.wire import Flight4

FLIGHT4 = Flight4(bytes(8), 7, bytes(range(8)), bytes(16), bytes(16)).seal(bytes(16))


class Recorded:
    """The session under the medium, reduced to what was sent on it."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, data: bytes) -> None:
        self.sent.append(data)


def test_a_capture_directory_that_is_a_file_is_refused_at_start(tmp_path: Path) -> None:
    taken = tmp_path / "captures"
    taken.write_text("an operator's file")
    with pytest.raises(OobError, match="exists and is not a directory"):
        capture_directory(taken)
    assert capture_directory(tmp_path / "new") == tmp_path / "new"
    assert not (tmp_path / "new").exists()  # made at the first signal


def test_earlier_captures_are_never_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(link_module, "_serial", itertools.count(1))  # as in a new process
    captures = tmp_path / "captures"
    captures.mkdir()
    earlier = {}
    for serial in range(1, 4):
        path = captures / f"sbi-{serial:05d}-sent-raw.bin"
        path.write_text(f"photo {serial}")
        earlier[path] = path.read_bytes()
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (captures / "sbi-00004-sent-raw.bin").symlink_to(victim)
    medium = get_medium("raw")
    inner = Recorded()
    link = MediumLink(inner, medium, medium, captures, label="sbi")  # type: ignore[arg-type]
    asyncio.run(link.send(FLIGHT4))
    assert all(path.read_bytes() == data for path, data in earlier.items())
    assert victim.read_text() == "keep"
    (new,) = set(captures.iterdir()) - set(earlier) - {captures / "sbi-00004-sent-raw.bin"}
    assert new.read_bytes() == inner.sent[0]
