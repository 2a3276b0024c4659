"""How every long-running keystrap process ends: on SIGINT or SIGTERM, cleanly."""

from __future__ import annotations

import asyncio
import signal


async def wait_for_signal(ready: asyncio.Event | None = None) -> None:
    """Return on SIGINT or SIGTERM; set ``ready`` once the handlers are in place."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
