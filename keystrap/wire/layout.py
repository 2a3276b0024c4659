"""What every flight class shares: its layout, declared once, and the CCM sealing.

A flight class names its type and profile and declares two :class:`Layout`\\ s:
``CLEAR``, the header and the fields sent in the clear, and ``SEALED``, the
plaintext under the tag. Encoding packs them, decoding checks the frame and
unpacks them at the same offsets, so no byte position is written twice.

The associated data of every sealed flight is ``hdr || ID_c || TID ||
context``: ``context`` holds what the receiver already knows (``ID_i``, and in
the compact profile ``RN_i``, ``RN_c`` or ``TS``), authenticated without being
sent.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, ClassVar

from keystrap.crypto import TAG_SIZE, InvalidTag, ccm_open, ccm_seal
from keystrap.wire.errors import AuthenticationError
from keystrap.wire.header import VERSION, FlightType, check_frame, header_byte
from keystrap.wire.nonce import make_nonce


class Layout:
    """A big-endian :class:`struct.Struct` whose fields have names.

    Packing checks every value first: ``struct`` pads a short bytes field with
    zeros without a word, and a wrong-sized ID must never go out as another ID.
    """

    def __init__(self, *fields: tuple[str, str]) -> None:
        self.struct = struct.Struct(">" + "".join(code for _, code in fields))
        self.size = self.struct.size
        self.unpack: Callable[..., tuple[Any, ...]] = self.struct.unpack_from
        """``unpack(data, offset=0)``: the fields at ``offset`` (``struct`` checks the
        length); the struct's own method, as a flight is read several times per
        request."""
        self._names = tuple(name for name, _ in fields)
        # (position, name, size) of each bytes field; struct range-checks the integers
        self._strings = tuple(
            (i, name, int(code[:-1])) for i, (name, code) in enumerate(fields) if code[-1] == "s"
        )

    def pack(self, *values: bytes | int) -> bytes:
        for i, name, size in self._strings:
            value = values[i]
            if not isinstance(value, bytes) or len(value) != size:
                raise ValueError(f"{name} must be {size} bytes")
        try:
            return self.struct.pack(*values)
        except struct.error as exc:
            raise ValueError(f"{', '.join(self._names)}: {exc}") from None


HDR = ("hdr", "B")
ID_C = ("ID_c", "8s")
ID_I = ("ID_i", "8s")
TID_FIELD = ("TID", "I")
NOTHING = Layout()


class Flight:
    """Base of every flight class: its type, profile, layouts and size.

    Authenticated flights are built with ``seal(key, ...)`` and read with the
    classmethod ``open(data, key, ...)``; unauthenticated ones (1, 12) with
    ``encode()`` and ``decode(data)``. Readers reject anything malformed with
    :class:`~keystrap.wire.errors.DecodeError`.
    """

    TYPE: ClassVar[FlightType]
    PROFILE: ClassVar[int] = VERSION
    CLEAR: ClassVar[Layout]
    SEALED: ClassVar[Layout] = NOTHING
    SIZE: ClassVar[int]

    _header: ClassVar[bytes]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "TYPE" in vars(cls) or "PROFILE" in vars(cls):  # a flight, not a family of them
            cls._header = header_byte(cls.TYPE, cls.PROFILE)

    @classmethod
    def header(cls) -> bytes:
        return cls._header

    @classmethod
    def matches(cls, data: bytes) -> bool:
        """Whether ``data`` is framed as this flight (header and size), without decoding."""
        return len(data) == cls.SIZE and data[:1] == cls._header

    @classmethod
    def clear_fields(cls, data: bytes) -> tuple[Any, ...]:
        """The fields after the header, once type, profile and exact size are checked."""
        if len(data) != cls.SIZE or data[:1] != cls._header:  # what matches() checks
            check_frame(data, cls.TYPE, cls.SIZE, cls.PROFILE)  # raises, saying what is wrong
        return cls.CLEAR.unpack(data)[1:]

    @classmethod
    def _seal(
        cls,
        key: bytes,
        controller_id: bytes,
        tid: int,
        clear: tuple[bytes | int, ...],
        plain: tuple[bytes | int, ...],
        context: bytes = b"",
    ) -> bytes:
        nonce = make_nonce(cls.TYPE, controller_id, tid)
        aad = cls._header + nonce[1:] + context  # the nonce holds ID_c || TID
        sealed = ccm_seal(key, nonce, cls.SEALED.pack(*plain), aad)
        return cls.CLEAR.pack(cls._header[0], *clear) + sealed

    @classmethod
    def _open(
        cls, data: bytes, key: bytes, controller_id: bytes, tid: int, context: bytes = b""
    ) -> tuple[Any, ...]:
        """The sealed fields; the caller has checked the frame (:meth:`clear_fields`)."""
        nonce = make_nonce(cls.TYPE, controller_id, tid)
        aad = cls._header + nonce[1:] + context
        try:
            plaintext = ccm_open(key, nonce, data[cls.CLEAR.size :], aad)
        except InvalidTag:
            raise AuthenticationError(f"flight {int(cls.TYPE)} failed authentication") from None
        return cls.SEALED.unpack(plaintext)


def sealed_size(clear: Layout, sealed: Layout) -> int:
    return clear.size + sealed.size + TAG_SIZE
