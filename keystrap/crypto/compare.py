"""Constant-time comparison for secrets (random challenges, tags)."""

import hmac


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """Compare without a data-dependent early exit, so timing reveals nothing."""
    return hmac.compare_digest(a, b)
