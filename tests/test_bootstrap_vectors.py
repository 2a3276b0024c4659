"""tests/vectors/bootstrap.json: recomputed by the code, and PSK/SK_i by plain AES."""

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from keystrap_lab.vectors import inputs_from_vector, run_vector

from .conftest import load_vectors

VECTORS = load_vectors("bootstrap.json")


def test_there_are_at_least_three_vectors() -> None:
    assert len(VECTORS) >= 3


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["ID_i"])
def test_vector_recomputes_byte_for_byte(vector: dict[str, object]) -> None:
    assert run_vector(inputs_from_vector(vector)) == vector


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["ID_i"])
def test_psk_and_session_key_from_any_aes_library(vector: dict[str, str]) -> None:
    """What an outside implementer does: one ECB block, then one CMAC."""
    ik, rn_i, rn_c = (bytes.fromhex(vector[k]) for k in ("IK", "RN_i", "RN_c"))
    block = bytes(a ^ b for a, b in zip(rn_i, rn_c, strict=True))
    enc = Cipher(algorithms.AES(ik), modes.ECB()).encryptor()
    psk = enc.update(block) + enc.finalize()
    assert psk.hex() == vector["PSK"]

    mac = CMAC(algorithms.AES(psk))
    ids = bytes.fromhex(vector["ID_i"]) + bytes.fromhex(vector["ID_c"])
    mac.update(b"\x00\x00\x00\x01" + b"keystrap SK_i\x00" + ids + b"\x00\x00\x00\x80")
    assert mac.finalize().hex() == vector["SK_i"]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["ID_i"])
def test_every_flight_is_present(vector: dict[str, dict[str, str]]) -> None:
    assert sorted(vector["flights"]) == ["1", "2", "3", "4", "5", "6", "7"]
