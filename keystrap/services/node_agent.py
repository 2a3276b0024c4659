"""``keystrap node``: the SBI agent. Runs one bootstrap from a node state file.

The node's part ends when it holds PSK_i and has sent flight 5; it then stays
on the out-of-band session (answering a repeated flight 4 with its stored flight
5) until the controller's flight 11 proves, under SK_i, that the server has
confirmed, or ``linger`` seconds pass. A session that just ends while keyed is
reported as "keyed": the next run resumes and re-sends flight 5.

The flights are computed by the node core (:mod:`keystrap.nodecore`), in this
process or, with ``runtime="micropython"``, inside MicroPython
(:mod:`keystrap.runtime`); this module only carries bytes and persists state.
Its timers run on the loop's monotonic clock, scheduled with ``loop.call_at``:
the node makes and checks no timestamp, so a step of the wall clock cannot
stall its retransmission of flight 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path

from keystrap.coap.node_server import NodeCoapsServer, serve_coaps
from keystrap.ids import eui64
from keystrap.oob import OobClosed, OobError, OobLink, parse_endpoint
from keystrap.oob.link import MediumLink
from keystrap.oob.medium import get_medium
from keystrap.oob.unix import connect
from keystrap.protocol import Node, NodeConfirmed, NodeKeyed, NodeStage, Rejected
from keystrap.protocol.node import CoreFactory, local_core
from keystrap.runtime import MicroPython, RuntimeUnavailable
from keystrap.services.instance import InstanceLock
from keystrap.services.lifetime import wait_for_signal
from keystrap.settings import NodeSettings
from keystrap.store.errors import StoreError
from keystrap.store.node_file import NodeFile, load_node_file, save_node_file
from keystrap.wire import DecodeError, Flight12, FlightType, flight_class

log = logging.getLogger("keystrap.node")


@dataclass
class NodeResult:
    node_id: bytes
    outcome: str  # "confirmed" (controller said so), "keyed" (PSK held), or "failed: ..."
    seconds: float
    tid: int | None = None
    flight_bytes: dict[int, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.outcome.startswith("failed")


async def bootstrap_node(
    path: Path,
    *,
    reinstall: bool = False,
    timeout: float = 60.0,
    linger: float = 10.0,
    on_progress: Callable[[str], None] | None = None,
    channels: tuple[str, str] | None = None,
    capture_dir: Path | None = None,
    impair: Callable[[bytes], bytes] | None = None,
    core: CoreFactory = local_core,
) -> NodeResult:
    """``channels`` = (node->controller, controller->node) overrides the node file's;
    ``impair`` degrades every signal the node captures (see MediumLink); ``core``
    computes the flights (:meth:`keystrap.runtime.MicroPython.core`, for one)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    node_file = load_node_file(path)
    up, down = channels or (node_file.channel_up, node_file.channel_down)
    node = Node(node_file.state, secrets.token_bytes, core=core)
    result = NodeResult(node_file.state.node_id, "failed: not started", 0.0)

    def progress(step: str) -> None:
        if on_progress is not None:
            on_progress(step)

    _, where = parse_endpoint(node_file.oob)
    try:
        link: OobLink = MediumLink(
            await connect(Path(where)),
            get_medium(up),
            get_medium(down),
            capture_dir,
            label=eui64(node_file.state.node_id).replace(":", ""),
            impair=impair,
        )
    except OobError as exc:
        result.outcome = f"failed: {exc}"
        return result
    try:
        if reinstall or node.state.stage is NodeStage.PROVISIONED:
            node_file = replace(node_file, confirmed=False)
            node.start(loop.time())
        else:
            node.resume(loop.time())
        await _flush(node, node_file, path, link, result)
        progress(_first_step(result))
        result.outcome = await _converse(
            node, node_file, path, link, result, start + timeout, linger, progress
        )
        if result.outcome == "confirmed":
            save_node_file(path, replace(node_file, state=node.state, confirmed=True))
    except OobClosed:
        result.outcome = (
            "keyed" if node.state.stage is NodeStage.KEYED else "failed: controller went away"
        )
    finally:
        await link.close()
        result.seconds = loop.time() - start
        result.tid = node.state.tid
    log.info("node=%s: %s after %.2f s", eui64(result.node_id), result.outcome, result.seconds)
    return result


