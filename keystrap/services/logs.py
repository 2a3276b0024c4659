"""Logging set-up shared by the services: one line per event, never a key."""

from __future__ import annotations

import logging
import sys
import time

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def setup_logging(level: str, role: str) -> None:
    if level not in LEVELS:
        raise ValueError(f"log_level must be one of {', '.join(LEVELS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s {role} %(levelname)s %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger("keystrap")
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    for name in ("coap", "coap-server"):
        library = logging.getLogger(name)
        library.handlers[:] = [handler]
        library.propagate = False
        library.setLevel(logging.WARNING)
        library.filters[:] = [
            _drop_close_notify,
            _drop_shutdown_mismatch,
            _RateLimit(LIBRARY_REPEAT_INTERVAL),
        ]


LIBRARY_REPEAT_INTERVAL = 10.0


class _RateLimit(logging.Filter):
    """aiocoap warns of every odd datagram (unparsable, a type and code that do not
    fit), so a flood of garbage would write a line per packet: the same message
    is let through once per ``interval`` seconds."""

    def __init__(self, interval: float) -> None:
        super().__init__()
        self._interval = interval
        self._last: dict[object, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now - self._last.get(record.msg, -self._interval) < self._interval:
            return False
        if len(self._last) > 1000:
            self._last.clear()
        self._last[record.msg] = now
        return True


def _drop_close_notify(record: logging.LogRecord) -> bool:
    """aiocoap's DTLS server warns of every close_notify (alert level 1, code 0),
    which is how a client politely ends its session: not worth a warning."""
    return record.getMessage() != "Unhandled alert level 1 code 0"


SHUTDOWN_MISMATCH = (
    "Internal shutdown sequence mismatch: error dispatched through messagemanager after shutown"
)


def _drop_shutdown_mismatch(record: logging.LogRecord) -> bool:
    """aiocoap 0.4's own shutdown order, not ours: ``Context.shutdown`` (the only
    way to stop it) has its message manager forget its exchanges first and only
    then shut the DTLS server transport down, which ends each DTLS session still
    open -- every client that did not vanish by a fatal alert, since a polite
    close_notify does not end one -- by dispatching an error to that same
    manager. So a node agent that ever answered a request warned of a "mismatch"
    whenever it was stopped, though nothing was lost."""
    return record.getMessage() != SHUTDOWN_MISMATCH


class Outage:
    """A failure met again at every request or retry while it lasts (a store that
    cannot be written, a server that does not answer, a refusal at every poll):
    one line per reason, its repeats at debug, and one line once it is over. A
    line each time buried the log: an outage with many nodes waiting wrote
    hundreds a second, and nothing said when it ended."""

    def __init__(self, log: logging.Logger, over: str) -> None:
        self._log = log
        self._over = over
        self.reason: str | None = None
        """Why it failed last, or None while it works."""

    def failed(
        self, reason: str, first: str, again: str, *args: object, level: int = logging.WARNING
    ) -> None:
        """``first`` at ``level`` unless the last failure had the same ``reason``,
        ``again`` at debug if it had; both formatted with ``args``."""
        if reason == self.reason:
            self._log.debug(again, *args)
            return
        self.reason = reason
        self._log.log(level, first, *args)

    def works(self) -> None:
        if self.reason is not None:
            self.reason = None
            self._log.info(self._over)
