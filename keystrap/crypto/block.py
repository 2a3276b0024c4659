"""The AES-128 block function ``E(key, block)``: the scheme's single primitive."""

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

KEY_SIZE = 16
BLOCK_SIZE = 16
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
    # One whole block: ``update`` returns it, and ``finalize`` (about half of this
    # function's time) would only return b"".
    return Cipher(algorithms.AES128(key), _ECB).encryptor().update(block)


def xor_bytes(a: bytes, b: bytes) -> bytes:
    """XOR two equal-length byte strings (used for ``RN_i XOR RN_c``)."""
    if len(a) != len(b):
        raise ValueError("xor operands differ in length")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")
