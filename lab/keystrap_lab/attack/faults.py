"""Faults over real processes: a lossy in-band path, and SIGKILL at a chosen step.

``kill_at`` watches the in-band path and kills a service the moment a given
flight passes the relay -- after the controller sent flight 2, after the server
answered with flight 3, and so on -- then restarts it; nodes cut off retry from
their persisted state, as a device would. Used by the tests and bench/faults.py.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from keystrap.services.node_agent import NodeResult
from keystrap.store.node_file import load_node_file
from keystrap.wire import FlightType
from keystrap_lab.attack.coapview import view
from keystrap_lab.attack.netem import Netem
from keystrap_lab.attack.scenarios import Lab, bootstrap, open_lab
from keystrap_lab.relay import Outgoing


@dataclass
class FaultRun:
    completed: int  # nodes holding their new PSK while the faults lasted
    nodes: int
    seconds: float
    rounds: int
    consistent: bool  # after the faults: every node finished, on the server's key, no candidate

    @property
    def rate(self) -> float:
        return self.completed / self.nodes


async def finish(
    lab: Lab, paths: list[Path], first: list[NodeResult], rounds: int = 6
) -> tuple[int, int]:
    """Nodes that have not seen their confirmation try again (resume), as a device
    would: one that holds its PSK re-sends flight 5, in case the controller never
    processed it. Returns (nodes holding their PSK, rounds used)."""
    results = dict(zip(paths, first, strict=True))
    used = 1
    while used < rounds:
        todo = [p for p, r in results.items() if r.outcome != "confirmed"]
        if not todo:
            break
        used += 1
        results.update(zip(todo, await bootstrap(todo, timeout=30), strict=True))
    return sum(r.ok for r in results.values()), used


async def settled(lab: Lab, paths: list[Path], timeout: float = 120) -> bool:
    """Wait for the controller to finish confirming, then check both ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        keys = lab.server_keys()
        states = [load_node_file(p).state for p in paths]
        if all(keys[s.node_id] == s.key for s in states) and not lab.site.pending_candidates():
            return True
        await asyncio.sleep(0.2)
    return False


async def lossy_run(root: Path, nodes: int, netem: Netem) -> FaultRun:
    lab = await open_lab(root, count=nodes)
    lab.rules.append(lambda direction, datagram: netem(direction, datagram))
    start = time.monotonic()
    try:
        paths = lab.take(nodes)
        first = await bootstrap(paths, timeout=60)
        completed, rounds = await finish(lab, paths, first)
        elapsed = time.monotonic() - start
        # The network heals: every node that did not finish must be able to.
        lab.rules.clear()
        healed, _ = await finish(lab, paths, await bootstrap(paths, timeout=30))
        ok = healed == nodes and await settled(lab, paths)
    finally:
        lab.site.stop()
    return FaultRun(completed, nodes, elapsed, rounds, ok)


async def kill_at(root: Path, nodes: int, flight: FlightType, victim: str) -> FaultRun:
    lab = await open_lab(root, count=nodes)
    killed: list[float] = []

    def watch(direction: str, datagram: bytes) -> list[Outgoing] | None:
        c = view(direction, datagram)
        if killed or c is None or c.kind is not flight:
            return None
        service = lab.site.server if victim == "server" else lab.site.controller
        assert service is not None
        service.kill()  # the flight was already processed or sent: crash right after
        killed.append(time.monotonic())
        return [datagram]

    lab.rules.append(watch)
    start = time.monotonic()
    try:
        paths = lab.take(nodes)
        running = asyncio.ensure_future(bootstrap(paths, timeout=40))
        while not killed and not running.done():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        if killed:
            await (lab.site.start_server() if victim == "server" else lab.site.start_controller())
        completed, rounds = await finish(lab, paths, await running)
        elapsed = time.monotonic() - start
        ok = bool(killed) and await settled(lab, paths)
    finally:
        lab.site.stop()
    return FaultRun(completed, nodes, elapsed, rounds, ok)
