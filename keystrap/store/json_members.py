"""The members of a JSON object keystrap reads from a file (a bundle, a node file),
each checked for its type and range as it is taken.

``json.loads`` returns whatever the file holds: ``"false"`` where a boolean
belongs (which ``bool()`` takes for true), ``-1`` as a port, ``"bogus"`` as a
key mode. Used unchecked, such a value makes a wrong file or fails far from the
file that held it. Every check here raises :class:`ValueError` with the
member's path (``controller.port``, ``nodes[2].id``) and what it must be; it
never shows the value, since some members are keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keystrap.ids import parse_eui64


class Members:
    """One JSON object. A member that is absent or ``null`` takes the default a
    method is given; without one, it is an error."""

    def __init__(self, doc: object, where: str = "") -> None:
        """``where`` is the object's own path, ending in ``.`` (empty at the top)."""
        if not isinstance(doc, dict):
            raise ValueError(f"{where.rstrip('.') or 'the document'} must be an object")
        self._doc: dict[str, Any] = doc
        self._where = where

    def has(self, name: str) -> bool:
        return self._doc.get(name) is not None

    def child(self, name: str, *, optional: bool = False) -> Members:
        """A member that is an object; an absent optional one reads as ``{}``."""
        return Members(self._get(name, {} if optional else None), f"{self._where}{name}.")

    def array(self, name: str) -> list[object]:
        value = self._get(name)
        if not isinstance(value, list):
            raise ValueError(f"{self._where}{name} must be an array")
        return value

    def raw(self, name: str, default: object) -> object:
        """The member unchecked, for a decoder of its own (such as the node's settings)."""
        value: object = self._doc.get(name)
        return default if value is None else value

    def text(self, name: str, default: str | None = None) -> str:
        value = self._get(name, default)
        if not isinstance(value, str) or not value:
            raise ValueError(f"{self._where}{name} must be non-empty text")
        return value

    def choice(self, name: str, options: Sequence[str], default: str | None = None) -> str:
        value = self._get(name, default)
        if value not in options:
            raise ValueError(f"{self._where}{name} must be one of {', '.join(options)}")
        return str(value)

    def integer(self, name: str, low: int, high: int, default: int | None = None) -> int:
        value = self._get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError(f"{self._where}{name} must be an integer from {low} to {high}")
        return value

    def optional_integer(self, name: str, low: int, high: int) -> int | None:
        return self.integer(name, low, high) if self.has(name) else None

    def boolean(self, name: str, default: bool | None = None) -> bool:
        value = self._get(name, default)
        if not isinstance(value, bool):
            raise ValueError(f"{self._where}{name} must be true or false")
        return value

    def hex(self, name: str, size: int) -> bytes:
        """``size`` bytes written as hex digits (either case)."""
        value = self._get(name)
        try:
            data = bytes.fromhex(value) if isinstance(value, str) else b""
        except ValueError:
            data = b""
        if len(data) != size:
            raise ValueError(f"{self._where}{name} must be {2 * size} hex digits")
        return data

    def optional_hex(self, name: str, size: int) -> bytes | None:
        return self.hex(name, size) if self.has(name) else None

    def eui64(self, name: str) -> bytes:
        """An EUI-64 written for people (``02:00:00:00:00:00:00:01``)."""
        value = self._get(name)
        if not isinstance(value, str):
            raise ValueError(f"{self._where}{name} must be an EUI-64 as text")
        try:
            return parse_eui64(value)
        except ValueError as exc:
            raise ValueError(f"{self._where}{name}: {exc}") from None

    def _get(self, name: str, default: object = None) -> Any:
        """The member, or ``default`` if it is absent or ``null``; without one, an error."""
        value = self._doc.get(name)
        if value is None:
            value = default
        if value is None:
            raise ValueError(f"{self._where}{name} is missing")
        return value
