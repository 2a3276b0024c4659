"""Regenerate tests/vectors/compact.json: ``python tests/vectors/generate_compact.py``.

The compact profile (wire version 2) on the same fixed inputs as bootstrap.json,
except ``RN_c``, which the profile derives from ``SK_cs``, ``ID_c`` and the TID;
only the code computes the outputs.
"""

import json
from dataclasses import replace
from pathlib import Path

from keystrap.wire import COMPACT
from keystrap.wire.compact import derive_rn_c
from keystrap_lab.vectors import INPUTS, run_vector

if __name__ == "__main__":
    out = Path(__file__).with_name("compact.json")
    inputs = [replace(i, rn_c=derive_rn_c(i.sk_cs, i.controller_id, i.tid)) for i in INPUTS]
    data = {
        "description": (
            "keystrap bootstrap vectors, compact profile (wire version 2). "
            "RN_c = SP800-108-CMAC(SK_cs, 'keystrap RN_c', ID_c || TID); PSK and SK_i as in "
            "version 1; flights as in docs/protocol.md, 'Compact profile'."
        ),
        "vectors": [run_vector(i, COMPACT) for i in inputs],
    }
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {len(inputs)} vectors to {out}")
