"""Text that reaches a terminal from elsewhere (a store's rows, a name someone
typed): a control character in it could end a listing's line early and fake the
rows after it, or recolour the terminal. Names are refused with one when they
are entered (:func:`printable`); whatever a store holds is shown escaped
(:func:`escaped`), since a store can be edited by hand."""

from __future__ import annotations

from keystrap.ids import eui64


def escaped(text: str) -> str:
    """``text`` with each character that is not printable shown as its Python
    escape (a newline as ``\\n``, ESC as ``\\x1b``)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def printable(field: str, text: str) -> str:
    """``text`` as entered for ``field``, or a ValueError naming the field if a
    character of it is not printable."""
    if not text.isprintable():
        raise ValueError(f"{field} must be printable text, got '{escaped(text)}'")
    return text


def shown_id(identifier: object) -> str:
    """An ID column's value as a listing shows it: its EUI-64, or, for a value a
    hand-edited row gave another type (SQLite keeps any type in any column),
    that value escaped -- its EUI-64 had ended the listing in one line,
    "Unknown format code 'x'"."""
    if isinstance(identifier, bytes | bytearray | memoryview):
        return eui64(bytes(identifier))
    return escaped(repr(identifier))
