"""A line protocol by which a host drives the core running in another runtime.

Used for MicroPython (keystrap/runtime/micropython_host.mjs feeds it lines): the
core computes, the host keeps the node's state and carries flights. Each
request holds the whole state, so the runtime keeps nothing between requests
and a restart of either side loses nothing. ``V`` is the node's wire version
(1 paper, 2 compact) in decimal; the other fields are hex, ``-`` for empty::

    request:  hello   V ID_i ID_c KEY RN_i SK_i FLIGHT4 FLIGHT5 RN
              answer  V ID_i ID_c KEY RN_i SK_i FLIGHT4 FLIGHT5 RECEIVED_FLIGHT4
              confirm V ID_i ID_c KEY RN_i SK_i FLIGHT4 FLIGHT5 RECEIVED_FLIGHT11
    reply:    ok       KEY RN_i SK_i FLIGHT4 FLIGHT5 FLIGHT_1_OR_5 (- for confirm)
              refused  KEY RN_i SK_i FLIGHT4 FLIGHT5 REASON...

The state returned with ``refused`` lets a host check that a refused flight 4
changed nothing. Anything unparseable is answered ``error REASON``.
"""

from .aes import block_function
from .node import MinimalNode, NodeCoreError


def _field(text: str) -> bytes:
    return b"" if text == "-" else bytes.fromhex(text)


def _hex(data: bytes) -> str:
    return data.hex() if data else "-"


def _state(node: MinimalNode) -> str:
    fields = (node.key, node.rn_i, node.session_key, node.flight4, node.flight5)
    return " ".join([_hex(f) for f in fields])


def handle(line: str) -> str:
    """Answer one request line, on the platform's block function."""
    words = line.split()
    if len(words) != 10 or words[0] not in ("hello", "answer", "confirm"):
        return "error expected: hello|answer|confirm, a version and 8 fields"
    if words[1] not in ("1", "2"):
        return "error version must be 1 or 2"
    try:
        values = [_field(w) for w in words[2:]]
    except ValueError:
        return "error a field is not hex"
    if [len(v) for v in values[:3]] != [8, 8, 16] or len(values[3]) not in (0, 16):
        return "error ID_i and ID_c are 8 bytes, KEY 16, RN_i 16 or none"
    node = MinimalNode(
        values[0],
        values[1],
        values[2],
        block_function(),
        values[3],
        values[4],
        values[5],
        values[6],
        int(words[1]),
    )
    try:
        if words[0] == "hello":
            out = node.hello(values[7])
        elif words[0] == "answer":
            out = node.answer(values[7])
        else:
            node.confirm(values[7])
            out = b""
    except NodeCoreError as exc:
        return "refused " + _state(node) + " " + str(exc)
    return "ok " + _state(node) + " " + _hex(out)
