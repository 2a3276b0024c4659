"""AES key wrap (RFC 3394) for keys at rest in the server's repository."""

from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_wrap,
)


class KeyUnwrapError(Exception):
    """The wrapped key failed its integrity check: wrong master key or altered data."""


def wrap_key(kek: bytes, key: bytes) -> bytes:
    """Wrap ``key`` (a multiple of 8 bytes, at least 16) under ``kek``; adds 8 bytes."""
    return aes_key_wrap(kek, key)


def unwrap_key(kek: bytes, wrapped: bytes) -> bytes:
    try:
        return aes_key_unwrap(kek, wrapped)
    except (InvalidUnwrap, ValueError):
        raise KeyUnwrapError("key unwrap failed integrity check") from None
