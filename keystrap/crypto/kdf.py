"""AES-CMAC (RFC 4493) and the SP 800-108 counter-mode KDF built on it.

The node derives its session key ``SK_i`` from ``PSK_i`` with this KDF (paper,
section 4: "SBI derives a session key SK_i from the PSK"). CMAC keeps the node
on AES alone: no hash function is needed anywhere on its bootstrap path.
"""

from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFCMAC, CounterLocation, Mode

from keystrap.crypto.block import KEY_SIZE

SESSION_KEY_LABEL = b"keystrap SK_i"


def cmac(key: bytes, message: bytes) -> bytes:
    """AES-128-CMAC of ``message`` (16-byte tag)."""
    if len(key) != KEY_SIZE:
        raise ValueError(f"AES-128 key must be {KEY_SIZE} bytes, got {len(key)}")
    mac = CMAC(algorithms.AES128(key))
    mac.update(message)
    return mac.finalize()


def kbkdf_cmac(key: bytes, fixed_input: bytes, length: int) -> bytes:
    """SP 800-108 KDF in counter mode, PRF = AES-128-CMAC, 32-bit counter before the data.

    Output block ``i`` (from 1) is ``CMAC(key, [i]_32 || fixed_input)``.
    """
    if len(key) != KEY_SIZE:
        raise ValueError(f"AES-128 key must be {KEY_SIZE} bytes, got {len(key)}")
    kdf = KBKDFCMAC(
        algorithm=algorithms.AES128,
        mode=Mode.CounterMode,
        length=length,
        rlen=4,
        llen=None,
        location=CounterLocation.BeforeFixed,
        label=None,
        context=None,
        fixed=fixed_input,
    )
    return kdf.derive(key)


def session_key_fixed_input(node_id: bytes, controller_id: bytes) -> bytes:
    """``Label || 0x00 || Context || [L]_32`` with Context = ``ID_i || ID_c`` and L = 128."""
    return SESSION_KEY_LABEL + b"\x00" + node_id + controller_id + (128).to_bytes(4, "big")


def derive_session_key(psk: bytes, node_id: bytes, controller_id: bytes) -> bytes:
    """``SK_i = KDF(PSK_i, "keystrap SK_i", ID_i || ID_c)``, 128 bits."""
    return kbkdf_cmac(psk, session_key_fixed_input(node_id, controller_id), KEY_SIZE)
