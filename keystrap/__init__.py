"""keystrap: secure bootstrapping for the Internet of small things.

Implements Namhi Kang's PSK reconfiguration scheme: a node imprinted with a
temporary initial key ``IK`` is re-keyed, through its controller (SBR) and the
authentication server (SBS), to ``PSK_i = AES_IK(RN_i XOR RN_c)`` so that the
installer who knew ``IK`` can no longer read, modify or insert traffic.

Layout (dependencies point inward; ``tests/test_boundaries.py`` checks the first three):

* :mod:`keystrap.crypto`   -- AES-128-only primitives (block, CCM_8, CMAC-KDF, key wrap)
* :mod:`keystrap.wire`     -- byte-exact flight codecs (crypto and the standard library only)
* :mod:`keystrap.nodecore` -- the node's bootstrap on one AES block function (imports
  nothing of keystrap: it runs unmodified on MicroPython)
* :mod:`keystrap.protocol` -- sans-I/O state machines for node, controller and server
* :mod:`keystrap.store`    -- key repository, controller store, node and key files
* :mod:`keystrap.coap`, :mod:`keystrap.oob` -- in-band (CoAP, DTLS) and out-of-band transports
* :mod:`keystrap.services` -- the processes: asyncio shells around the cores
* :mod:`keystrap.console`  -- the operator's web console
* :mod:`keystrap.cli`      -- the ``keystrap`` command, one module per subcommand

The media libraries are optional extras (:mod:`keystrap.extras`); the demo, the
attack harness and the other test tooling are the separate ``keystrap_lab``
package (``lab/`` in the repository), which an operator never installs.
"""

__version__ = "0.1.0"
