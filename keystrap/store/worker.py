"""The one thread that touches a store, so the event loop never waits for the disk.

A service hands it requests and awaits the answers; the thread takes every
request queued since it last looked, handles them together in one transaction
and commits once (group commit): one fsync serves every request that arrived
while the previous one was on the disk. Answers are handed back only after that
commit, so whatever they promise is durable before it is sent -- the no-brick
rule is unchanged, only shared.

Other store work (a periodic flush, closing) runs on the same thread through
:meth:`StoreThread.call`, in the order it was asked for, so the connection is
never used from two threads.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

log = logging.getLogger("keystrap.store")
Request = TypeVar("Request")
Answer = TypeVar("Answer")
T = TypeVar("T")

BatchHandler = Callable[[Sequence[Request]], Sequence[Answer]]
"""Handles requests in one transaction, commits, and returns one answer each."""


Deliver = Callable[[Any, BaseException | None], None]
"""Called on the loop with a job's result, or with the exception it raised."""


@dataclass(frozen=True, slots=True)
class _Ask(Generic[Request]):
    request: Request
    deliver: Deliver


@dataclass(frozen=True, slots=True)
class _Call:
    function: Callable[[], Any]
    deliver: Deliver


_STOP = None
_Done = tuple[Deliver, Any, BaseException | None]


class StoreClosed(Exception):
    """Asked after :meth:`StoreThread.close`: shutting down, nothing is answered."""


class StoreThread(Generic[Request, Answer]):
    def __init__(self, handle_batch: BatchHandler[Request, Answer], name: str) -> None:
        """Starts the thread; to be created inside the event loop it answers to."""
        self._handle_batch = handle_batch
        self._loop = asyncio.get_running_loop()
        self._queue: queue.SimpleQueue[_Ask[Request] | _Call | None] = queue.SimpleQueue()
        self.batches = 0
        """Batches committed: with :attr:`requests`, the requests each fsync served."""
        self.requests = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(
        self, request: Request, deliver: Callable[[Answer | None, BaseException | None], None]
    ) -> None:
        """Queue ``request``; ``deliver`` gets its answer on the loop once the batch
        it joined is committed, or the batch's exception if it failed (then none
        of its answers may be sent). A callback, not a future: a service that
        answers datagrams needs no task per request."""
        if self._closed:
            raise StoreClosed("the store is closed")
        self._queue.put(_Ask(request, deliver))

    async def ask(self, request: Request) -> Answer:
        """:meth:`submit`, awaited."""
        future: asyncio.Future[Answer] = self._loop.create_future()
        self.submit(request, partial(_settle, future))
        return await future

    async def call(self, function: Callable[[], T]) -> T:
        """``function()`` run on the store's thread, between batches."""
        if self._closed:
            raise StoreClosed("the store is closed")
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put(_Call(function, partial(_settle, future)))
        return await future

    async def close(self, last: Callable[[], None]) -> None:
        """Run ``last`` (closing the store) on the thread, then end the thread."""
        try:
            await self.call(last)
        finally:
            self._closed = True
            self._queue.put(_STOP)
            await asyncio.to_thread(self._thread.join)

    def _run(self) -> None:
        stop = False
        while not stop:
            jobs = [self._queue.get()]
            while not self._queue.empty():
                jobs.append(self._queue.get_nowait())
            done: list[_Done] = []
            asks: list[_Ask[Request]] = []
            for job in jobs:
                if isinstance(job, _Ask):
                    asks.append(job)
                    continue
                done += self._batch(asks)
                asks = []
                if isinstance(job, _Call):
                    done.append(_outcome(job.deliver, job.function))
                else:
                    stop = True
            done += self._batch(asks)
            self._loop.call_soon_threadsafe(_resolve, done)

    def _batch(self, asks: list[_Ask[Request]]) -> list[_Done]:
        if not asks:
            return []
        try:
            answers = self._handle_batch([ask.request for ask in asks])
        except Exception as exc:  # the commit failed: no answer of the batch may leave
            return [(ask.deliver, None, exc) for ask in asks]
        self.batches += 1
        self.requests += len(asks)
        return [(ask.deliver, answer, None) for ask, answer in zip(asks, answers, strict=True)]


def _outcome(deliver: Deliver, function: Callable[[], Any]) -> _Done:
    try:
        return deliver, function(), None
    except Exception as exc:
        return deliver, None, exc


def _resolve(done: list[_Done]) -> None:
    """On the loop: one wake-up hands a whole batch's answers over."""
    for deliver, result, error in done:
        try:
            deliver(result, error)
        except Exception:  # one answer's bug must not keep the batch's others
            log.exception("unexpected error delivering a store answer")


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
