"""AES-128 encryption of one block (FIPS-197), for platforms without an AES engine.

MicroPython builds without ``cryptolib`` (its WebAssembly port, for one) take
the block function from here; :func:`block_function` prefers ``cryptolib``
where it exists. Written for a small heap rather than speed: the S-box is
computed once (256 bytes), the round keys of the last key used are kept (176
bytes: a bootstrap uses two keys, IK then PSK_i), and a block is encrypted in
one reused 16-byte buffer. Not constant-time (table look-ups), like most
software AES on microcontrollers; a node with an AES peripheral should pass
that instead.
"""

try:  # noqa: SIM105 (MicroPython has no contextlib.suppress)
    from .modes import BlockFunction
except ImportError:  # MicroPython
    pass


def _xtime(b: int) -> int:
    return ((b << 1) ^ (0x1B if b & 0x80 else 0)) & 0xFF


def _sbox() -> bytearray:
    """The S-box from its definition: multiplicative inverse, then the affine map."""
    box = bytearray(256)
    p = q = 1
    while True:
        p ^= _xtime(p)  # p *= 3, a generator of GF(2^8)*
        q ^= q << 1  # q /= 3
        q ^= q << 2
        q ^= q << 4
        q &= 0xFF
        if q & 0x80:
            q ^= 0x09
        rot = q ^ (q << 1 | q >> 7) ^ (q << 2 | q >> 6) ^ (q << 3 | q >> 5) ^ (q << 4 | q >> 4)
        box[p] = (rot ^ 0x63) & 0xFF
        if p == 1:
            break
    box[0] = 0x63
    return box


_S = _sbox()
_round_keys = bytearray(176)
_cached_key = [b""]  # whose round keys _round_keys holds
_state = bytearray(16)


def _expand(key: bytes) -> bytearray:
    w = _round_keys
    if _cached_key[0] != key:
        w[:16] = key
        rcon = 1
        for i in range(16, 176, 4):
            if i % 16:
                for j in range(4):
                    w[i + j] = w[i + j - 16] ^ w[i + j - 4]
            else:  # RotWord, SubWord, Rcon
                w[i] = w[i - 16] ^ _S[w[i - 3]] ^ rcon
                w[i + 1] = w[i - 15] ^ _S[w[i - 2]]
                w[i + 2] = w[i - 14] ^ _S[w[i - 1]]
                w[i + 3] = w[i - 13] ^ _S[w[i - 4]]
                rcon = _xtime(rcon)
        _cached_key[0] = bytes(key)
    return w


def encrypt_block(key: bytes, block: bytes | bytearray) -> bytes:
    """``AES-128_key(block)``: 16-byte key, 16-byte block."""
    if len(key) != 16 or len(block) != 16:
        raise ValueError("AES-128: 16-byte key and block")
    w = _expand(key)
    s = _state
    for i in range(16):
        s[i] = block[i] ^ w[i]
    for r in range(1, 11):
        # SubBytes and ShiftRows in place (the state is column-major: byte 4c + row),
        # one temporary at a time: a tuple assignment would allocate on MicroPython.
        for i in range(0, 16, 4):
            s[i] = _S[s[i]]
        t = s[1]
        s[1] = _S[s[5]]
        s[5] = _S[s[9]]
        s[9] = _S[s[13]]
        s[13] = _S[t]
        for i in (2, 6):
            t = s[i]
            s[i] = _S[s[i + 8]]
            s[i + 8] = _S[t]
        t = s[15]
        s[15] = _S[s[11]]
        s[11] = _S[s[7]]
        s[7] = _S[s[3]]
        s[3] = _S[t]
        k = 16 * r
        for c in range(0, 16, 4):
            if r < 10:  # MixColumns, skipped in the last round
                a0 = s[c]
                x = a0 ^ s[c + 1] ^ s[c + 2] ^ s[c + 3]
                s[c] ^= x ^ _xtime(a0 ^ s[c + 1])
                s[c + 1] ^= x ^ _xtime(s[c + 1] ^ s[c + 2])
                s[c + 2] ^= x ^ _xtime(s[c + 2] ^ s[c + 3])
                s[c + 3] ^= x ^ _xtime(s[c + 3] ^ a0)
            for j in range(c, c + 4):
                s[j] ^= w[k + j]
    return bytes(s)


def block_function() -> "BlockFunction":
    """The platform's AES (MicroPython ``cryptolib``, ECB) if it has one, else ours."""
    try:
        from cryptolib import aes  # type: ignore[import-not-found]
    except ImportError:
        return encrypt_block

    def ecb(key: bytes, block: bytes | bytearray) -> bytes:
        return bytes(aes(key, 1).encrypt(block))

    return ecb
