"""The one error type every decoder raises."""

from enum import Enum


class DecodeReason(Enum):
    TRUNCATED = "truncated"
    TOO_LONG = "too long"
    WRONG_VERSION = "wrong version"
    WRONG_TYPE = "wrong type"
    BAD_TAG = "bad tag"
    BAD_VALUE = "bad value"


class DecodeError(ValueError):
    """Malformed or unauthentic bytes. ``reason`` says which check failed.

    Callers catch this one type; nothing else escapes a decoder, so a fuzzer
    that sees any other exception has found a bug.
    """

    def __init__(self, reason: DecodeReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class AuthenticationError(DecodeError):
    """The CCM tag did not verify (wrong key, wrong context, or altered bytes)."""

    def __init__(self, detail: str) -> None:
        super().__init__(DecodeReason.BAD_TAG, detail)
