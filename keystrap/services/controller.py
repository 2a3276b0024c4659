"""``keystrap controller``: the SBR process, an aioquic-style loop around the
sans-I/O :class:`keystrap.protocol.Controller`.

Each input -- a flight from a node's out-of-band session (named by a session
number the core maps to its node), a server's reply, a due timer -- goes to the
core; the state is saved on the store's thread (group commit, see
:mod:`keystrap.store.worker`); only then is what the core produced sent, and
its next timer scheduled with ``loop.call_at`` on the loop's monotonic clock.
The wall clock enters only as flight 2's timestamp.

It also asks the server every ``revocation_poll`` seconds which nodes were
revoked (flights 9/10, :class:`keystrap.protocol.revocation_feed.RevocationFeed`)
and drops their sessions and PSKs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import sqlite3
import time
from collections.abc import Coroutine, Sequence
from functools import partial
from pathlib import Path
from typing import Protocol

from keystrap.coap.client import SbsClient, ServerUnreachable
from keystrap.config import ControllerConfig
from keystrap.ids import eui64, parse_eui64
from keystrap.metrics import Metrics, serve_metrics
from keystrap.oob import OobClosed, OobError, OobLink, OobListener, parse_endpoint
from keystrap.oob.capture import capture_directory
from keystrap.oob.link import MediumLink
from keystrap.oob.medium import get_medium
from keystrap.oob.unix import UnixListener
from keystrap.protocol import (
    BootstrapConfirmed,
    ChallengeIssued,
    Controller,
    ControllerState,
    Event,
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
from keystrap.protocol.controller import EndSession, Session
from keystrap.protocol.revocation_feed import MAX_CURSOR, FeedRefused, RevocationFeed
from keystrap.services.instance import InstanceLock
from keystrap.services.lifetime import wait_for_signal
from keystrap.services.logs import Outage
from keystrap.store.controller_store import ControllerStore
from keystrap.store.errors import StoreError
from keystrap.store.keyfile import open_with_master_key, read_key_file
from keystrap.store.sqlite import busy
from keystrap.store.worker import StoreThread

log = logging.getLogger("keystrap.controller")
REVOCATION_CURSOR = "revocations_seen"
KEY_FILE_FROM = (
    ": `keystrap admin controller add --key-out` writes it; "
    "--key-file (key_file in [controller]) names another"
)
PRUNE_EVERY = 3600.0  # seconds between sweeps of finished transactions
END_GRACE = 2.0  # seconds an ended session stays open for the node to read and hang up
Save = tuple[ControllerState, frozenset[int]]  # a state and the TIDs it changed
STATE_FAILURES = (StoreError, sqlite3.Error)
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
        self._links: dict[Session, OobLink] = {}  # open out-of-band sessions by number
        self._numbers = itertools.count(1)
        self._inflight: set[int] = set()
        self._tasks: set[asyncio.Task[object]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self.metrics = Metrics("controller")
        self._started = asyncio.Event()  # the core is there to take sessions
        self._silence = Outage(log, "server answering again")
        self._refusals = Outage(log, "revocation feed: answered again")
        self._state_failures = Outage(log, "state read and saved again")
        self._unlogged: list[Event] = []  # events of changes not saved yet

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
        self._loop = asyncio.get_running_loop()
        self._capture_dir = (
            capture_directory(Path(config.capture_dir)) if config.capture_dir else None
        )
        self._sk_cs = sk_cs = read_key_file(config.key_file, where_from=KEY_FILE_FROM)
        # The out-of-band endpoint and the metrics address are taken before the
        # state is opened: one that cannot be had stops the start before a state
        # or a master key is made. A node that connects meanwhile waits (_session).
        _, where = parse_endpoint(config.oob)
        listener: OobListener = UnixListener(Path(where))
        await listener.start(self._session)
        exporter = None
        try:
            exporter = await serve_metrics(self.metrics, config.metrics) if config.metrics else None
            self.store, created = open_with_master_key(
                config.state,
                config.master_key,
                secrets.token_bytes,
                partial(ControllerStore, config.state),
            )
            try:
                state = self.store.load(self.controller_id, sk_cs)
                # A cursor the feed cannot use stops the start, not the feed unseen.
                self.store.get_counter(REVOCATION_CURSOR, MAX_CURSOR)
            except BaseException:
                self.store.close()
                raise
        except BaseException:
            if exporter is not None:
                exporter.close()
            await listener.stop()
            raise
        if created:
            log.info("created the wrapping file the configuration names (mode 0600)")
        self.core = Controller(state, secrets.token_bytes, window=config.window)
        open_count = sum(
            1
            for tx in state.transactions.values()
            if tx.stage not in (TransactionStage.DONE, TransactionStage.FAILED)
        )
        # From here on, the store is touched only on its thread.
        self.saver: StoreThread[Save, None] = StoreThread(
            partial(save_batch, self.store), "keystrap-controller-store"
        )
        self.metrics.open_transactions.set(open_count)
        self._started.set()
        log.info(
            "controller %s: out-of-band on %s, server %s, next TID %d, %d open transaction(s)",
            config.id,
            config.oob,
            config.server if self._in_band is None else "in this process (small network)",
            state.next_tid,
            open_count,
        )
        self._schedule()
        loops = [
            asyncio.create_task(self._prune_loop()),
            asyncio.create_task(self._revocation_loop()),
        ]
        try:
            await wait_for_signal(ready)
        finally:
            log.info("shutting down")
            if self._timer is not None:
                self._timer.cancel()
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            if exporter is not None:
                exporter.close()
            await listener.stop()
            for pending in list(self._tasks):
                pending.cancel()
            await self.saver.close(self.store.close)

    # -- out of band --------------------------------------------------------------

    async def _session(self, raw: OobLink) -> None:
        await self._started.wait()
        config = self.config
        link = MediumLink(
            raw,
            send_medium=get_medium(config.channel_to_node),
            receive_medium=get_medium(config.channel_from_node),
            capture_dir=self._capture_dir,
            label="sbr",
        )
        session = next(self._numbers)
        self._links[session] = link
        try:
            while session in self._links:
                try:
                    data = await link.receive()
                except OobClosed:
                    break
                except OobError as exc:  # an oversized or incomplete message ends the session
                    log.warning("out-of-band session ended: %s", exc)
                    break
                if data is None:
                    continue
                begun = time.perf_counter()
                self.core.receive_from_node(data, self._loop.time(), time.time(), session)
                await self._flush_or_warn("out-of-band session")
                self.metrics.flight_handled(data, time.perf_counter() - begun)
        finally:
            if self._links.pop(session, None) is not None:
                self.core.session_closed(session)

    # -- in band ------------------------------------------------------------------

    async def _post(self, tid: int, data: bytes) -> None:
        try:
            reply = await self.client.post(data, lane=tid)
        except ServerUnreachable as exc:
            self._server_unreachable(exc, f"tid={tid}")
            self.core.server_unreachable(tid)
            await self._flush_or_warn(f"tid={tid}")
            return
        finally:
            self._inflight.discard(tid)
        self._silence.works()
        begun = time.perf_counter()
        self.core.receive_from_server(tid, reply, self._loop.time())
        await self._flush_or_warn(f"tid={tid}")
        refusal = "" if reply.status is Status.OK else "refusal"
        self.metrics.flight_handled(reply.payload, time.perf_counter() - begun, refusal)

    # -- timers: the core's own, on the loop's monotonic clock ---------------------

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        due = self.core.get_timer()
        if due is not None:
            self._timer = self._loop.call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.core.handle_timer(self._loop.time(), time.time())
        self._spawn(self._flush_or_warn("retransmission"))

    async def _prune_loop(self) -> None:
        while True:
            old = self.core.prune_finished(time.time() - self.config.keep_finished)
            if old:
                log.info("forgot %d finished transaction(s)", len(old))
                await self._flush_or_warn("pruning")
            await asyncio.sleep(PRUNE_EVERY)

    # -- decommissioning ------------------------------------------------------------

    async def _revocation_loop(self) -> None:
        while True:
            try:
                await self.poll_revocations()
            except ServerUnreachable as exc:
                self._server_unreachable(exc, "revocation feed")
            except STATE_FAILURES as exc:
                # Not the feed's end: the cursor moves only once a page's nodes are
                # dropped, so the next poll asks again for what this one could not apply.
                self._state_failed("revocation feed", exc, "will ask again")
            else:
                self._silence.works()
            await asyncio.sleep(self.config.revocation_poll)

    def _server_unreachable(self, exc: ServerUnreachable, what: str) -> None:
        """One warning when the server stops answering, and one line when it is
        back: each open bootstrap retries every few seconds, and a line per try
        made an outage with many nodes waiting hundreds of lines a second."""
        self._silence.failed(
            "unreachable",
            "%s: server unreachable (%s); retrying, quietly until it answers",
            "%s: server still unreachable (%s); will retry",
            what,
            exc,
        )

    def _state_failed(self, what: str, exc: Exception, then: str) -> None:
        """One warning per reason while the state cannot be read or saved (a full
        disk, another process holding its write lock), repeats at debug, one line
        once it works again: every input and retransmission tries a save, and each
        failure used to end its task with a traceback (an out-of-band session
        closed on the node, a timer never scheduled again)."""
        reason = str(exc)
        if isinstance(exc, sqlite3.Error) and busy(exc):
            reason += " (another process has held its write lock for over 10 s)"
        self._state_failures.failed(
            reason,
            "%s: state not read or saved (%s); %s, quietly while this lasts",
            "%s: state still not saved (%s); %s",
            what,
            reason,
            then,
        )

    def _feed_refusal(self, reason: str) -> None:
        """One warning per reason, as for an unreachable server: a server of
        another site, or one that no longer knows this controller, refuses every
        poll, and a line each time was 720 an hour at the default interval."""
        self._refusals.failed(
            reason,
            "revocation feed: %s; will ask again, quietly while this lasts",
            "revocation feed: %s (again)",
            reason,
        )

    async def poll_revocations(self) -> int:
        """Apply every revocation the server has recorded since the last poll."""
        cursor = await self.saver.call(
            partial(self.store.get_counter, REVOCATION_CURSOR, MAX_CURSOR)
        )
        feed = RevocationFeed(self.controller_id, self._sk_cs, cursor, secrets.token_bytes)
        applied = 0
        while True:
            page = feed.receive(await self.client.post(feed.query()))
            if isinstance(page, FeedRefused):
                self._feed_refusal(page.reason)
                return applied
            self._refusals.works()
            if page.rewound_from is not None:
                log.warning(
                    "revocation feed: the server went back from revocation %d to %d (its "
                    "store restored from a backup, or not the one this cursor came from?); "
                    "asking again from there",
                    page.rewound_from,
                    page.cursor,
                )
            for node_id in page.revoked:
                await self._drop_node(node_id)
            await self.saver.call(partial(self.store.set_counter, REVOCATION_CURSOR, page.cursor))
            self._state_failures.works()  # not on a refused poll, which saves nothing
            applied += len(page.revoked)
            if not page.more:
                return applied

    async def _drop_node(self, node_id: bytes) -> None:
        self.core.forget_node(node_id)
        ended = await self._flush()
        known = await self.saver.call(partial(self.store.revoke_node, node_id))
        if known or ended:
            log.info(
                "node=%s revoked by the server: dropped its sessions and credential", eui64(node_id)
            )
        else:
            log.debug("node=%s revoked by the server; never seen here", eui64(node_id))

    # -- the persistence rule: save, then send ------------------------------------

    async def _flush_or_warn(self, what: str) -> None:
        """:meth:`_flush` for an input the service goes on from when the state
        cannot be saved: its session stays open and its timers run, so a node
        repeating itself, or the next retransmission, saves and sends again."""
        try:
            await self._flush()
        except STATE_FAILURES as exc:
            self._state_failed(what, exc, "nothing that needs it was sent; retrying")

    async def _flush(self) -> int:
        """Save what the core changed, then send what it produced; returns the
        number of sessions it ended.

        A save that fails raises, and nothing is sent: what the core produced
        is dropped (its timers and the node's repeats produce it again), while
        its changes stay unsaved (:meth:`Controller.unsaved`) and its events are
        kept to be logged with the save that makes them true."""
        changes = self.core.unsaved()
        outgoing = self.core.data_to_send()
        events, self._unlogged = self._unlogged, []
        while (event := self.core.next_event()) is not None:
            events.append(event)
        if changes:
            try:
                with self.metrics.timed_store("save"):
                    await self.saver.ask((self.core.state, changes))
            except STATE_FAILURES:
                self._unlogged = events + self._unlogged
                self._schedule()
                raise
            self.core.mark_saved(changes)
            self._state_failures.works()
        for event in events:
            self._log_event(event)
            self.metrics.controller_event(self.controller_id, event)
        ended = 0
        for out in outgoing:
            if isinstance(out, ToServer):
                if out.tid in self._inflight or not self.core.is_current(out):
                    continue  # CoAP is already retransmitting it, or it was overtaken
                self._inflight.add(out.tid)
                self._spawn(self._post(out.tid, out.data))
            elif isinstance(out, ToNode):
                link = None if out.session is None else self._links.get(out.session)
                if link is not None:
                    with contextlib.suppress(OobClosed):
                        await link.send(out.data)
            elif isinstance(out, EndSession):
                link = self._links.pop(out.session, None)
                if link is not None:
                    ended += 1
                    self._spawn(_close_soon(link))
        self._schedule()
        return ended

    def _spawn(self, work: Coroutine[None, None, object]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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


async def _close_soon(link: OobLink) -> None:
    """End a session the node needs no more, a moment after its last message: a
    node that has just repeated itself (its flight 5 crossing our flight 11) must
    not find the session gone before it has read what was sent to it."""
    try:
        await asyncio.sleep(END_GRACE)
    finally:
        await link.close()


def save_batch(store: ControllerStore, saves: Sequence[Save]) -> list[None]:
    """On the store's thread: every save queued meanwhile in one commit. The last
    state is the newest and holds every change the earlier ones named."""
    changed = frozenset().union(*(tids for _, tids in saves))
    store.save(saves[-1][0], changed)
    return [None] * len(saves)
