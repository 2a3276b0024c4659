"""CCM (RFC 3610, M = 8, L = 2) and CMAC (RFC 4493) on a bare block function.

MicroPython runs this file as it is: it never evaluates annotations, so the
type names below only need to exist for CPython and mypy.
"""

try:
    from collections.abc import Callable

    BlockFunction = Callable[[bytes, bytes | bytearray], bytes]
    """``E(key, block)``: AES-128 encryption of one 16-byte block (the core passes
    its working buffers, bytearrays, to save allocations)."""
except ImportError:  # MicroPython has no collections.abc
    pass

TAG = 8


class CountingBlock:
    """Wraps a block function and counts its calls (the node's real cost)."""

    def __init__(self, encrypt: BlockFunction) -> None:
        self._encrypt = encrypt
        self.calls = 0

    def __call__(self, key: bytes, block: bytes | bytearray) -> bytes:
        self.calls += 1
        return self._encrypt(key, block)


def _xor(target: bytearray, data: bytes | bytearray, start: int, end: int, at: int = 0) -> None:
    """``target[at + i] ^= data[start + i]`` for ``start + i < end``, without slicing:
    on a small heap every slice is an allocation."""
    for i in range(end - start):
        target[at + i] ^= data[start + i]


def _absorb(
    e: BlockFunction, key: bytes, state: bytearray, data: bytes | bytearray, end: int
) -> None:
    """CBC-MAC ``data[:end]``, zero-padded to whole blocks, into ``state``."""
    for start in range(0, end, 16):
        _xor(state, data, start, min(start + 16, end))
        out = e(key, state)
        for i in range(16):
            state[i] = out[i]


def _ccm_mac(
    e: BlockFunction, key: bytes, nonce: bytes, message: bytes | bytearray, aad: bytes
) -> bytearray:
    """The CBC-MAC of B_0, the encoded AAD and the message (not yet masked)."""
    if len(nonce) != 13 or len(message) > 0xFFFF or len(aad) >= 0xFF00:
        raise ValueError("CCM: 13-byte nonce, message < 64 KiB, AAD < 65280 bytes")
    state = bytearray(16)
    state[0] = (0x40 if aad else 0) | ((TAG - 2) // 2) << 3 | 1
    _xor(state, nonce, 0, 13, 1)
    state[14], state[15] = len(message) >> 8, len(message) & 0xFF
    _absorb(e, key, state, bytes(16), 16)  # B_0 is in the state: E(0 ^ B_0)
    if aad:
        header = bytes([len(aad) >> 8, len(aad) & 0xFF]) + aad
        _absorb(e, key, state, header, len(header))
    _absorb(e, key, state, message, len(message))
    return state


def _ccm_stream(e: BlockFunction, key: bytes, nonce: bytes, size: int) -> bytearray:
    """S_0 (which masks the tag), then the key stream for ``size`` bytes."""
    counter = bytearray(16)
    counter[0] = 1
    _xor(counter, nonce, 0, 13, 1)
    stream = bytearray()
    for i in range((size + 15) // 16 + 1):
        counter[14], counter[15] = i >> 8, i & 0xFF
        stream += e(key, counter)
    return stream


def ccm_seal(e: BlockFunction, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    size = len(plaintext)
    out = bytearray(size + TAG)
    _xor(out, _ccm_mac(e, key, nonce, plaintext, aad), 0, TAG, size)
    _xor(out, plaintext, 0, size)
    stream = _ccm_stream(e, key, nonce, size)
    _xor(out, stream, 16, 16 + size)
    _xor(out, stream, 0, TAG, size)
    return bytes(out)


def ccm_open(e: BlockFunction, key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes | None:
    """The plaintext, or ``None`` if the tag does not verify (compared in constant time)."""
    size = len(sealed) - TAG
    if size < 0:
        return None
    # Decrypt with the counter stream first; the stream does not depend on the plaintext.
    stream = _ccm_stream(e, key, nonce, size)
    plaintext = bytearray(size)
    _xor(plaintext, sealed, 0, size)
    _xor(plaintext, stream, 16, 16 + size)
    mac = _ccm_mac(e, key, nonce, plaintext, aad)
    difference = 0
    for i in range(TAG):
        difference |= mac[i] ^ stream[i] ^ sealed[size + i]
    return bytes(plaintext) if difference == 0 else None


def _double(block: bytes | bytearray) -> bytearray:
    """Multiply by x in GF(2^128), byte-wise (no big integers)."""
    out = bytearray(16)
    carry = 0
    for i in range(15, -1, -1):
        out[i] = ((block[i] << 1) & 0xFF) | carry
        carry = block[i] >> 7
    if block[0] & 0x80:
        out[15] ^= 0x87
    return out


def cmac(e: BlockFunction, key: bytes, message: bytes) -> bytes:
    size = len(message)
    subkey = _double(e(key, bytes(16)))
    complete = size > 0 and size % 16 == 0
    if not complete:
        subkey = _double(subkey)
    head = size - 16 if complete else size // 16 * 16  # all but the last block
    state = bytearray(16)
    _absorb(e, key, state, message, head)
    _xor(state, message, head, size)
    if not complete:
        state[size - head] ^= 0x80
    _xor(state, subkey, 0, 16)
    return e(key, state)
