"""keystrap's lab: everything that runs keystrap rather than being it.

Installed apart from the product (the ``keystrap-lab`` distribution in
``lab/``), so an operator's ``pip install keystrap`` never carries it:

* :mod:`keystrap_lab.simulation` -- the three state machines in one process, on a virtual clock
* :mod:`keystrap_lab.vectors`    -- the deterministic bootstrap behind tests/vectors/
* :mod:`keystrap_lab.site`, :mod:`keystrap_lab.processes` -- a whole deployment in one
  directory, its services as real processes (tests, benchmarks, the demo)
* :mod:`keystrap_lab.relay`      -- a UDP relay on the in-band path, for recording and faults
* :mod:`keystrap_lab.independent` -- independent DTLS peers (libcoap, OpenSSL)
* :mod:`keystrap_lab.link`       -- IEEE 802.15.4 / 6LoWPAN link emulation
* :mod:`keystrap_lab.impair`     -- a camera's, microphone's or sensor's imperfections
* :mod:`keystrap_lab.attack`     -- the attack harness, the paper's baselines, network faults
* :mod:`keystrap_lab.demo`, :mod:`keystrap_lab.live_demo` -- what ``keystrap demo`` shows
"""
