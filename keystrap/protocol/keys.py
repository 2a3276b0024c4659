"""The scheme's key derivations, exactly as the paper states them."""

from collections.abc import Callable

from keystrap.crypto import aes_encrypt_block, derive_session_key, xor_bytes

RandomSource = Callable[[int], bytes]
"""``rng(n)`` returns n random bytes; the I/O layers pass ``secrets.token_bytes``."""


def derive_psk(ik: bytes, rn_i: bytes, rn_c: bytes) -> bytes:
    """``PSK_i = AES-128_IK_i(RN_i XOR RN_c)`` -- one block, paper section 4."""
    return aes_encrypt_block(ik, xor_bytes(rn_i, rn_c))


__all__ = ["RandomSource", "derive_psk", "derive_session_key"]
