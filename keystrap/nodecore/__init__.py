"""The node's bootstrap path on one primitive: an injected AES-128 block function.

Written for the smallest nodes (MicroPython's ``cryptolib.aes`` in ECB mode, or a
hardware AES block): CCM and CMAC are built here on the block function; there is
no ``cryptography`` import, no hashing, no big integers -- bytes and bytearray
only. It must produce exactly the flights of :mod:`keystrap.protocol.node`
(tests/test_nodecore.py checks that over random inputs).
"""

from keystrap.nodecore.modes import BlockFunction, CountingBlock, ccm_open, ccm_seal, cmac
from keystrap.nodecore.node import MinimalNode, NodeCoreError

__all__ = [
    "BlockFunction",
    "CountingBlock",
    "MinimalNode",
    "NodeCoreError",
    "ccm_open",
    "ccm_seal",
    "cmac",
]
