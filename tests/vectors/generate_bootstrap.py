"""Regenerate tests/vectors/bootstrap.json: ``python tests/vectors/generate_bootstrap.py``.

The inputs are fixed (chosen to include a zero key byte, an all-ones random and a
TID near the top of its range); only the code computes the outputs.
"""

import json
from pathlib import Path

from keystrap_lab.vectors import VectorInputs, run_vector

INPUTS = [
    VectorInputs(
        ik=bytes.fromhex("000102030405060708090a0b0c0d0e0f"),
        sk_cs=bytes.fromhex("101112131415161718191a1b1c1d1e1f"),
        node_id=bytes.fromhex("0200000000000001"),
        controller_id=bytes.fromhex("02000000000000c0"),
        rn_i=bytes.fromhex("a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"),
        rn_c=bytes.fromhex("b0b1b2b3b4b5b6b7b8b9babbbcbdbebf"),
        tid=1,
        ts=1_767_225_600,
    ),
    VectorInputs(
        ik=bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c"),
        sk_cs=bytes.fromhex("c0c1c2c3c4c5c6c7c8c9cacbcccdcecf"),
        node_id=bytes.fromhex("00124b0001020304"),
        controller_id=bytes.fromhex("00124b00ffffff01"),
        rn_i=bytes.fromhex("ffffffffffffffffffffffffffffffff"),
        rn_c=bytes.fromhex("00000000000000000000000000000000"),
        tid=4_294_967_295,
        ts=1_800_000_000,
    ),
    VectorInputs(
        ik=bytes.fromhex("00000000000000000000000000000000"),
        sk_cs=bytes.fromhex("ffeeddccbbaa99887766554433221100"),
        node_id=bytes.fromhex("a4c138fffe0b1e2d"),
        controller_id=bytes.fromhex("a4c138fffe000001"),
        rn_i=bytes.fromhex("3243f6a8885a308d313198a2e0370734"),
        rn_c=bytes.fromhex("3243f6a8885a308d313198a2e0370734"),
        tid=65_536,
        ts=4_000_000_000,
    ),
]

if __name__ == "__main__":
    out = Path(__file__).with_name("bootstrap.json")
    data = {
        "description": (
            "keystrap bootstrap vectors, protocol version 1. PSK = AES-128_IK(RN_i XOR RN_c); "
            "SK_i = SP800-108-CMAC(PSK, 'keystrap SK_i', ID_i || ID_c); flights as in "
            "docs/protocol.md."
        ),
        "vectors": [run_vector(i) for i in INPUTS],
    }
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {len(INPUTS)} vectors to {out}")
