"""What an optional part of keystrap needs, and the one-line error when it is absent.

``pip install keystrap`` brings what the protocol, CoAP, DTLS and the stores
need. Each out-of-band medium's libraries come with an extra of its own
(``keystrap[qr]``, ``[audio]``, ``[light]``, ``[nfc]``; ``[all]`` for every
one), and the demo and attack harness with the second distribution
``keystrap-lab`` (``lab/`` in the repository): a server never loads NumPy,
OpenCV or ggwave. Asking for what is not installed is a :class:`MissingExtra`
naming the package to install, before anything has started.
"""

from __future__ import annotations

import importlib

# The modules each medium's code imports, by the extra that installs them.
MEDIA_EXTRAS: dict[str, tuple[str, ...]] = {
    "qr": ("numpy", "segno", "cv2"),
    "audio": ("numpy", "scipy", "ggwave"),
    "light": ("numpy",),
    "nfc": ("ndef",),
    "raw": (),
}
LAB = "keystrap_lab"
DEVICES = "devices"
"""The extra for physical devices: a sound card's and an NFC reader's libraries."""
CONSOLE = "console"


def pip_install(extra: str) -> str:
    """How to install ``extra``: every message about a missing optional library
    names a keystrap extra, so that its version bounds come with it."""
    return f"pip install 'keystrap[{extra}]'"


class MissingExtra(Exception):
    """An optional part was asked for whose libraries are not installed."""


def _missing(modules: tuple[str, ...]) -> list[str]:
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def require_medium(name: str) -> None:
    """Raise :class:`MissingExtra` unless the medium ``name`` can be used here."""
    absent = _missing(MEDIA_EXTRAS.get(name, ()))
    if absent:
        raise MissingExtra(f"the {name} medium needs {', '.join(absent)}: {pip_install(name)}")


def require_lab(command: str) -> None:
    """Raise :class:`MissingExtra` unless the lab package is installed."""
    if _missing((LAB,)):
        raise MissingExtra(
            f"keystrap {command} needs the lab package (keystrap-lab): "
            "pip install ./lab in keystrap's repository, as make setup does"
        )
