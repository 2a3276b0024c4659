"""Node settings: every update is validated whole, applied whole or refused whole."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json

import aiocoap
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keystrap.coap.node_server import ConfigResource
from keystrap.settings import (
    MAX_UPDATE_BYTES,
    NodeSettings,
    SettingsError,
    apply_update,
    parse_update,
)

GOOD = {
    "network": {
        "domain": "Plant-3.Example.org.",
        "gateway": "192.0.2.1",
        "proxy": "coap://[2001:db8::1]:5683",
    },
    "application": {"name": "boiler", "report_interval": "60", "units": "si"},
}


def test_a_valid_update_is_applied_and_normalised() -> None:
    settings = apply_update(NodeSettings(), GOOD)
    assert settings.network == {
        "domain": "plant-3.example.org",
        "gateway": "192.0.2.1",
        "proxy": "coap://[2001:db8::1]:5683",
    }
    assert settings.application == {"name": "boiler", "report_interval": 60, "units": "si"}


def test_updates_merge_and_null_removes() -> None:
    first = apply_update(NodeSettings(), GOOD)
    second = apply_update(first, {"network": {"proxy": None}, "application": {"units": "imperial"}})
    assert "proxy" not in second.network and second.network["gateway"] == "192.0.2.1"
    assert second.application["units"] == "imperial"
    assert first.application["units"] == "si"  # the old value object is untouched


@pytest.mark.parametrize(
    ("update", "reason"),
    [
        ({"network": {"gateway": "192.0.2.300"}}, "not an IPv4 or IPv6 address"),
        ({"network": {"gateway": "fe80::1::2"}}, "not an IPv4 or IPv6 address"),
        ({"network": {"domain": "-bad-.example"}}, "not a valid DNS name"),
        ({"network": {"domain": "a" * 64 + ".example"}}, "not a valid DNS name"),
        ({"network": {"proxy": "ftp://proxy.example"}}, "must be a URI"),
        ({"network": {"proxy": "coap://proxy.example:99999"}}, "not a valid URI"),
        ({"network": {"proxy": "coap://proxy.example/path"}}, "nothing more"),
        ({"network": {"mtu": "1280"}}, "unknown network setting 'mtu'"),
        ({"application": {"colour": "red"}}, "unknown application setting 'colour'"),
        ({"network": {"mtu": None}}, "unknown network setting 'mtu'"),  # removing one, too
        ({"application": {"colour": None}}, "unknown application setting 'colour'"),
        ({"application": {"name": "x" * 33}}, "at most 32"),
        ({"application": {"location": "y" * 65}}, "at most 64"),
        ({"application": {"report_interval": "0"}}, "from 1 to 86400"),
        ({"application": {"report_interval": True}}, "from 1 to 86400"),
        ({"application": {"units": "cubits"}}, "one of si, imperial"),
        ({"application": {"name": "bell\x07"}}, "printable"),
        ({"firmware": {}}, "must be an object with"),
        ([1, 2], "must be an object with"),
        ({"network": "all"}, '"network" must be an object'),
    ],
)
def test_bad_updates_are_refused_with_a_reason(update: object, reason: str) -> None:
    with pytest.raises(SettingsError, match=reason):
        apply_update(NodeSettings(), update)


def test_a_refused_update_changes_nothing_even_after_good_entries() -> None:
    current = apply_update(NodeSettings(), GOOD)
    update = {"network": {"domain": "new.example"}, "application": {"colour": "red"}}
    with pytest.raises(SettingsError):
        apply_update(current, update)
    assert current.network["domain"] == "plant-3.example.org"


def test_payload_limits_and_encoding() -> None:
    with pytest.raises(SettingsError, match=f"at most {MAX_UPDATE_BYTES}"):
        parse_update(b"{" + b" " * MAX_UPDATE_BYTES + b"}")
    with pytest.raises(SettingsError, match="not JSON"):
        parse_update(b"\xff\xfe")
    with pytest.raises(SettingsError, match="not JSON"):
        parse_update(b'{"network":')


def test_stored_settings_round_trip() -> None:
    settings = apply_update(NodeSettings(), GOOD)
    assert NodeSettings.from_dict(json.loads(settings.to_json())) == settings


@given(st.binary(max_size=600))
def test_parse_and_apply_never_raise_anything_else(data: bytes) -> None:
    with contextlib.suppress(SettingsError):
        apply_update(NodeSettings(), parse_update(data))


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=40),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_any_json_value_is_applied_or_refused_cleanly(doc: object) -> None:
    with contextlib.suppress(SettingsError):
        apply_update(NodeSettings(), doc)


@pytest.mark.parametrize("text", ["²", "1e3", " 60 ", "0x10", "-5"])
def test_integer_settings_from_text(text: str) -> None:
    try:
        settings = apply_update(NodeSettings(), {"application": {"sample_interval": text}})
    except SettingsError as exc:
        assert "from 1 to 86400" in str(exc)
    else:
        assert settings.application["sample_interval"] == 60


def test_an_update_the_node_cannot_save_is_refused_and_changes_nothing() -> None:
    """The node persists an update before applying it; when its file cannot be
    written, aiocoap got the exception (a traceback in the node's log, a bare 5.00
    to the controller). Now it is a 5.00 saying nothing changed."""

    def save(settings: NodeSettings) -> None:
        raise OSError(errno.EROFS, "Read-only file system", "node.json")

    current = NodeSettings(application={"name": "boiler"})
    resource = ConfigResource(current, save)
    request = aiocoap.Message(code=aiocoap.POST, payload=b'{"application":{"name":"pump"}}')
    answer = asyncio.run(resource.render_post(request))
    assert answer.code == aiocoap.INTERNAL_SERVER_ERROR
    assert answer.payload == b"settings not saved; nothing changed"
    assert resource.settings == current
