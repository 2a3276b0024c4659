"""CCM (RFC 3610, M = 8, L = 2) and CMAC (RFC 4493) on a bare block function.

MicroPython runs this file as it is: it never evaluates annotations, so the
type names below only need to exist for CPython and mypy.
"""

try:
    from collections.abc import Callable

    BlockFunction = Callable[[bytes, bytes], bytes]
    """``E(key, block)``: AES-128 encryption of one 16-byte block."""
except ImportError:  # MicroPython has no collections.abc
    pass

TAG = 8


class CountingBlock:
    """Wraps a block function and counts its calls (the node's real cost)."""

    def __init__(self, encrypt: BlockFunction) -> None:
        self._encrypt = encrypt
        self.calls = 0

    def __call__(self, key: bytes, block: bytes) -> bytes:
        self.calls += 1
        return self._encrypt(key, block)


def _xor_into(target: bytearray, data: bytes | bytearray, offset: int = 0) -> None:
    for i in range(len(data)):
        target[offset + i] ^= data[i]


def _cbc_mac(e: BlockFunction, key: bytes, blocks: bytes) -> bytes:
    state = bytearray(16)
    for start in range(0, len(blocks), 16):
        _xor_into(state, blocks[start : start + 16])
        state = bytearray(e(key, bytes(state)))
    return bytes(state)


def _pad16(data: bytes) -> bytes:
    return data + bytes(-len(data) % 16)


def _ccm_tag_and_stream(
    e: BlockFunction, key: bytes, nonce: bytes, message: bytes, aad: bytes
) -> tuple[bytes, bytearray]:
    if len(nonce) != 13 or len(message) > 0xFFFF or len(aad) >= 0xFF00:
        raise ValueError("CCM: 13-byte nonce, message < 64 KiB, AAD < 65280 bytes")
    flags = (0x40 if aad else 0) | ((TAG - 2) // 2) << 3 | 1
    b0 = bytes([flags]) + nonce + bytes([len(message) >> 8, len(message) & 0xFF])
    header = _pad16(bytes([len(aad) >> 8, len(aad) & 0xFF]) + aad) if aad else b""
    mac = _cbc_mac(e, key, b0 + header + _pad16(message))
    stream = bytearray()
    for counter in range((len(message) + 15) // 16 + 1):
        stream += e(key, bytes([1]) + nonce + bytes([counter >> 8, counter & 0xFF]))
    tag = bytearray(mac[:TAG])
    _xor_into(tag, stream[:TAG])  # S_0 masks the tag
    return bytes(tag), stream[16:]


def ccm_seal(e: BlockFunction, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    tag, stream = _ccm_tag_and_stream(e, key, nonce, plaintext, aad)
    out = bytearray(plaintext)
    _xor_into(out, stream[: len(plaintext)])
    return bytes(out) + tag


def ccm_open(e: BlockFunction, key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes | None:
    """The plaintext, or ``None`` if the tag does not verify (compared in constant time)."""
    if len(sealed) < TAG:
        return None
    body, received = sealed[:-TAG], sealed[-TAG:]
    # Decrypt with the counter stream first; the stream does not depend on the plaintext.
    stream = bytearray()
    for counter in range((len(body) + 15) // 16 + 1):
        stream += e(key, bytes([1]) + nonce + bytes([counter >> 8, counter & 0xFF]))
    plaintext = bytearray(body)
    _xor_into(plaintext, stream[16 : 16 + len(body)])
    flags = (0x40 if aad else 0) | ((TAG - 2) // 2) << 3 | 1
    b0 = bytes([flags]) + nonce + bytes([len(body) >> 8, len(body) & 0xFF])
    header = _pad16(bytes([len(aad) >> 8, len(aad) & 0xFF]) + aad) if aad else b""
    mac = _cbc_mac(e, key, b0 + header + _pad16(bytes(plaintext)))
    difference = 0
    for i in range(TAG):
        difference |= mac[i] ^ stream[i] ^ received[i]
    return bytes(plaintext) if difference == 0 else None


def _double(block: bytes) -> bytes:
    """Multiply by x in GF(2^128), byte-wise (no big integers)."""
    out = bytearray(16)
    carry = 0
    for i in range(15, -1, -1):
        out[i] = ((block[i] << 1) & 0xFF) | carry
        carry = block[i] >> 7
    if block[0] & 0x80:
        out[15] ^= 0x87
    return bytes(out)


def cmac(e: BlockFunction, key: bytes, message: bytes) -> bytes:
    k1 = _double(e(key, bytes(16)))
    complete = len(message) > 0 and len(message) % 16 == 0
    if complete:
        last = bytearray(message[-16:])
        _xor_into(last, k1)
    else:
        tail = message[len(message) // 16 * 16 :]
        last = bytearray(tail + b"\x80" + bytes(15 - len(tail)))
        _xor_into(last, _double(k1))
    head = message[: -16 if complete else len(message) // 16 * 16]
    return _cbc_mac(e, key, head + bytes(last))
