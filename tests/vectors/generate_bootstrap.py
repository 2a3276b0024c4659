"""Regenerate tests/vectors/bootstrap.json: ``python tests/vectors/generate_bootstrap.py``.

The inputs are fixed (``keystrap_lab.vectors.INPUTS``); only the code computes
the outputs.
"""

import json
from pathlib import Path

from keystrap_lab.vectors import INPUTS, run_vector

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
