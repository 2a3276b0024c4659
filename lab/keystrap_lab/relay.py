"""A UDP relay for the in-band path (controller <-> server), with a hook per datagram.

It records what an eavesdropper on the in-band radio would see, and lets tests
and the attack harness drop, duplicate, delay or alter datagrams. Traffic only
ever goes to the one target address it was given (loopback in every use here).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

Address = tuple[str, int]


@dataclass(frozen=True)
class Delayed:
    """Forward ``data`` after ``seconds`` instead of now."""

    seconds: float
    data: bytes


Outgoing = bytes | Delayed
Hook = Callable[[str, bytes], list[Outgoing]]
"""``hook(direction, datagram)`` returns what to forward ([] drops, two items
duplicate, a :class:`Delayed` item delays); ``direction`` is ``"up"`` (client to
server) or ``"down"``."""


def forward_all(_direction: str, datagram: bytes) -> list[Outgoing]:
    return [datagram]


def _send(transport: asyncio.DatagramTransport | None, item: Outgoing, addr: Address) -> None:
    if isinstance(item, Delayed):
        loop = asyncio.get_running_loop()
        loop.call_later(item.seconds, _send, transport, item.data, addr)
    elif transport is not None and not transport.is_closing():
        transport.sendto(item, addr)


@dataclass
class Recording:
    datagrams: list[tuple[str, bytes]] = field(default_factory=list)


class _Upstream(asyncio.DatagramProtocol):
    """One socket towards the server per client address, so answers find their way back."""

    def __init__(self, relay: UdpRelay, client: Address) -> None:
        self.relay = relay
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.relay.record.datagrams.append(("down", data))
        for out in self.relay.hook("down", data):
            _send(self.relay.transport, out, self.client)


class UdpRelay(asyncio.DatagramProtocol):
    def __init__(self, target: Address, hook: Hook = forward_all) -> None:
        self.target = target
        self.hook = hook
        self.record = Recording()
        self.transport: asyncio.DatagramTransport | None = None
        self._upstreams: dict[Address, _Upstream] = {}
        self._pending: dict[Address, list[Outgoing]] = {}
        self._opening: set[asyncio.Future[None]] = set()

    @classmethod
    async def start(
        cls, host: str, port: int, target: Address, hook: Hook = forward_all
    ) -> UdpRelay:
        loop = asyncio.get_running_loop()
        _, relay = await loop.create_datagram_endpoint(
            lambda: cls(target, hook), local_addr=(host, port)
        )
        return relay

    @property
    def address(self) -> Address:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.record.datagrams.append(("up", data))
        outgoing = self.hook("up", data)
        upstream = self._upstreams.get(addr)
        if upstream is None or upstream.transport is None:
            self._pending.setdefault(addr, []).extend(outgoing)
            if upstream is None:
                task = asyncio.ensure_future(self._open_upstream(addr))
                self._opening.add(task)
                task.add_done_callback(self._opening.discard)
            return
        for out in outgoing:
            _send(upstream.transport, out, self.target)

    async def _open_upstream(self, client: Address) -> None:
        loop = asyncio.get_running_loop()
        upstream = _Upstream(self, client)
        self._upstreams[client] = upstream
        await loop.create_datagram_endpoint(lambda: upstream, remote_addr=self.target)
        assert upstream.transport is not None
        for out in self._pending.pop(client, []):
            _send(upstream.transport, out, self.target)

    def close(self) -> None:
        for upstream in self._upstreams.values():
            if upstream.transport is not None:
                upstream.transport.close()
        if self.transport is not None:
            self.transport.close()
