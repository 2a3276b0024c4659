"""CCM nonce construction: ``type (1) || ID_c (8) || TID (4)`` = 13 bytes.

Why it never repeats under one key (the full argument is in docs/protocol.md):

* ``SK_cs`` belongs to one controller, so ``ID_c`` is fixed under it; the
  controller never reuses a TID (it persists the sequence before use), and the
  type byte separates the four flights sealed under ``SK_cs`` (2, 3, 6, 7).
* ``IK_N`` may be shared by every node of an installer and reached through many
  controllers: ``(ID_c, TID)`` is still globally unique because the server
  registers each ``ID_c`` once; only flight 4 is sealed under ``IK``.
* ``PSK_i`` is fresh per bootstrap and seals only flight 5 (type 5); when it
  becomes the next initial key on re-installation, its flight 4 has type 4.

A retransmission re-sends stored bytes; nothing is ever re-sealed with another
plaintext under a used nonce.
"""

from keystrap.wire.header import FlightType
from keystrap.wire.sizes import ID_SIZE, TID_MAX


def make_nonce(flight_type: FlightType, controller_id: bytes, tid: int) -> bytes:
    if len(controller_id) != ID_SIZE:
        raise ValueError(f"controller ID must be {ID_SIZE} bytes")
    if not 0 <= tid <= TID_MAX:
        raise ValueError(f"TID {tid} out of range")
    return flight_type.to_bytes(1, "big") + controller_id + tid.to_bytes(4, "big")
