"""Where captured out-of-band signals go (``--capture-dir``), checked when a
service starts; a module of its own, so that checking it loads no medium and no
crypto."""

from __future__ import annotations

from pathlib import Path

from keystrap.oob.channel import OobError


def capture_directory(path: Path) -> Path:
    """``path`` checked at start-up as the place for captured signals, rather than
    at the first signal, in the middle of a session: a file or anything else
    that is not a directory there is refused. It is made at the first signal."""
    if path.exists() and not path.is_dir():
        raise OobError(f"capture directory {path} exists and is not a directory")
    return path
