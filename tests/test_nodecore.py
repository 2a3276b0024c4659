"""The single-primitive node core: published vectors, and over random inputs the
flights, PSK and SK_i that the controller and server of a simulated run expect."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

import keystrap.nodecore
from keystrap.crypto import ccm_seal as reference_ccm_seal
from keystrap.nodecore import CountingBlock, MinimalNode, NodeCoreError, ccm_open, ccm_seal, cmac
from keystrap.wire import Flight4, Flight11
from keystrap_lab.vectors import VectorInputs, run_vector

from .conftest import load_vectors

h = bytes.fromhex


def ecb(key: bytes, block: bytes | bytearray) -> bytes:
    """The injected primitive, as a platform would provide it (here from cryptography)."""
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


@pytest.mark.parametrize("v", load_vectors("aes128_ccm8.json"), ids=lambda v: v["source"])
def test_ccm_vectors(v: dict[str, str]) -> None:
    key, nonce, aad = h(v["key"]), h(v["nonce"]), h(v["aad"])
    assert ccm_seal(ecb, key, nonce, h(v["plaintext"]), aad) == h(v["sealed"])
    assert ccm_open(ecb, key, nonce, h(v["sealed"]), aad) == h(v["plaintext"])
    damaged = bytearray(h(v["sealed"]))
    damaged[0] ^= 1
    assert ccm_open(ecb, key, nonce, bytes(damaged), aad) is None


@pytest.mark.parametrize("v", load_vectors("aes128_cmac.json"), ids=lambda v: v["message"][:8])
def test_cmac_vectors(v: dict[str, str]) -> None:
    assert cmac(ecb, h(v["key"]), h(v["message"])) == h(v["tag"])


ONE_BLOCK_KDF = [v for v in load_vectors("kbkdf_cmac.json") if v["length_bits"] == 128]


@pytest.mark.parametrize("v", ONE_BLOCK_KDF, ids=lambda v: v["key"][:8])
def test_kdf_vectors(v: dict[str, object]) -> None:
    """The node derives exactly one 128-bit block: the NIST vectors of that length."""
    out = cmac(ecb, h(str(v["key"])), b"\x00\x00\x00\x01" + h(str(v["fixed_input"])))
    assert out == h(str(v["output"]))


@pytest.mark.parametrize("v", load_vectors("bootstrap.json"), ids=lambda v: v["ID_i"])
def test_bootstrap_vectors(v: dict[str, object]) -> None:
    flights = v["flights"]
    assert isinstance(flights, dict)
    node = MinimalNode(h(str(v["ID_i"])), h(str(v["ID_c"])), h(str(v["IK"])), ecb)
    assert node.hello(h(str(v["RN_i"]))).hex() == flights["1"]
    assert node.answer(h(flights["4"])).hex() == flights["5"]
    assert node.key.hex() == v["PSK"] and node.session_key.hex() == v["SK_i"]


ids = st.binary(min_size=8, max_size=8)
keys = st.binary(min_size=16, max_size=16)


@settings(max_examples=60, deadline=None)
@given(
    ik=keys,
    sk=keys,
    nid=ids,
    cid=ids,
    rn_i=keys,
    rn_c=keys,
    tid=st.integers(0, 2**32 - 1),
    ts=st.integers(0, 2**32 - 1),
)
def test_same_flights_as_the_main_implementation(
    ik: bytes, sk: bytes, nid: bytes, cid: bytes, rn_i: bytes, rn_c: bytes, tid: int, ts: int
) -> None:
    reference = run_vector(VectorInputs(ik, sk, nid, cid, rn_i, rn_c, tid, ts))
    flights = reference["flights"]
    assert isinstance(flights, dict)
    node = MinimalNode(nid, cid, ik, CountingBlock(ecb))
    assert node.hello(rn_i) == h(flights["1"])
    assert node.answer(h(flights["4"])) == h(flights["5"])
    assert node.key == h(str(reference["PSK"])) and node.session_key == h(str(reference["SK_i"]))


@settings(max_examples=60, deadline=None)
@given(
    key=keys,
    nonce=st.binary(min_size=13, max_size=13),
    pt=st.binary(max_size=70),
    aad=st.binary(max_size=40),
)
def test_ccm_matches_the_library(key: bytes, nonce: bytes, pt: bytes, aad: bytes) -> None:
    sealed = ccm_seal(ecb, key, nonce, pt, aad)
    assert sealed == reference_ccm_seal(key, nonce, pt, aad)
    assert ccm_open(ecb, key, nonce, sealed, aad) == pt


def test_counts_block_calls_per_bootstrap() -> None:
    v = load_vectors("bootstrap.json")[0]
    block = CountingBlock(ecb)
    node = MinimalNode(h(v["ID_i"]), h(v["ID_c"]), h(v["IK"]), block)
    node.hello(h(v["RN_i"]))
    node.answer(h(v["flights"]["4"]))
    # flight 4: 5 CBC-MAC + 3 CTR; PSK: 1; flight 5: 4 + 2; SK_i: CMAC subkey + 3 blocks
    assert block.calls == 19


def test_rejects_bad_flight4_without_changing_its_key() -> None:
    v = load_vectors("bootstrap.json")[0]
    f4 = h(v["flights"]["4"])
    for damaged in (f4[:-1], bytes([0x15]) + f4[1:], f4[:20] + bytes([f4[20] ^ 1]) + f4[21:]):
        node = MinimalNode(h(v["ID_i"]), h(v["ID_c"]), h(v["IK"]), ecb)
        node.hello(h(v["RN_i"]))
        with pytest.raises(NodeCoreError):
            node.answer(damaged)
        assert node.key == h(v["IK"]) and node.session_key == b""
    other = MinimalNode(h(v["ID_i"]), h(v["ID_c"]), h(v["IK"]), ecb)
    other.hello(bytes(16))  # another RN_i
    with pytest.raises(NodeCoreError, match="another RN_i"):
        other.answer(f4)


def test_core_uses_nothing_but_the_block_function() -> None:
    """No crypto library, no hashing, no big-integer conversions in the node core."""
    forbidden_modules = {"cryptography", "hashlib", "hmac", "secrets", "keystrap.crypto"}
    forbidden_calls = {"from_bytes", "to_bytes", "pow"}
    for path in Path(keystrap.nodecore.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not {a.name.split(".")[0] for a in node.names} & forbidden_modules
            if isinstance(node, ast.ImportFrom):
                # Relative imports only (the files also run as a MicroPython package),
                # and the platform's AES where it has one.
                assert node.level == 1 or node.module in ("collections.abc", "cryptolib")
            if isinstance(node, ast.Attribute | ast.Name):
                name = node.attr if isinstance(node, ast.Attribute) else node.id
                assert name not in forbidden_calls, f"{path.name} uses {name}"


def test_keyed_node_answers_the_same_flight4_with_the_same_flight5_after_a_restart() -> None:
    """The no-brick rule on the core itself: flight 5 is kept, and survives a rebuild."""
    v = load_vectors("bootstrap.json")[0]
    f4, f5 = h(v["flights"]["4"]), h(v["flights"]["5"])
    node = MinimalNode(h(v["ID_i"]), h(v["ID_c"]), h(v["IK"]), ecb)
    node.hello(h(v["RN_i"]))
    assert node.answer(f4) == f5
    rebuilt = MinimalNode(
        node.node_id,
        node.controller_id,
        node.key,
        ecb,
        node.rn_i,
        node.session_key,
        node.flight4,
        node.flight5,
    )
    assert rebuilt.answer(f4) == f5 and rebuilt.key.hex() == v["PSK"]
    with pytest.raises(NodeCoreError, match="already keyed"):
        rebuilt.answer(f4[:-1] + bytes([f4[-1] ^ 1]))
    assert rebuilt.answer(f4) == f5


def test_flight11_confirms_only_under_this_bootstraps_sk_i() -> None:
    """The controller's "the server holds your PSK" is sealed under SK_i for the TID."""
    v = load_vectors("bootstrap.json")[0]
    nid, cid, f4 = h(v["ID_i"]), h(v["ID_c"]), h(v["flights"]["4"])
    node = MinimalNode(nid, cid, h(v["IK"]), ecb)
    tid = Flight4.peek_tid(f4)
    genuine = Flight11(cid, tid, nid).seal(h(v["SK_i"]))
    with pytest.raises(NodeCoreError):
        node.confirm(genuine)  # not keyed yet
    node.hello(h(v["RN_i"]))
    node.answer(f4)
    node.confirm(genuine)
    for forged in (
        b"",
        Flight11(cid, tid, nid).seal(h(v["PSK"])),
        Flight11(cid, tid + 1, nid).seal(h(v["SK_i"])),
        genuine[:-1] + bytes([genuine[-1] ^ 1]),
    ):
        with pytest.raises(NodeCoreError):
            node.confirm(forged)
