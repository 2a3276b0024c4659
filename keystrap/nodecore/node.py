"""The node's side of the bootstrap -- flights 1, 4 and 5, PSK_i and SK_i -- on the
block function alone. Fixed layouts as in docs/protocol.md; state in plain bytes.

Everything the node must keep across a power cycle is in the public attributes
(``key``, ``session_key``, ``rn_i``, ``flight4``, ``flight5``): a platform stores
them before it transmits what a call returned, and rebuilds the node from them
with the constructor. That is what keeps a node from bricking: once keyed, it
still answers the identical flight 4 with the identical flight 5, so a lost
flight 5 is recovered by the controller's retransmission.
"""

from .modes import ccm_open, ccm_seal, cmac

try:  # noqa: SIM105 (MicroPython has no contextlib.suppress)
    from .modes import BlockFunction
except ImportError:  # MicroPython: only annotations name it
    pass

PAPER, COMPACT = 1, 2  # wire versions: the paper's flights, the compact profile
FLIGHT4_SIZE = {PAPER: 45, COMPACT: 29}  # header, TID, (RN_i ||) RN_c sealed, 8-byte tag
FLIGHT11_SIZE = 13  # header, TID, tag


class NodeCoreError(Exception):
    """A flight 4 that is malformed, unauthentic, answers another RN_i, or comes
    when no bootstrap is under way. The node's state is unchanged."""


def _differ(a: bytes, b: bytes) -> int:
    """Non-zero if ``a`` and ``b`` differ; time depends only on the length."""
    difference = len(a) ^ len(b)
    for i in range(min(len(a), len(b))):
        difference |= a[i] ^ b[i]
    return difference


class MinimalNode:
    def __init__(
        self,
        node_id: bytes,
        controller_id: bytes,
        key: bytes,
        block: "BlockFunction",
        rn_i: bytes = b"",
        session_key: bytes = b"",
        flight4: bytes = b"",
        flight5: bytes = b"",
        version: int = PAPER,
    ) -> None:
        """``version`` is the profile the node was ordered with; it speaks no other."""
        self.version = version
        self.node_id = node_id
        self.controller_id = controller_id
        self.key = key  # IK, replaced by PSK_i on a valid flight 4
        self.session_key = session_key
        self.rn_i = rn_i  # while a bootstrap is under way
        self.flight4 = flight4  # once keyed: the flight 4 answered ...
        self.flight5 = flight5  # ... and the answer, sent again for it
        self._e = block

    def hello(self, rn_i: bytes) -> bytes:
        """Flight 1 for ``rn_i`` (16 random bytes from the platform's RNG).

        Starts a bootstrap; on a keyed node, a re-installation under PSK_i.
        Calling it again with the same ``rn_i`` returns the same flight 1.
        """
        if rn_i != self.rn_i:
            self.rn_i, self.session_key, self.flight4, self.flight5 = bytes(rn_i), b"", b"", b""
        return self._header(1) + self.node_id + self.rn_i

    def _header(self, kind: int) -> bytes:
        return bytes([self.version << 4 | kind])

    def answer(self, flight4: bytes) -> bytes:
        """Check flight 4, switch to PSK_i and SK_i, and return flight 5.

        Once keyed, the identical flight 4 gets the stored flight 5 again and
        any other is refused.
        """
        if self.flight5:
            if _differ(flight4, self.flight4):
                raise NodeCoreError("already keyed; flight 4 ignored")
            return self.flight5
        compact = self.version == COMPACT
        if len(flight4) != FLIGHT4_SIZE.get(self.version) or flight4[:1] != self._header(4):
            raise NodeCoreError(f"not a flight 4 of profile version {self.version}")
        if not self.rn_i:
            raise NodeCoreError("no bootstrap in progress")
        tid = flight4[1:5]
        aad = flight4[:1] + self.controller_id + tid + self.node_id
        nonce = bytes([4]) + self.controller_id + tid
        # Compact: RN_i is authenticated, not sent back; the paper: sent and compared.
        context = aad + (self.rn_i if compact else b"")
        opened = ccm_open(self._e, self.key, nonce, flight4[5:], context)
        if opened is None:
            raise NodeCoreError("flight 4 failed authentication")
        if not compact and _differ(opened[:16], self.rn_i):
            raise NodeCoreError("flight 4 answers another RN_i")
        rn_c = opened[-16:]
        block = bytearray(self.rn_i)
        for i in range(16):
            block[i] ^= rn_c[i]
        psk = self._e(self.key, bytes(block))
        fixed = b"keystrap SK_i\x00" + self.node_id + self.controller_id + b"\x00\x00\x00\x80"
        header = self._header(5)
        context = header + self.controller_id + tid + self.node_id
        # Compact: a tag alone, over RN_c as context; the paper: RN_c sealed.
        sealed = ccm_seal(
            self._e,
            psk,
            bytes([5]) + self.controller_id + tid,
            b"" if compact else rn_c,
            context + (rn_c if compact else b""),
        )
        self.session_key = cmac(self._e, psk, b"\x00\x00\x00\x01" + fixed)
        self.key, self.rn_i = psk, b""
        self.flight4, self.flight5 = bytes(flight4), header + tid + sealed
        return self.flight5

    def confirm(self, flight11: bytes) -> None:
        """Check the controller's flight 11: the server has confirmed this node's PSK_i.

        Raises :class:`NodeCoreError` unless it is sealed under this bootstrap's
        SK_i for its TID; it changes nothing either way.
        """
        header = flight11[:1]
        if not self.flight5 or len(flight11) != FLIGHT11_SIZE or header != self._header(11):
            raise NodeCoreError("not a flight 11 for this node")
        tid = self.flight4[1:5]
        aad = header + self.controller_id + tid + self.node_id
        nonce = bytes([11]) + self.controller_id + tid
        if (
            _differ(flight11[1:5], tid)
            or ccm_open(self._e, self.session_key, nonce, flight11[5:], aad) is None
        ):
            raise NodeCoreError("flight 11 failed authentication")
