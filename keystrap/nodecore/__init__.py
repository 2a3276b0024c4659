"""The node's bootstrap path on one primitive: an injected AES-128 block function.

Written for the smallest nodes (MicroPython's ``cryptolib.aes`` in ECB mode, a
hardware AES block, or :func:`aes.encrypt_block` where neither exists): CCM and
CMAC are built here on the block function; there is no ``cryptography`` import,
no hashing, no big integers -- bytes and bytearray only. This is the only node
implementation: :class:`keystrap.protocol.Node` adds stages, timers and
retransmission around :class:`MinimalNode`, and the same files run unmodified
on MicroPython (relative imports only, annotations never evaluated there).
"""

from .modes import CountingBlock, ccm_open, ccm_seal, cmac
from .node import MinimalNode, NodeCoreError

try:  # noqa: SIM105 (MicroPython has no contextlib.suppress)
    from .modes import BlockFunction
except ImportError:  # MicroPython
    pass

__all__ = [
    "BlockFunction",
    "CountingBlock",
    "MinimalNode",
    "NodeCoreError",
    "ccm_open",
    "ccm_seal",
    "cmac",
]
