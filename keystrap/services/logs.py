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
    logging.getLogger("coap").setLevel(logging.WARNING)
    logging.getLogger("coap-server").setLevel(logging.WARNING)
