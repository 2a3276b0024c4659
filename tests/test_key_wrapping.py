"""The stores' key wrapping (keystrap.store.records.KeyWrapping): keys it wrapped
or unwrapped lately come back without another unwrap, and nothing else does."""

from __future__ import annotations

import secrets

import pytest

from keystrap.crypto import unwrap_key, wrap_key
from keystrap.store import records
from keystrap.store.records import KeyWrapping, WrongMasterKey

KEK = bytes(range(16))


def counting_unwraps(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The wrapped values actually unwrapped from here on."""
    seen: list[bytes] = []

    def unwrap(kek: bytes, wrapped: bytes) -> bytes:
        seen.append(wrapped)
        return unwrap_key(kek, wrapped)

    monkeypatch.setattr(records, "unwrap_key", unwrap)
    return seen


def test_a_key_wrapped_here_unwraps_without_the_cipher(monkeypatch: pytest.MonkeyPatch) -> None:
    wrapping = KeyWrapping(KEK, "store")
    key = secrets.token_bytes(16)
    wrapped = wrapping.wrap(key)
    assert wrapped == wrap_key(KEK, key)  # stored exactly as before
    unwrapped = counting_unwraps(monkeypatch)
    assert wrapping.unwrap(wrapped) == key
    assert unwrapped == []


def test_a_stored_key_is_unwrapped_once_then_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    key = secrets.token_bytes(16)
    stored = wrap_key(KEK, key)  # by another process, say
    wrapping = KeyWrapping(KEK, "store")
    unwrapped = counting_unwraps(monkeypatch)
    assert [wrapping.unwrap(stored) for _ in range(3)] == [key] * 3
    assert unwrapped == [stored]


def test_altered_bytes_are_refused_even_beside_a_remembered_key() -> None:
    wrapping = KeyWrapping(KEK, "store")
    wrapped = wrapping.wrap(secrets.token_bytes(16))
    altered = bytes([wrapped[0] ^ 1]) + wrapped[1:]
    with pytest.raises(WrongMasterKey, match="store: a stored key does not unwrap"):
        wrapping.unwrap(altered)
    other = KeyWrapping(bytes(16), "store")  # another master key remembers nothing of KEK's
    with pytest.raises(WrongMasterKey):
        other.unwrap(wrapped)


def test_only_the_latest_keys_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "KEYS_REMEMBERED", 3)
    wrapping = KeyWrapping(KEK, "store")
    keys = [secrets.token_bytes(16) for _ in range(4)]
    wrapped = [wrapping.wrap(key) for key in keys]
    unwrapped = counting_unwraps(monkeypatch)
    assert [wrapping.unwrap(w) for w in wrapped[1:]] == keys[1:]
    assert unwrapped == []
    assert wrapping.unwrap(wrapped[0]) == keys[0]
    assert unwrapped == [wrapped[0]]  # the oldest was let go
