"""The AES-128 block function ``E(key, block)``: the scheme's single primitive."""

from functools import lru_cache

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

KEY_SIZE = 16
BLOCK_SIZE = 16
RECENT_KEYS = 16
"""Keys whose cipher object is kept for the next call (here and in
:mod:`keystrap.crypto.ccm`). Making one costs several times the AES it then
does (one block: 5 µs with a new object, 0.7 µs with a kept one; a CCM seal:
2.7 and 1.7 µs), and the same key comes back at once: a controller's key for
the four flights the server seals and opens per bootstrap, an installer's
shared initial key for every node's ``PSK_i``, the node core's key for each
block of a CMAC or CCM. Keeping them holds nothing a memory dump would not
already give: the process holds these keys, or the master key that unwraps
them."""
_ECB = modes.ECB()  # noqa: S305 (never on more than one block, see below)


def aes_encrypt_block(key: bytes, block: bytes | bytearray) -> bytes:
    """Encrypt exactly one 16-byte block under a 16-byte key (FIPS-197).

    ECB on a single block is the raw block function; it is never applied to
    longer messages, which is why the length is enforced here.
    """
    if len(key) != KEY_SIZE:
        raise ValueError(f"AES-128 key must be {KEY_SIZE} bytes, got {len(key)}")
    if len(block) != BLOCK_SIZE:
        raise ValueError(f"AES block must be {BLOCK_SIZE} bytes, got {len(block)}")
    # One whole block: ``update`` returns it and keeps nothing back, so the context
    # serves the next block under the same key (``finalize`` would only return b"").
    return _encryptor(bytes(key)).update(block)


@lru_cache(maxsize=RECENT_KEYS)
def _encryptor(key: bytes) -> CipherContext:
    return Cipher(algorithms.AES128(key), _ECB).encryptor()


def xor_bytes(a: bytes, b: bytes) -> bytes:
    """XOR two equal-length byte strings (used for ``RN_i XOR RN_c``)."""
    if len(a) != len(b):
        raise ValueError("xor operands differ in length")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")
