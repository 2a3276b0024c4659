"""Logging set-up shared by the services: one line per event, never a key."""

from __future__ import annotations

import logging
import sys

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
        library.filters[:] = [_drop_close_notify]


def _drop_close_notify(record: logging.LogRecord) -> bool:
    """aiocoap's DTLS server warns of every close_notify (alert level 1, code 0),
    which is how a client politely ends its session: not worth a warning."""
    return record.getMessage() != "Unhandled alert level 1 code 0"
