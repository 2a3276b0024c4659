"""Out-of-band channels that carry flights 1, 4 and 5 between node and controller.

A channel moves whole flights. The controller listens for sessions (one per node
in front of it); the node opens one. Until the physical media (QR code, NFC,
audio, light) arrive, :mod:`keystrap.oob.unix` provides a local channel.
"""

from keystrap.oob.channel import (
    OobClosed,
    OobError,
    OobLink,
    OobListener,
    parse_endpoint,
)

__all__ = ["OobClosed", "OobError", "OobLink", "OobListener", "parse_endpoint"]
