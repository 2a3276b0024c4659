"""``keystrap controller``: the SBR process.

Out of band it serves node sessions; in band it posts flights 2 and 6 to the
server over CoAP. Every output of the state machine is sent only after the
state is saved (:class:`keystrap.store.controller_store.ControllerStore`).

It also asks the server every ``revocation_poll`` seconds which nodes were
revoked (flights 9/10) and drops their sessions and PSKs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from pathlib import Path
from typing import Protocol

from keystrap.coap.client import SbsClient, ServerUnreachable
from keystrap.config import ControllerConfig
from keystrap.ids import eui64, parse_eui64
from keystrap.metrics import Metrics, serve_metrics
from keystrap.oob import OobClosed, OobError, OobLink, OobListener, parse_endpoint
from keystrap.oob.link import MediumLink
from keystrap.oob.medium import get_medium
from keystrap.oob.unix import UnixListener
from keystrap.protocol import (
    BootstrapConfirmed,
    ChallengeIssued,
    Controller,
    NodeProved,
    Rejected,
    Reply,
    Status,
    ToNode,
    ToServer,
    TransactionFailed,
    TransactionStage,
    TransactionStarted,
)
from keystrap.services.instance import InstanceLock
from keystrap.services.lifetime import wait_for_signal
from keystrap.store.controller_store import ControllerStore
from keystrap.store.keyfile import load_master_key, read_key_file
from keystrap.wire import (
    DecodeError,
    RevocationList,
    RevocationQuery,
)
from keystrap.wire.revocation import MAX_ENTRIES as MAX_REVOCATIONS

log = logging.getLogger("keystrap.controller")
REVOCATION_CURSOR = "revocations_seen"
PRUNE_EVERY = 3600.0  # seconds between sweeps of finished transactions
PROGRESS: dict[type, str] = {
    TransactionStarted: "flight 1 received, flight 2 sent",
    ChallengeIssued: "flight 3 authenticated, flight 4 sent",
    NodeProved: "flight 5 verified, node holds its PSK",
    BootstrapConfirmed: "server confirmed; bootstrap complete",
}


class InBand(Protocol):
    """Where flights 2, 6 and 9 go and their answers come from: the server over
    CoAP (:class:`SbsClient`), or its core in this process (small network)."""

    async def post(self, data: bytes, lane: int = 0) -> Reply: ...

    async def shutdown(self) -> None: ...


class ControllerService:
    def __init__(self, config: ControllerConfig, in_band: InBand | None = None) -> None:
        """Without ``in_band``, the server named by ``config.server`` is asked over CoAP."""
        self.config = config
        self._in_band = in_band
        self.controller_id = parse_eui64(config.id)
        self._links: dict[bytes, OobLink] = {}
        self._inflight: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self.metrics = Metrics("controller")

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """The server's name is resolved and the state locked first: a server that
        cannot be found, or a second controller, stops here before anything is
        written."""
        self.client: InBand = self._in_band or await SbsClient.create(
            self.config.server, self.config.coap_endpoints
        )
        try:
            lock = InstanceLock.acquire(self.config.state, "controller")
            try:
                await self._run(ready)
            finally:
                lock.release()
        finally:
            await self.client.shutdown()

    async def _run(self, ready: asyncio.Event | None) -> None:
        config = self.config
        sk_cs = read_key_file(config.key_file)
        master_key, created = load_master_key(config.state, config.master_key, secrets.token_bytes)
        if created:
            log.info("created %s (mode 0600); it wraps what is stored", config.master_key)
        self.store = ControllerStore(config.state, master_key)
        state = self.store.load(self.controller_id, sk_cs)
        self.core = Controller(state, secrets.token_bytes, window=config.window)
        open_count = sum(
            1
            for tx in state.transactions.values()
            if tx.stage not in (TransactionStage.DONE, TransactionStage.FAILED)
        )
        _, where = parse_endpoint(config.oob)
        listener: OobListener = UnixListener(Path(where))
        await listener.start(self._session)
        self.metrics.open_transactions.set(open_count)
        exporter = await serve_metrics(self.metrics, config.metrics) if config.metrics else None
        log.info(
            "controller %s: out-of-band on %s, server %s, next TID %d, %d open transaction(s)",
            config.id,
            config.oob,
            config.server if self._in_band is None else "in this process (small network)",
            state.next_tid,
            open_count,
        )
        timers = asyncio.create_task(self._timer_loop())
        revocations = asyncio.create_task(self._revocation_loop())
        try:
            await wait_for_signal(ready)
        finally:
            log.info("shutting down")
            timers.cancel()
            revocations.cancel()
            await asyncio.gather(timers, revocations, return_exceptions=True)
            if exporter is not None:
                exporter.close()
            await listener.stop()
            for task in list(self._tasks):
                task.cancel()
            self.store.close()

    # -- out of band --------------------------------------------------------------

    async def _session(self, raw: OobLink) -> None:
        config = self.config
        link = MediumLink(
            raw,
            send_medium=get_medium(config.channel_to_node),
            receive_medium=get_medium(config.channel_from_node),
            capture_dir=Path(config.capture_dir) if config.capture_dir else None,
            label="sbr",
        )
        node_id: bytes | None = None
        while True:
            try:
                data = await link.receive()
            except OobClosed:
                break
            except OobError as exc:  # an oversized or incomplete message ends the session
                log.warning("out-of-band session ended: %s", exc)
                break
            if data is None:
                continue
            sender = self.core.sender_of(data)
            if sender is not None and node_id != sender:
                node_id = sender
                self._links[node_id] = link
            begun = time.perf_counter()
            self.core.receive_from_node(data, time.time())
            await self._flush()
            self.metrics.flight_handled(data, time.perf_counter() - begun)
            if node_id is not None and (tid := self.core.finished(node_id, data)) is not None:
                await self._say_confirmed(link, node_id, tid)
                break
        if node_id is not None and self._links.get(node_id) is link:
            del self._links[node_id]

    async def _say_confirmed(self, link: OobLink, node_id: bytes, tid: int) -> None:
        """Flight 11 tells the node, verifiably, that the server holds its PSK_i.

        Sent here rather than by the protocol core: it ends the out-of-band
        session, which the core knows nothing of, and asks nothing back.
        """
        flight11 = self.core.confirmation(tid)
        if flight11 is None:  # revoked meanwhile: nothing to confirm
            return
        with contextlib.suppress(OobClosed):
            await link.send(flight11)

    # -- in band ------------------------------------------------------------------

    async def _post(self, tid: int, data: bytes) -> None:
        try:
            reply = await self.client.post(data, lane=tid)
        except ServerUnreachable as exc:
            log.warning("tid=%d: server unreachable (%s); will retry", tid, exc)
            self.core.server_unreachable(tid)
            await self._flush()
            return
        finally:
            self._inflight.discard(tid)
        begun = time.perf_counter()
        self.core.receive_from_server(tid, reply, time.time())
        await self._flush()
        refusal = "" if reply.status is Status.OK else "refusal"
        self.metrics.flight_handled(reply.payload, time.perf_counter() - begun, refusal)

    async def _timer_loop(self) -> None:
        pruned_at: float | None = None
        while True:
            if pruned_at is None or time.monotonic() - pruned_at > PRUNE_EVERY:
                pruned_at = time.monotonic()
                old = self.core.prune_finished(time.time() - self.config.keep_finished)
                if old:
                    log.info("forgot %d finished transaction(s)", len(old))
            due = self.core.get_timer()
            delay = 1.0 if due is None else max(0.0, min(1.0, due - time.time()))
            # asyncio.timeout, not wait_for: in Python 3.11 wait_for can turn a
            # cancellation that races its timeout into TimeoutError, and this
            # loop would then outlive the shutdown.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._wake.clear()
            self.core.handle_timer(time.time())
            await self._flush()
            # Our own flush set the event, but the delay is recomputed right now:
            # left set, the next wait would return at once and the loop would spin.
            self._wake.clear()

    # -- decommissioning ------------------------------------------------------------

    async def _revocation_loop(self) -> None:
        while True:
            try:
                await self.poll_revocations()
            except ServerUnreachable as exc:
                log.warning("revocation feed: server unreachable (%s)", exc)
            await asyncio.sleep(self.config.revocation_poll)

    async def poll_revocations(self) -> int:
        """Apply every revocation the server has recorded since the last poll."""
        applied = 0
        while True:
            after = self.store.get_counter(REVOCATION_CURSOR)
            query = RevocationQuery(self.controller_id, after, secrets.token_bytes(8))
            reply = await self.client.post(query.encode(self.core.state.sk_cs))
            if reply.status is not Status.OK:
                log.warning("revocation feed refused: %s %s", reply.status.value, reply.reason)
                return applied
            try:
                answer = RevocationList.decode(
                    reply.payload, self.core.state.sk_cs, self.controller_id, query.challenge
                )
            except DecodeError as exc:
                log.warning("revocation feed: answer rejected (%s)", exc)
                return applied
            for _, node_id in answer.entries:
                await self._drop_node(node_id)
            self.store.set_counter(REVOCATION_CURSOR, answer.next_after)
            applied += len(answer.entries)
            if len(answer.entries) < MAX_REVOCATIONS:
                return applied

    async def _drop_node(self, node_id: bytes) -> None:
        self.core.forget_node(node_id)
        await self._flush()
        known = self.store.revoke_node(node_id)
        link = self._links.pop(node_id, None)
        if link is not None:
            await link.close()
        if known or link is not None:
            log.info(
                "node=%s revoked by the server: dropped its sessions and credential", eui64(node_id)
            )
        else:
            log.debug("node=%s revoked by the server; never seen here", eui64(node_id))

    # -- the persistence rule: save, then send ------------------------------------

    async def _flush(self) -> None:
        changes = self.core.unsaved()
        with self.metrics.timed_store("save"):
            self.store.save(self.core.state, changes)
        self.core.mark_saved(changes)
        outgoing = self.core.data_to_send()
        closing: list[tuple[bytes, int]] = []
        while (event := self.core.next_event()) is not None:
            self._log_event(event)
            self.metrics.controller_event(self.controller_id, event)
            if isinstance(event, BootstrapConfirmed):
                closing.append((event.node_id, event.tid))
                psk = self.core.state.transactions[event.tid].psk
                if psk is not None:
                    self.store.record_node(event.node_id, event.tid, psk)
        for out in outgoing:
            if isinstance(out, ToServer):
                if out.tid in self._inflight:
                    continue  # CoAP is already retransmitting this request
                self._inflight.add(out.tid)
                task = asyncio.create_task(self._post(out.tid, out.data))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif isinstance(out, ToNode):
                link = self._links.get(out.node_id)
                if link is not None:
                    with contextlib.suppress(OobClosed):
                        await link.send(out.data)
        for node_id, tid in closing:
            link = self._links.pop(node_id, None)
            if link is not None:
                await self._say_confirmed(link, node_id, tid)
                await link.close()
        self._wake.set()

    @staticmethod
    def _log_event(event: object) -> None:
        if isinstance(
            event, TransactionStarted | ChallengeIssued | NodeProved | BootstrapConfirmed
        ):
            text = PROGRESS[type(event)]
            log.info("node=%s tid=%d: %s", eui64(event.node_id), event.tid, text)
        elif isinstance(event, TransactionFailed):
            log.warning("node=%s tid=%d: failed: %s", eui64(event.node_id), event.tid, event.reason)
        elif isinstance(event, Rejected):
            log.info("rejected input: %s", event.reason)