def _first_step(result: NodeResult) -> str:
    """What the run began with. A node resumed holding its PSK re-sends its flight
    5 (or nothing, if it has none): "flight 1 sent" told a false story of it."""
    if FlightType.F5_PROOF in result.flight_bytes:
        return "flight 5 sent again; waiting for flight 11"
    if FlightType.F1_HELLO in result.flight_bytes:
        return "flight 1 sent"
    return "waiting for flight 11"


class _Wake(Enum):
    """An input to the conversation that is not a flight."""

    TIMER = "the node core's retransmission timer"
    DEADLINE = "the timeout for a valid flight 4"
    LINGER = "the end of the wait for flight 11"


Input = bytes | _Wake | OobError  # a flight, a due time, or the session's end


async def _receive(link: OobLink, inputs: asyncio.Queue[Input]) -> None:
    try:
        while True:
            data = await link.receive()
            if data is not None:
                inputs.put_nowait(data)
    except OobError as exc:
        inputs.put_nowait(exc)


async def _converse(
    node: Node,
    node_file: NodeFile,
    path: Path,
    link: OobLink,
    result: NodeResult,
    deadline: float,
    linger: float,
    progress: Callable[[str], None],
) -> str:
    """aioquic's loop around the node core: each input (a flight, a due timer)
    goes to the core, the state is saved, what the core produced is sent, and
    its next timer is scheduled with ``loop.call_at``. ``deadline`` and every
    time the core sees are on the loop's monotonic clock: the node makes and
    checks no timestamp, so the wall clock never enters."""
    loop = asyncio.get_running_loop()
    inputs: asyncio.Queue[Input] = asyncio.Queue()
    receiver = asyncio.create_task(_receive(link, inputs))
    timer: asyncio.TimerHandle | None = None
    # A node resumed after a restart may already hold its PSK (flight 5 re-sent).
    keyed = node.state.stage is NodeStage.KEYED
    end = loop.call_at(
        loop.time() + linger if keyed else deadline,
        inputs.put_nowait,
        _Wake.LINGER if keyed else _Wake.DEADLINE,
    )
    rejected = ""
    try:
        while True:
            if timer is not None:
                timer.cancel()
            due = node.get_timer()
            timer = None if due is None else loop.call_at(due, inputs.put_nowait, _Wake.TIMER)
            data = await inputs.get()
            if isinstance(data, OobError):
                if keyed:
                    return "keyed"
                if isinstance(data, OobClosed):
                    return "failed: controller closed the session"
                return f"failed: {data}"
            if data is _Wake.LINGER:
                return "keyed"
            if data is _Wake.DEADLINE:
                if not keyed:  # else queued just before flight 4 was taken
                    return "failed: no valid flight 4 before the timeout" + rejected
            elif data is _Wake.TIMER:
                node.handle_timer(loop.time())
            elif Flight12.matches(data):
                advice = _advice(data)
                log.warning(
                    "node=%s: the controller says: %s (unverified)", eui64(result.node_id), advice
                )
                rejected = f" (the controller said: {advice})"
            else:
                _count(result, data)
                node.receive(data, loop.time())
            while (event := node.next_event()) is not None:
                if isinstance(event, NodeKeyed):
                    keyed = True
                    end.cancel()
                    end = loop.call_at(loop.time() + linger, inputs.put_nowait, _Wake.LINGER)
                    progress("flight 4 authenticated, PSK derived, flight 5 sent")
                elif isinstance(event, NodeConfirmed):
                    progress("flight 11 authenticated: the server holds the PSK")
                    return "confirmed"
                elif isinstance(event, Rejected):
                    rejected = f" (last rejected: {event.reason})"
                    log.warning("node=%s: rejected: %s", eui64(node.state.node_id), event.reason)
            await _flush(node, node_file, path, link, result)
    finally:
        end.cancel()
        if timer is not None:
            timer.cancel()
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver


def _advice(data: bytes) -> str:
    """Flight 12, as text: logged and kept in the outcome, never acted on (it is
    unauthenticated: the node's retry policy goes on as before)."""
    try:
        return Flight12.decode(data).reason.text
    except DecodeError as exc:
        return f"an unreadable refusal ({exc})"


