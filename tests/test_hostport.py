"""``[HOST:]PORT`` as typed: what is read, and what is refused rather than guessed."""

from __future__ import annotations

import pytest

from keystrap.hostport import format_host_port, parse_host_port


@pytest.mark.parametrize(
    ("text", "read"),
    [
        ("9100", ("127.0.0.1", 9100)),
        (":9100", ("127.0.0.1", 9100)),
        ("0.0.0.0:9100", ("0.0.0.0", 9100)),
        ("localhost:9100", ("localhost", 9100)),
        ("[::1]:9100", ("::1", 9100)),
    ],
)
def test_what_is_read(text: str, read: tuple[str, int]) -> None:
    assert parse_host_port(text) == read
    assert parse_host_port(format_host_port(*read)) == read


@pytest.mark.parametrize(
    "text",
    ["[::1:47015", "[:47091", "[]:47091", "::1:9100", "[a]b:9100", "host:1", "host:x", "²", "٩١٠٠"],
)
def test_a_malformed_address_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"need \[HOST:\]PORT"):
        parse_host_port(text)
