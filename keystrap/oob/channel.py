"""The interface every out-of-band channel implements."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol


class OobError(Exception):
    """The channel failed or delivered something that is not a whole flight."""


class OobClosed(OobError):
    """The other side ended the session."""


class OobLink(Protocol):
    """One out-of-band session between a node and the controller."""

    async def send(self, flight: bytes) -> None: ...

    async def receive(self, timeout: float | None = None) -> bytes | None:
        """The next whole flight, or ``None`` if ``timeout`` passed first.
        Raises :class:`OobClosed` when the other side has gone."""
        ...

    async def close(self) -> None: ...


SessionHandler = Callable[[OobLink], Awaitable[None]]


class OobListener(Protocol):
    """The controller's side: calls the handler once per node session."""

    async def start(self, handler: SessionHandler) -> None: ...

    async def stop(self) -> None: ...


def parse_endpoint(spec: str) -> tuple[str, str]:
    """``"unix:/path"`` -> ``("unix", "/path")``."""
    kind, sep, where = spec.partition(":")
    if not sep or not where:
        raise OobError(f"out-of-band endpoint {spec!r}: expected KIND:WHERE, e.g. unix:oob.sock")
    if kind != "unix":
        raise OobError(f"out-of-band channel {kind!r} is not supported (use unix:PATH)")
    return kind, where
