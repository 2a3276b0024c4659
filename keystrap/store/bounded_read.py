"""Reading a file an operator names as input (a bundle, a node file, a
configuration, a captured signal): a regular file of at most a known size, or
one clear error.

``Path.read_bytes`` reads to the end of whatever it is given: ``/dev/zero`` has
none and fills the memory, and a FIFO without a writer blocks in ``open``
forever. Here the file is opened without waiting (``O_NONBLOCK``: a FIFO opens
at once, and a regular file reads as usual), refused unless it is a regular
file, and refused unread if its size is over ``limit``; else it is read to at
most ``limit`` + 1 bytes, so one that grew meanwhile is refused too, never cut
short and then parsed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from keystrap.store.errors import StoreError

KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class InputRefused(StoreError):
    """The input is not a regular file, or longer than any file of its kind."""


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """The bytes of ``path``, at most ``limit``; ``what`` names the file in the
    error ("bundle"). A missing or forbidden file raises ``OSError`` as
    ``open`` does, for the caller to word as it does already."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)  # before open(), which would name a directory by its fd
        kind = stat.S_IFMT(info.st_mode)
        if kind != stat.S_IFREG:
            raise InputRefused(
                f"{what} {path} is {KINDS.get(kind, 'a special file')}, not a regular file"
            )
        data = b""
        if info.st_size <= limit:  # nothing is read of a file known to be too large ...
            with open(fd, "rb", closefd=False) as handle:
                data = handle.read(limit + 1)  # ... nor too much of one that grew, or lied
    finally:
        os.close(fd)
    if max(info.st_size, len(data)) > limit:
        raise InputRefused(f"{what} {path} is larger than any {what} ({limit:,} bytes)")
    return data
