"""Every primitive against published vectors kept as data files."""

import pytest

from keystrap.crypto import (
    InvalidTag,
    KeyUnwrapError,
    aes_encrypt_block,
    ccm_open,
    ccm_seal,
    cmac,
    constant_time_equal,
    derive_session_key,
    kbkdf_cmac,
    unwrap_key,
    wrap_key,
)
from keystrap.crypto.kdf import session_key_fixed_input

from .conftest import load_vectors

h = bytes.fromhex


@pytest.mark.parametrize("v", load_vectors("aes128_block.json"), ids=lambda v: v["source"])
def test_aes_block(v: dict[str, str]) -> None:
    assert aes_encrypt_block(h(v["key"]), h(v["plaintext"])) == h(v["ciphertext"])


@pytest.mark.parametrize("v", load_vectors("aes128_ccm8.json"), ids=lambda v: v["source"])
def test_ccm8_seal_and_open(v: dict[str, str]) -> None:
    key, nonce, aad = h(v["key"]), h(v["nonce"]), h(v["aad"])
    assert ccm_seal(key, nonce, h(v["plaintext"]), aad) == h(v["sealed"])
    assert ccm_open(key, nonce, h(v["sealed"]), aad) == h(v["plaintext"])


@pytest.mark.parametrize("v", load_vectors("aes128_ccm8.json"), ids=lambda v: v["source"])
def test_ccm8_rejects_any_flipped_bit_of_tag_or_ciphertext(v: dict[str, str]) -> None:
    key, nonce, aad, sealed = h(v["key"]), h(v["nonce"]), h(v["aad"]), h(v["sealed"])
    for i in range(len(sealed)):
        damaged = bytearray(sealed)
        damaged[i] ^= 0x01
        with pytest.raises(InvalidTag):
            ccm_open(key, nonce, bytes(damaged), aad)
    with pytest.raises(InvalidTag):
        ccm_open(key, nonce, sealed, aad + b"\x00")


def test_kept_cipher_objects_keep_each_key_apart() -> None:
    """Cipher objects are kept for recent keys (AES block and CCM): every key,
    reused after many others, and a key buffer changed in place after use,
    still gives the vectors' answer for the key it holds at the call."""
    blocks, sealed = load_vectors("aes128_block.json"), load_vectors("aes128_ccm8.json")
    for _ in range(3):
        for b, v in zip(blocks * 2, sealed, strict=False):
            for other in range(40):  # more keys than are kept
                aes_encrypt_block(other.to_bytes(16, "big"), bytes(16))
                ccm_seal(other.to_bytes(16, "big"), h(v["nonce"]), b"", b"")
            assert aes_encrypt_block(h(b["key"]), h(b["plaintext"])) == h(b["ciphertext"])
            key, nonce, aad = h(v["key"]), h(v["nonce"]), h(v["aad"])
            assert ccm_seal(key, nonce, h(v["plaintext"]), aad) == h(v["sealed"])
    first, second = sealed[0], next(v for v in sealed if v["key"] != sealed[0]["key"])
    buffer = bytearray(h(first["key"]))
    assert ccm_open(buffer, h(first["nonce"]), h(first["sealed"]), h(first["aad"]))  # type: ignore[arg-type]
    buffer[:] = h(second["key"])
    opened = ccm_open(buffer, h(second["nonce"]), h(second["sealed"]), h(second["aad"]))  # type: ignore[arg-type]
    assert opened == h(second["plaintext"])
    one, other_block = blocks[0], next(b for b in blocks if b["key"] != blocks[0]["key"])
    buffer = bytearray(h(one["key"]))
    assert aes_encrypt_block(buffer, h(one["plaintext"])) == h(one["ciphertext"])  # type: ignore[arg-type]
    buffer[:] = h(other_block["key"])
    expected = h(other_block["ciphertext"])
    assert aes_encrypt_block(buffer, h(other_block["plaintext"])) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("v", load_vectors("aes128_cmac.json"), ids=lambda v: v["message"][:8])
def test_cmac(v: dict[str, str]) -> None:
    assert cmac(h(v["key"]), h(v["message"])) == h(v["tag"])


@pytest.mark.parametrize("v", load_vectors("kbkdf_cmac.json"), ids=lambda v: v["key"][:8])
def test_kbkdf_cmac(v: dict[str, object]) -> None:
    length = int(str(v["length_bits"])) // 8
    out = kbkdf_cmac(h(str(v["key"])), h(str(v["fixed_input"])), length)
    assert out == h(str(v["output"]))


def test_session_key_is_counter_mode_cmac_over_documented_fixed_input() -> None:
    """SK_i = CMAC(PSK, [1]_32 || "keystrap SK_i" || 0x00 || ID_i || ID_c || [128]_32)."""
    psk, nid, cid = bytes(range(16)), bytes(8), b"\xff" * 8
    fixed = b"keystrap SK_i\x00" + nid + cid + (128).to_bytes(4, "big")
    assert session_key_fixed_input(nid, cid) == fixed
    assert derive_session_key(psk, nid, cid) == cmac(psk, b"\x00\x00\x00\x01" + fixed)


@pytest.mark.parametrize("v", load_vectors("aes_keywrap.json"), ids=lambda v: v["source"])
def test_key_wrap(v: dict[str, str]) -> None:
    assert wrap_key(h(v["kek"]), h(v["key"])) == h(v["wrapped"])
    assert unwrap_key(h(v["kek"]), h(v["wrapped"])) == h(v["key"])
    damaged = bytearray(h(v["wrapped"]))
    damaged[-1] ^= 1
    with pytest.raises(KeyUnwrapError):
        unwrap_key(h(v["kek"]), bytes(damaged))


def test_constant_time_equal() -> None:
    assert constant_time_equal(b"abc", b"abc")
    assert not constant_time_equal(b"abc", b"abd")
    assert not constant_time_equal(b"abc", b"ab")


@pytest.mark.parametrize("size", [0, 15, 17, 32])
def test_block_function_refuses_wrong_sizes(size: int) -> None:
    with pytest.raises(ValueError):
        aes_encrypt_block(bytes(size), bytes(16))
    with pytest.raises(ValueError):
        aes_encrypt_block(bytes(16), bytes(size))
