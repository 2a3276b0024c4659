"""AES-128-CCM with an 8-byte tag and a 13-byte nonce (CCM_8, RFC 3610 / SP 800-38C).

This is the AEAD of TLS_PSK_WITH_AES_128_CCM_8, so a node that already carries
DTLS needs no extra code for the bootstrap flights. A 13-byte nonce leaves a
2-byte length field: messages up to 64 KiB, far more than any flight.
"""

from functools import lru_cache

from cryptography.exceptions import InvalidTag as _CryptographyInvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from keystrap.crypto.block import KEY_SIZE, RECENT_KEYS

NONCE_SIZE = 13
TAG_SIZE = 8


class InvalidTag(Exception):
    """The CCM tag did not verify: wrong key, wrong nonce, or altered bytes."""


def _cipher(key: bytes, nonce: bytes) -> AESCCM:
    if len(key) != KEY_SIZE:
        raise ValueError(f"AES-128 key must be {KEY_SIZE} bytes, got {len(key)}")
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"CCM nonce must be {NONCE_SIZE} bytes, got {len(nonce)}")
    return _keyed(bytes(key))


@lru_cache(maxsize=RECENT_KEYS)
def _keyed(key: bytes) -> AESCCM:
    return AESCCM(key, tag_length=TAG_SIZE)


def ccm_seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Return ``ciphertext || tag`` (tag of 8 bytes)."""
    return _cipher(key, nonce).encrypt(nonce, plaintext, aad)


def ccm_open(key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
    """Verify and decrypt ``ciphertext || tag``; raise :class:`InvalidTag` on any mismatch.

    The tag comparison inside ``cryptography`` is constant-time.
    """
    if len(sealed) < TAG_SIZE:
        raise InvalidTag("sealed data shorter than the tag")
    try:
        return _cipher(key, nonce).decrypt(nonce, sealed, aad)
    except _CryptographyInvalidTag:
        raise InvalidTag("CCM tag mismatch") from None
