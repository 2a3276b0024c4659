"""Identifiers as people read and type them: EUI-64 with colons. Never used for keys."""


def eui64(identifier: bytes) -> str:
    return ":".join(f"{b:02x}" for b in identifier)


def parse_eui64(text: str) -> bytes:
    """Accept ``02:00:00:00:00:00:00:01``, ``02-00-...`` or 16 hex digits."""
    digits = text.replace(":", "").replace("-", "").strip()
    try:
        value = bytes.fromhex(digits)
    except ValueError:
        raise ValueError(f"not an EUI-64: {text!r}") from None
    if len(value) != 8:
        raise ValueError(f"not an EUI-64 (need 8 bytes): {text!r}")
    return value