async def _flush(
    node: Node, node_file: NodeFile, path: Path, link: OobLink, result: NodeResult
) -> None:
    """Persist (atomically) before anything leaves the node."""
    outgoing = node.data_to_send()
    if not outgoing:
        return
    save_node_file(path, replace(node_file, state=node.state))
    for data in outgoing:
        _count(result, data)
        await link.send(data)


def _count(result: NodeResult, data: bytes) -> None:
    try:
        kind = int(flight_class(data).TYPE)
    except DecodeError:
        return
    result.flight_bytes[kind] = len(data)


async def start_coaps(path: Path, host: str, port: int) -> NodeCoapsServer:
    """Serve the node's settings over DTLS with its PSK (see :mod:`keystrap.coap.node_server`).

    Only a keyed node serves: before its bootstrap it holds IK, which the
    installer knows, so nothing may be protected with it.
    """
    node_file = load_node_file(path)
    if node_file.state.stage is not NodeStage.KEYED:
        raise StoreError(f"{path}: node has not bootstrapped yet; it serves nothing before that")

    def save(settings: NodeSettings) -> None:
        save_node_file(path, replace(load_node_file(path), settings=settings))

    server = await serve_coaps(
        node_file.state.node_id, node_file.state.key, host, port, node_file.settings, save
    )
    log.info(
        "node=%s: serving CoAPS (DTLS 1.2, AES-128-CCM-8) on %s, identity %s",
        eui64(node_file.state.node_id),
        server.uri,
        eui64(node_file.state.node_id),
    )
    return server


async def run_node_cli(
    path: Path,
    reinstall: bool,
    timeout: float,
    linger: float,
    channels: tuple[str, str] | None = None,
    capture_dir: Path | None = None,
    serve: tuple[str, int] | None = None,
    runtime: str = "python",
) -> int:
    """Bootstrap (unless ``serve`` is asked of a node already confirmed), then serve.

    ``runtime="micropython"`` runs the node core inside MicroPython. The node
    file is locked while this runs (:func:`lock_node_file`)."""
    # SIGTERM ends the run as SIGINT does (asyncio.run's handler: the run is
    # cancelled and its clean-up runs); by default it killed the agent outright,
    # leaving its lock file beside the node file.
    signal.signal(signal.SIGTERM, signal.getsignal(signal.SIGINT))
    lock = lock_node_file(path)
    try:
        return await _run_node_cli(
            path, reinstall, timeout, linger, channels, capture_dir, serve, runtime
        )
    finally:
        lock.release()


def lock_node_file(path: Path) -> InstanceLock:
    """One process at a time acts on a node file: the agent, or a factory reset.

    Why: the agent holds the node's state in memory and writes it back whole.
    A factory reset (or a second agent) run beside it was silently undone: the
    agent's next save wrote the erased keys back, or its server went on
    serving with a PSK the reset had erased. Now the second one is refused,
    naming the pid that holds the file."""
    return InstanceLock.acquire(path, "node agent")


async def _run_node_cli(
    path: Path,
    reinstall: bool,
    timeout: float,
    linger: float,
    channels: tuple[str, str] | None,
    capture_dir: Path | None,
    serve: tuple[str, int] | None,
    runtime: str,
) -> int:
    node_file = load_node_file(path)
    if serve is None or reinstall or not node_file.confirmed:
        try:
            with contextlib.ExitStack() as stack:
                core, where = local_core, ""
                if runtime == "micropython":
                    micropython = stack.enter_context(MicroPython())
                    core, where = micropython.core, f", node core in {micropython.version}"
                result = await bootstrap_node(
                    path,
                    reinstall=reinstall,
                    timeout=timeout,
                    linger=linger,
                    on_progress=lambda step: log.info("%s", step),
                    channels=channels,
                    capture_dir=capture_dir,
                    core=core,
                )
        except RuntimeUnavailable as exc:
            print(f"keystrap: {exc}", file=sys.stderr)
            return 2
        print(
            f"node {eui64(result.node_id)}: {result.outcome} in {result.seconds:.2f} s"
            + (f" (TID {result.tid}{where})" if result.tid is not None else where),
            flush=True,
        )
        if not result.ok:
            return 1
    if serve is None:
        return 0
    server = await start_coaps(path, *serve)
    print(f"node {eui64(node_file.state.node_id)}: serving {server.uri}/config", flush=True)
    try:
        await wait_for_signal()
    finally:
        await server.shutdown()
    return 0
