"""Out-of-band channels that carry flights 1, 4 and 5 between node and controller.

A channel moves whole flights. The controller listens for sessions (one per node
in front of it); the node opens one; :mod:`keystrap.oob.unix` carries them
between local processes. On a channel, each flight travels as a medium's signal
(:mod:`keystrap.oob.medium`: QR code, NFC, audio, light, or raw frames); each
medium's libraries are an optional extra (:mod:`keystrap.extras`).
"""

from keystrap.oob.channel import (
    OobClosed,
    OobError,
    OobLink,
    OobListener,
    parse_endpoint,
)

__all__ = ["OobClosed", "OobError", "OobLink", "OobListener", "parse_endpoint"]
