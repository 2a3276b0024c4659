"""AES-128-only primitives.

The node's bootstrap path may use nothing but AES-128 (paper, section 3), so every
primitive here is built from the AES block cipher: CCM with an 8-byte tag (the AEAD
of TLS_PSK_WITH_AES_128_CCM_8), CMAC for key derivation, and AES key wrap for keys at
rest. The implementations come from ``cryptography``; each is checked against the
published vectors in ``tests/vectors``.
"""

from keystrap.crypto.block import BLOCK_SIZE, KEY_SIZE, aes_encrypt_block, xor_bytes
from keystrap.crypto.ccm import NONCE_SIZE, TAG_SIZE, InvalidTag, ccm_open, ccm_seal
from keystrap.crypto.compare import constant_time_equal
from keystrap.crypto.kdf import cmac, derive_session_key, kbkdf_cmac
from keystrap.crypto.keywrap import KeyUnwrapError, unwrap_key, wrap_key

__all__ = [
    "BLOCK_SIZE",
    "KEY_SIZE",
    "NONCE_SIZE",
    "TAG_SIZE",
    "InvalidTag",
    "KeyUnwrapError",
    "aes_encrypt_block",
    "ccm_open",
    "ccm_seal",
    "cmac",
    "constant_time_equal",
    "derive_session_key",
    "kbkdf_cmac",
    "unwrap_key",
    "wrap_key",
    "xor_bytes",
]
