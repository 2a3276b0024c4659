"""Keeping C libraries' own messages off a command's stderr.

A command's failure is one line. Some C libraries under the out-of-band media
write to file descriptor 2 themselves, past Python: libpng, inside OpenCV,
prints ``libpng error: IDAT: incorrect header check`` before OpenCV reports
the image unreadable, and there is no switch to turn it off. The decoder's own
error says the same thing once, naming the channel.

Used by the command line only: redirecting descriptor 2 is process-wide, and
in a service another thread's log line could be lost with it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def c_libraries_silenced() -> Iterator[None]:
    """Descriptor 2 goes to ``/dev/null`` while the block runs; Python's own
    ``sys.stderr`` is flushed first, so nothing written before is lost."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 2)
        finally:
            os.close(null)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
    finally:
        os.close(saved)
