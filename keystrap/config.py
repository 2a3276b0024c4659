"""Service configuration: one TOML file per service, every option defaulted.

The defaults make all services work together on one machine from the current
directory (``keystrap-data/``). Relative paths in a file are taken relative to
that file. Unknown options are errors, so a typo never silently falls back to a
default.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Collection
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from keystrap.hostport import parse_host_port
from keystrap.ids import parse_eui64
from keystrap.oob.channel import OobError, parse_endpoint
from keystrap.oob.medium import MEDIA
from keystrap.store.bounded_read import InputRefused, read_bounded
from keystrap.store.postgres_url import POSTGRES as POSTGRES  # where it was defined before
from keystrap.store.postgres_url import check_database, looks_like_url, redacted

DATA = Path("keystrap-data")
DEFAULT_CONTROLLER_ID = "02:00:00:00:00:00:00:c0"


class ConfigError(Exception):
    pass


NID_IS_REGISTERED = (
    "a controller listens on no network address (nodes reach it out of band, at `oob`); "
    "the address the nodes are given for it (NID) is set by "
    "`keystrap admin controller add --host --port`"
)
"""Why a controller takes no ``host`` or ``port``: they were once listed, and
said to be announced to the nodes, but the nodes learn the NID from their
bundle, before the controller ever runs. Named when one is given, so that an
older file or command line is refused with the reason, not merely "unknown"."""


@dataclass(frozen=True)
class ServerConfig:
    """[server] -- the authentication server (SBS)."""

    host: str = "127.0.0.1"
    port: int = 5683
    database: Path | str = DATA / "sbs.sqlite"  # a str is a postgresql:// URL
    master_key: Path = DATA / "sbs-master.key"
    window: int = 120
    max_pending: int = 8
    profile: str = "paper"
    compact: str = "accept"
    log_level: str = "info"
    metrics: str = ""


@dataclass(frozen=True)
class ControllerConfig:
    """[controller] -- the controller (SBR)."""

    id: str = DEFAULT_CONTROLLER_ID
    server: str = "coap://127.0.0.1:5683"
    key_file: Path = DATA / "controller-sk.key"
    state: Path = DATA / "sbr.sqlite"
    master_key: Path = DATA / "sbr-master.key"
    oob: str = "unix:" + str(DATA / "oob.sock")
    channel_from_node: str = "qr"
    channel_to_node: str = "qr"
    capture_dir: str = ""
    coap_endpoints: int = 4
    window: int = 120
    revocation_poll: int = 5
    keep_finished: int = 86_400
    dtls_timeout: int = 10
    log_level: str = "info"
    metrics: str = ""


HELP: dict[str, str] = {
    "host": "address to bind",
    "port": "UDP port",
    "database": "key repository: a SQLite file, or postgresql://... shared by several servers",
    "master_key": "0600 file with the master key wrapping every stored key (made on first start)",
    "window": "seconds a flight-2 timestamp may be off (server) / a transaction waits for flight 3",
    "max_pending": "unfinished bootstraps kept per node before new ones are refused",
    "profile": "paper (flight 3 gives the controller IK) or hardened (flight 8: PSK only)",
    "compact": "accept or refuse orders of the compact wire profile (version 2); "
    "a hardened server always refuses it",
    "log_level": "debug, info, warning or error (keys are never logged at any level)",
    "id": "this controller's EUI-64, as registered with `keystrap admin controller add`",
    "server": "CoAP URI of the authentication server; several (a list, or comma-separated) "
    "fail over in turn",
    "key_file": "0600 file holding SK_cs, written by `keystrap admin controller add`",
    "state": "SQLite file with the TID sequence and open transactions",
    "oob": "out-of-band channel to nodes, e.g. unix:keystrap-data/oob.sock",
    "channel_from_node": "medium of flights 1 and 5: qr, nfc, audio, light or raw",
    "channel_to_node": "medium of flight 4: qr, nfc, audio, light or raw",
    "capture_dir": "if set, every out-of-band signal is also written there (PNG, WAV...)",
    "coap_endpoints": "CoAP client endpoints towards the server (NSTART=1 applies to each)",
    "revocation_poll": "seconds between asking the server which nodes were revoked",
    "keep_finished": "seconds a finished bootstrap is kept (to answer a repeated flight 5)",
    "dtls_timeout": "seconds `controller configure` waits for a node's DTLS answer",
    "metrics": "[HOST:]PORT for Prometheus' GET /metrics (HOST defaults to 127.0.0.1; empty: off)",
}

C = TypeVar("C", ServerConfig, ControllerConfig)

DAY = 86_400
MAX_CONFIG = 1024 * 1024  # bytes of a --config file, which holds a few hundred
RANGES: dict[str, tuple[int, int]] = {
    "port": (1, 65535),
    "window": (1, DAY),
    "max_pending": (1, 10_000),
    "coap_endpoints": (1, 64),
    "revocation_poll": (1, DAY),
    "keep_finished": (0, 366 * DAY),
    "dtls_timeout": (1, 3600),
}
CHOICES: dict[str, tuple[str, ...]] = {
    "profile": ("paper", "hardened"),
    "compact": ("accept", "refuse"),
    "log_level": ("debug", "info", "warning", "error"),
    "channel_from_node": MEDIA,
    "channel_to_node": MEDIA,
}


def load_config(cls: type[C], path: Path | None, overrides: dict[str, Any]) -> C:
    section = "server" if cls is ServerConfig else "controller"
    values: dict[str, Any] = {}
    base = Path(".")
    if path is not None:
        values = _read_table(path, section)
        base = Path(path).parent
    known = {f.name: f for f in fields(cls)}
    unknown = set(values) - set(known)
    retired = sorted(unknown & {"host", "port"}) if section == "controller" else []
    if retired:
        raise ConfigError(f"{path}: [controller] {retired[0]}: {NID_IS_REGISTERED}")
    if unknown:
        raise ConfigError(f"{path}: unknown option(s) {sorted(unknown)} in [{section}]")
    given = {k: v for k, v in overrides.items() if v is not None}  # flags the user typed
    values.update(given)
    converted: dict[str, Any] = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        if name == "database" and isinstance(value, str) and looks_like_url(value):
            converted[name] = value  # a PostgreSQL URL, or refused by _check
        elif isinstance(default, Path):
            if not isinstance(value, str | Path) or not str(value):
                raise ConfigError(f"[{section}] {name} must be a path, got {value!r}")
            p = Path(value)
            converted[name] = p if p.is_absolute() or name in given else base / p
        elif isinstance(default, int) and not isinstance(value, bool):
            if not isinstance(value, int):
                raise ConfigError(f"[{section}] {name} must be an integer, got {value!r}")
            converted[name] = value
        elif (
            name == "server" and isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            converted[name] = ",".join(value)  # several servers over one database
        elif not isinstance(value, str):
            raise ConfigError(f"[{section}] {name} must be a string, got {value!r}")
        else:
            converted[name] = value
    config = dataclasses.replace(cls(), **converted)
    for name in converted:
        _check(section, name, getattr(config, name))
    return config


def _read_table(path: Path, section: str) -> dict[str, Any]:
    """The ``[section]`` table of the TOML file ``path``, as written in it."""
    try:
        # utf-8-sig: a file saved with a byte-order mark (Windows editors) was
        # refused as "Invalid statement (at line 1, column 1)".
        text = read_bounded(Path(path), MAX_CONFIG, "config file").decode("utf-8-sig")
        doc = tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except InputRefused as exc:
        raise ConfigError(str(exc)) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    unknown_sections = set(doc) - {section}
    if unknown_sections:
        raise ConfigError(f"{path}: unknown section(s) {sorted(unknown_sections)}")
    table = doc.get(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{section}] must be a table")
    return dict(table)


def in_process_server(path: Path | None) -> ServerConfig:
    """The server's configuration for ``keystrap controller --with-server``, where
    the server runs in the controller's process: an option of ``path`` that means
    nothing there is refused, naming it, rather than ignored.

    ``host`` and ``port`` are where a separate server binds; this one binds
    nothing. With a PostgreSQL store ``port`` still names the server's local file
    (:func:`keystrap.store.open.local_state`), so it is taken there. The process
    logs at the controller's ``log_level``. The rest -- the store, the master key,
    the policy, and ``metrics``, the server's own exporter -- apply as they do
    to a separate server."""
    config = load_config(ServerConfig, path, {})
    if path is None:
        return config
    unused = [name for name in _read_table(path, "server") if name in unused_in_process(config)]
    if unused:
        raise ConfigError(
            f"{path}: [server] {', '.join(unused)}: no meaning with --with-server "
            "(the server binds no address in the controller's process, which logs at "
            "the controller's log_level); remove them from that file"
        )
    return config


def unused_in_process(config: ServerConfig) -> tuple[str, ...]:
    """The options of ``config`` that :func:`in_process_server` refuses."""
    port_names_a_file = isinstance(config.database, str)
    return ("host", "log_level") if port_names_a_file else ("host", "port", "log_level")


def _check(section: str, name: str, value: object) -> None:
    """One option's value against its range or choices, before any of it is used:
    a bad value ends the start, never a running service."""
    text = str(value)
    optional = name in ("capture_dir", "metrics")
    if isinstance(value, str | Path) and (not text.isprintable() or not (text or optional)):
        shown = redacted(text) if name == "database" else text
        raise ConfigError(f"[{section}] {name} must be printable text, got {shown!r}")
    if name in RANGES and isinstance(value, int):
        low, high = RANGES[name]
        if not low <= value <= high:
            raise ConfigError(f"[{section}] {name} must be from {low} to {high}, got {value}")
    if name in CHOICES and value not in CHOICES[name]:
        raise ConfigError(f"[{section}] {name} must be one of {', '.join(CHOICES[name])}")
    try:
        if name == "id":
            parse_eui64(text)
        elif name == "server":
            for uri in text.split(","):
                _check_coap_uri(uri.strip())
        elif name == "oob":
            parse_endpoint(text)
        elif name == "metrics" and text:
            parse_host_port(text)
        elif name == "database" and isinstance(value, str):
            check_database(text)
    except (ValueError, OobError) as exc:
        raise ConfigError(f"[{section}] {name}: {exc}") from None


def _check_coap_uri(uri: str) -> None:
    parts = urlsplit(uri)
    if parts.scheme != "coap" or not parts.hostname:
        raise ValueError(f"need coap://HOST[:PORT], got {uri!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"need coap://HOST[:PORT] without path or query, got {uri!r}")
    if parts.port is not None and parts.port == 0:
        raise ValueError(f"port must be from 1 to 65535, got {uri!r}")


def render_config(
    config: ServerConfig | ControllerConfig, full: bool = True, omit: Collection[str] = ()
) -> str:
    """The effective configuration as TOML, each option with its explanation;
    without ``full``, only the options that differ from their defaults; never
    those in ``omit`` (options that would be refused, :func:`unused_in_process`).

    A database URL's password is shown as ``***`` (:func:`redacted`): the output
    is read on screens and pasted into tickets, and docs/deployment.md promises
    the password is never shown. A configuration kept with its password must be
    written by hand (or the password kept in ~/.pgpass, where libpq finds it)."""
    section = "server" if isinstance(config, ServerConfig) else "controller"
    defaults = type(config)()
    lines = [f"[{section}]"]
    for f in fields(config):
        value = getattr(config, f.name)
        if (not full and value == getattr(defaults, f.name)) or f.name in omit:
            continue
        if f.name == "database" and isinstance(value, str):
            value = redacted(value)
        text = str(value) if isinstance(value, int) else json.dumps(str(value))
        lines.append(f"# {HELP.get(f.name, '')}")
        lines.append(f"{f.name} = {text}")
    return "\n".join(lines) + "\n"
