"""The node's side of the bootstrap -- flights 1, 4 and 5, PSK_i and SK_i -- on the
block function alone. Fixed layouts as in docs/protocol.md; state in plain bytes."""

from keystrap.nodecore.modes import BlockFunction, ccm_open, ccm_seal, cmac

VERSION_TYPE = {1: 0x11, 4: 0x14, 5: 0x15}


class NodeCoreError(Exception):
    """A flight 4 that is malformed, unauthentic, or answers another RN_i."""


class MinimalNode:
    def __init__(
        self, node_id: bytes, controller_id: bytes, key: bytes, block: BlockFunction
    ) -> None:
        self.node_id = node_id
        self.controller_id = controller_id
        self.key = key  # IK, replaced by PSK_i on a valid flight 4
        self.session_key = b""
        self._e = block
        self._rn_i = b""

    def hello(self, rn_i: bytes) -> bytes:
        """Flight 1 for a fresh ``rn_i`` (16 random bytes from the platform's RNG)."""
        self._rn_i = bytes(rn_i)
        return bytes([VERSION_TYPE[1]]) + self.node_id + self._rn_i

    def answer(self, flight4: bytes) -> bytes:
        """Check flight 4, switch to PSK_i and SK_i, and return flight 5."""
        if len(flight4) != 45 or flight4[0] != VERSION_TYPE[4] or not self._rn_i:
            raise NodeCoreError("not a flight 4 for this node")
        tid = flight4[1:5]
        aad = flight4[:5][:1] + self.controller_id + tid + self.node_id
        nonce = bytes([4]) + self.controller_id + tid
        opened = ccm_open(self._e, self.key, nonce, flight4[5:], aad)
        if opened is None:
            raise NodeCoreError("flight 4 failed authentication")
        difference = 0
        for i in range(16):
            difference |= opened[i] ^ self._rn_i[i]
        if difference:
            raise NodeCoreError("flight 4 answers another RN_i")
        rn_c = opened[16:]
        block = bytearray(self._rn_i)
        for i in range(16):
            block[i] ^= rn_c[i]
        psk = self._e(self.key, bytes(block))
        fixed = b"keystrap SK_i\x00" + self.node_id + self.controller_id + b"\x00\x00\x00\x80"
        self.session_key = cmac(self._e, psk, b"\x00\x00\x00\x01" + fixed)
        self.key, self._rn_i = psk, b""
        header = bytes([VERSION_TYPE[5]])
        sealed = ccm_seal(
            self._e,
            psk,
            bytes([5]) + self.controller_id + tid,
            rn_c,
            header + self.controller_id + tid + self.node_id,
        )
        return header + tid + sealed
