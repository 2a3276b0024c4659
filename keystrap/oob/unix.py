"""A local out-of-band channel over a UNIX stream socket.

It stands in for physical proximity on one machine: each message is a 4-byte
length and the bytes -- a bare flight, or the captured signal of a medium (an
image, audio samples...) when :class:`keystrap.oob.link.MediumLink` wraps it.
The socket file is 0600, so only the controller's user can reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import struct
from pathlib import Path

from keystrap.oob.channel import OobClosed, OobError, SessionHandler
from keystrap.store.atomic import make_private_dirs

MAX_MESSAGE = 16 * 1024 * 1024
BODY_TIMEOUT = 10.0  # for the rest of a message once its length has arrived


class UnixLink:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def send(self, flight: bytes) -> None:
        if len(flight) > MAX_MESSAGE:
            raise OobError(f"unix channel: message of {len(flight)} bytes exceeds {MAX_MESSAGE}")
        try:
            self._writer.write(struct.pack(">I", len(flight)) + flight)
            await self._writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise OobClosed(f"unix channel: {exc}") from None

    async def receive(self, timeout: float | None = None) -> bytes | None:
        try:
            header = await asyncio.wait_for(self._reader.readexactly(4), timeout)
        except TimeoutError:
            return None
        except (asyncio.IncompleteReadError, ConnectionError):
            raise OobClosed("unix channel: peer closed the session") from None
        (size,) = struct.unpack(">I", header)
        if size > MAX_MESSAGE:
            raise OobError(f"unix channel: message of {size} bytes exceeds {MAX_MESSAGE}")
        try:
            return await asyncio.wait_for(self._reader.readexactly(size), BODY_TIMEOUT)
        except TimeoutError:
            # The stream is out of step now: nothing after this can be framed.
            raise OobError(f"unix channel: message incomplete after {BODY_TIMEOUT:.0f} s") from None
        except (asyncio.IncompleteReadError, ConnectionError):
            raise OobClosed("unix channel: peer closed the session") from None

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()


class UnixListener:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._server: asyncio.Server | None = None

    async def start(self, handler: SessionHandler) -> None:
        make_private_dirs(self.path.parent)
        await remove_stale_socket(self.path)

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            link = UnixLink(reader, writer)
            try:
                await handler(link)
            finally:
                await link.close()

        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(on_connect, path=str(self.path))
        finally:
            os.umask(old_umask)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            if self.path.is_socket():
                self.path.unlink()


async def remove_stale_socket(path: Path) -> None:
    """Unlink ``path`` only if it is a socket left over from a killed run: any
    other file is refused (it may be an operator's data), and so is a socket
    some process still listens on."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise OobError(
            f"{path} exists and is not a socket; refusing to replace it "
            "(choose another out-of-band path, or move the file away)"
        )
    try:
        _, writer = await asyncio.open_unix_connection(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)
        return
    except OSError as exc:
        raise OobError(f"cannot tell whether {path} is in use: {exc}") from None
    writer.close()
    raise OobError(f"{path} is in use by a running process (another controller?)")


async def connect(path: Path, timeout: float = 10.0) -> UnixLink:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), timeout)
    except (OSError, TimeoutError) as exc:
        raise OobError(f"cannot reach the controller's out-of-band channel {path}: {exc}") from None
    return UnixLink(reader, writer)
