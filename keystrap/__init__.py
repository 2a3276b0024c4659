"""keystrap: secure bootstrapping for the Internet of small things.

Implements Namhi Kang's PSK reconfiguration scheme: a node imprinted with a
temporary initial key ``IK`` is re-keyed, through its controller (SBR) and the
authentication server (SBS), to ``PSK_i = AES_IK(RN_i XOR RN_c)`` so that the
installer who knew ``IK`` can no longer read, modify or insert traffic.

Layout (dependencies point inward):

* :mod:`keystrap.crypto`   -- AES-128-only primitives (block, CCM_8, CMAC-KDF, key wrap)
* :mod:`keystrap.wire`     -- byte-exact flight codecs
* :mod:`keystrap.protocol` -- sans-I/O state machines for node, controller and server
* :mod:`keystrap.cli`      -- command-line entry points
"""

__version__ = "0.1.0"
