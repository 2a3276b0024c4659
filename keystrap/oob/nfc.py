"""NFC: the frame as one NDEF record of NFC Forum external type
``urn:nfc:ext:keystrap.org:flight`` (ndeflib), in a file, a pipe, or on a tag
through nfcpy when a reader is attached."""

from __future__ import annotations

import struct
from typing import Any

import ndef

from keystrap.extras import DEVICES, pip_install
from keystrap.oob.frame import OobDecodeError

RECORD_TYPE = "urn:nfc:ext:keystrap.org:flight"


class NfcMedium:
    name = "nfc"
    suffix = ".ndef"

    def modulate(self, frame: bytes) -> bytes:
        return b"".join(ndef.message_encoder([ndef.Record(RECORD_TYPE, "", frame)]))

    def capture(self, emitted: bytes) -> bytes:
        return emitted

    def demodulate(self, captured: bytes) -> bytes:
        if not captured:
            raise OobDecodeError(self.name, "empty NDEF message")
        try:
            records = list(ndef.message_decoder(captured, errors="strict"))
        except (ndef.DecodeError, ValueError, IndexError, KeyError, struct.error) as exc:
            # ndeflib lets some malformations escape as other errors (a non-ASCII
            # record type raises UnicodeDecodeError): all of them are bad input.
            raise OobDecodeError(self.name, f"malformed NDEF message: {exc}") from None
        ours = [r for r in records if r.type == RECORD_TYPE]
        if not ours:
            kinds = ", ".join(sorted({r.type or "empty" for r in records})) or "none"
            raise OobDecodeError(self.name, f"no keystrap record (found: {kinds})")
        if len(ours) > 1:
            raise OobDecodeError(self.name, "more than one keystrap record")
        return bytes(ours[0].data)

    def write_tag(self, frame: bytes, device: str = "usb") -> None:
        """Write to a tag held to an NFC reader (nfcpy)."""
        tag = _connect(device, self.name)
        if tag.ndef is None or not tag.ndef.is_writeable:
            raise OobDecodeError(self.name, "the tag is not NDEF-writable")
        tag.ndef.records = [ndef.Record(RECORD_TYPE, "", frame)]

    def read_tag(self, device: str = "usb") -> bytes:
        tag = _connect(device, self.name)
        if tag.ndef is None:
            raise OobDecodeError(self.name, "the tag holds no NDEF data")
        return self.demodulate(tag.ndef.octets)


def _connect(device: str, channel: str) -> Any:
    try:
        import nfc  # nfcpy, optional: only for a physical reader
    except ImportError:
        raise OobDecodeError(channel, f"nfcpy is not installed: {pip_install(DEVICES)}") from None
    try:
        clf = nfc.ContactlessFrontend(device)
    except OSError as exc:
        raise OobDecodeError(channel, f"no NFC reader at {device!r}: {exc}") from None
    try:
        tag = clf.connect(rdwr={"on-connect": lambda tag: False})
    finally:
        clf.close()
    if tag is None or tag is False:
        raise OobDecodeError(channel, "no tag presented to the reader")
    return tag
