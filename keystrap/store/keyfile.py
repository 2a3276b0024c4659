"""Key files: 32 hex digits and a newline, mode 0600, refused if others can read them."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from keystrap.store.atomic import write_atomic
from keystrap.store.errors import StoreError

KEY_SIZE = 16


def write_key_file(path: Path, key: bytes) -> None:
    if len(key) != KEY_SIZE:
        raise ValueError("keys are 16 bytes")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, key.hex().encode() + b"\n", 0o600)


def read_key_file(path: Path) -> bytes:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise StoreError(f"key file {path} does not exist") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StoreError(
            f"key file {path} is accessible by others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"run: chmod 600 {path}"
        )
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise StoreError(f"key file {path} does not hold hex digits") from None
    if len(key) != KEY_SIZE:
        raise StoreError(f"key file {path} holds {len(key)} bytes, expected {KEY_SIZE}")
    return key


def load_or_create_key_file(path: Path, rng: Callable[[int], bytes]) -> tuple[bytes, bool]:
    """Return ``(key, created)``; creates the file with a fresh key on first use."""
    if path.exists():
        return read_key_file(path), False
    key = rng(KEY_SIZE)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key.hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return key, True
