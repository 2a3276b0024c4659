"""The unix: out-of-band endpoint's framing (docs/protocol.md section 8.1)."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from keystrap.oob import OobClosed, OobError, unix
from keystrap.oob.unix import UnixLink


async def pair() -> tuple[UnixLink, socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    reader, writer = await asyncio.open_unix_connection(sock=ours)
    return UnixLink(reader, writer), theirs


def test_length_prefixed_messages_both_ways() -> None:
    async def scenario() -> None:
        link, peer = await pair()
        peer.sendall(struct.pack(">I", 3) + b"abc" + struct.pack(">I", 0))
        assert await link.receive(1) == b"abc"
        assert await link.receive(1) == b""
        await link.send(b"\x1b" * 13)
        assert peer.recv(100) == struct.pack(">I", 13) + b"\x1b" * 13
        assert await link.receive(0.05) is None  # nothing more: a timeout, not an error
        peer.close()
        with pytest.raises(OobClosed):
            await link.receive(1)
        await link.close()

    asyncio.run(scenario())


def test_oversized_or_incomplete_message_ends_the_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(unix, "BODY_TIMEOUT", 0.1)

    async def scenario() -> None:
        link, peer = await pair()
        peer.sendall(struct.pack(">I", unix.MAX_MESSAGE + 1))
        with pytest.raises(OobError, match="exceeds"):
            await link.receive(1)
        await link.close()
        peer.close()
        link, peer = await pair()
        peer.sendall(struct.pack(">I", 10) + b"abc")
        with pytest.raises(OobError, match="incomplete"):
            await link.receive(1)
        await link.close()
        peer.close()

    asyncio.run(scenario())
