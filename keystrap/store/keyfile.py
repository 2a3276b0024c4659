"""Key files: 32 hex digits and a newline, mode 0600, refused if others can read them."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from keystrap.store.atomic import taken_back_on_failure, write_new
from keystrap.store.bounded_read import read_bounded
from keystrap.store.errors import StoreError
from keystrap.store.sqlite import files_of_new_database

T = TypeVar("T")

KEY_SIZE = 16
MAX_KEY_FILE = 4096  # 32 hex digits and a newline, with room for a line ending of any kind


def key_file_bytes(key: bytes) -> bytes:
    if len(key) != KEY_SIZE:
        raise ValueError("keys are 16 bytes")
    return key.hex().encode() + b"\n"


def write_key_file(path: Path, key: bytes, *, force: bool = False) -> None:
    """A new key file; an existing one is replaced only with ``force``."""
    write_new(path, key_file_bytes(key), force=force)


def read_key_file(path: Path, *, where_from: str = "") -> bytes:
    """``where_from`` tells, when the file is missing, where it comes from and
    which option names another."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise StoreError(f"key file {path} does not exist{where_from}") from None
    if stat.S_ISDIR(info.st_mode):
        raise StoreError(f"key file {path} is a directory: name the file inside it")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StoreError(
            f"key file {path} is accessible by others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"run: chmod 600 {path}"
        )
    try:
        text = read_bounded(path, MAX_KEY_FILE, "key file").decode().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"cannot read key file {path}: {exc}") from None
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
    write_new(path, key_file_bytes(key))
    return key, True


def _load_master_key(store: Path, path: Path, rng: Callable[[int], bytes]) -> tuple[bytes, bool]:
    """The master key wrapping ``store``'s keys: made with a new store only. An
    existing store without its key is an error."""
    if not store.exists():
        return load_or_create_key_file(path, rng)
    if not path.exists():
        raise StoreError(
            f"master key file {path} does not exist: the keys in {store} cannot be "
            "unwrapped without it; put it back (or give --master-key)"
        )
    return read_key_file(path), False


def open_with_master_key(
    store: Path, path: Path, rng: Callable[[int], bytes], open_store: Callable[[bytes], T]
) -> tuple[T, bool]:
    """``(open_store(key), created)`` with the key of :func:`_load_master_key`. If
    the store cannot be opened, a key file made here goes again, and so do the
    files of a SQLite store made here: a failed start leaves the site as it was."""
    with taken_back_on_failure(path, *files_of_new_database(store)):
        key, created = _load_master_key(store, path, rng)
        return open_store(key), created
