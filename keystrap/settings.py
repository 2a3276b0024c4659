"""The node's settings after bootstrapping: what "a controller or an administrator
configures ... by using the newly configured key" (paper, section 1).

Network settings (domain name, default gateway, proxy) and a fixed schema of
application settings. Sans-I/O: an update arrives as JSON bytes and is either
applied whole or refused whole with a reason, so a bad update never leaves the
node half-configured.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

MAX_UPDATE_BYTES = 512
NETWORK_KEYS = ("domain", "gateway", "proxy")
PROXY_SCHEMES = ("coap", "coaps", "coap+tcp", "coaps+tcp", "http", "https")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class SettingsError(Exception):
    """An update was refused; ``str(exc)`` says why, for a CoAP 4.00 diagnostic."""


def _domain(value: str) -> str:
    name = value.lower().rstrip(".")
    if not name or len(name) > 253 or not all(_LABEL.match(p) for p in name.split(".")):
        raise SettingsError(f"domain {value!r} is not a valid DNS name")
    return name


def _address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise SettingsError(f"gateway {value!r} is not an IPv4 or IPv6 address") from None


def _proxy(value: str) -> str:
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise SettingsError(f"proxy {value!r} is not a valid URI") from None
    if parts.scheme not in PROXY_SCHEMES or not parts.hostname:
        raise SettingsError(f"proxy {value!r} must be a URI such as coap://host:5683")
    if port == 0 or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise SettingsError(f"proxy {value!r} must be scheme://host[:port] and nothing more")
    if not _is_address(parts.hostname):
        _domain(parts.hostname)
    return value


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _bounded_int(low: int, high: int) -> Callable[[str, object], int]:
    def check(key: str, value: object) -> int:
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = int(value, 10)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise SettingsError(f"{key} must be an integer from {low} to {high}, got {value!r}")
        return value

    return check


def _text(limit: int) -> Callable[[str, object], str]:
    def check(key: str, value: object) -> str:
        if not isinstance(value, str) or not value.isprintable():
            raise SettingsError(f"{key} must be printable text")
        if len(value.encode()) > limit:
            raise SettingsError(f"{key} is {len(value.encode())} bytes; at most {limit}")
        return value

    return check


def _choice(*options: str) -> Callable[[str, object], str]:
    def check(key: str, value: object) -> str:
        if value not in options:
            raise SettingsError(f"{key} must be one of {', '.join(options)}, got {value!r}")
        return str(value)

    return check


#: The application settings a node understands; anything else is refused.
APPLICATION_SCHEMA: Mapping[str, Callable[[str, object], object]] = {
    "name": _text(32),
    "location": _text(64),
    "sample_interval": _bounded_int(1, 86_400),
    "report_interval": _bounded_int(1, 86_400),
    "units": _choice("si", "imperial"),
    "log_level": _choice("error", "warning", "info", "debug"),
}

_NETWORK_CHECKS: Mapping[str, Callable[[str], str]] = {
    "domain": _domain,
    "gateway": _address,
    "proxy": _proxy,
}


@dataclass(frozen=True)
class NodeSettings:
    network: Mapping[str, str] = field(default_factory=dict)
    application: Mapping[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"network": dict(self.network), "application": dict(self.application)}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, doc: object) -> NodeSettings:
        """Rebuild stored settings, re-validating them (a stored file can be edited)."""
        return apply_update(cls(), doc)


def parse_update(payload: bytes) -> object:
    if len(payload) > MAX_UPDATE_BYTES:
        raise SettingsError(f"update is {len(payload)} bytes; at most {MAX_UPDATE_BYTES}")
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SettingsError(f"update is not JSON: {exc}") from None


def apply_update(current: NodeSettings, update: object) -> NodeSettings:
    """Merge ``{"network": {...}, "application": {...}}`` into ``current``.

    A value of ``null`` removes a setting. Every entry is checked before
    anything changes; the first bad one refuses the whole update.
    """
    if not isinstance(update, dict) or set(update) - {"network", "application"}:
        raise SettingsError('update must be an object with "network" and/or "application"')
    network: dict[str, object] = dict(current.network)
    application: dict[str, object] = dict(current.application)
    for section, target in (("network", network), ("application", application)):
        entries = update.get(section, {})
        if not isinstance(entries, dict):
            raise SettingsError(f'"{section}" must be an object')
        for key, value in entries.items():
            if value is None:
                # A removal names a setting too: a misspelt one ("--unset
                # report_intervall") was a silent no-op the operator took for done.
                _known(section, key)
                target.pop(key, None)
            elif section == "network":
                target[key] = _network_value(key, value)
            else:
                target[key] = _application_value(key, value)
    return NodeSettings({k: str(v) for k, v in network.items()}, application)


def _known(section: str, key: str) -> None:
    """Refuse a key the node has no such setting for."""
    if section == "network" and key not in _NETWORK_CHECKS:
        raise SettingsError(f"unknown network setting {key!r} (known: {', '.join(NETWORK_KEYS)})")
    if section == "application" and key not in APPLICATION_SCHEMA:
        known = ", ".join(sorted(APPLICATION_SCHEMA))
        raise SettingsError(f"unknown application setting {key!r} (known: {known})")


def _network_value(key: str, value: object) -> str:
    _known("network", key)
    if not isinstance(value, str) or len(value) > 255:
        raise SettingsError(f"{key} must be text of at most 255 characters")
    return _NETWORK_CHECKS[key](value)


def _application_value(key: str, value: object) -> object:
    _known("application", key)
    return APPLICATION_SCHEMA[key](key, value)
