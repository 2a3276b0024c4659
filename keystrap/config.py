"""Service configuration: one TOML file per service, every option defaulted.

The defaults make all services work together on one machine from the current
directory (``keystrap-data/``). Relative paths in a file are taken relative to
that file. Unknown options are errors, so a typo never silently falls back to a
default.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

DATA = Path("keystrap-data")
DEFAULT_CONTROLLER_ID = "02:00:00:00:00:00:00:c0"


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class ServerConfig:
    """[server] -- the authentication server (SBS)."""

    host: str = "127.0.0.1"
    port: int = 5683
    database: Path = DATA / "sbs.sqlite"
    master_key: Path = DATA / "sbs-master.key"
    window: int = 120
    max_pending: int = 8
    profile: str = "paper"
    log_level: str = "info"
    metrics: str = ""


@dataclass(frozen=True)
class ControllerConfig:
    """[controller] -- the controller (SBR)."""

    id: str = DEFAULT_CONTROLLER_ID
    host: str = "127.0.0.1"
    port: int = 5684
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
    "host": "address to bind (server) or to announce to nodes as NID (controller)",
    "port": "UDP port",
    "database": "SQLite key repository",
    "master_key": "0600 file with the master key wrapping every stored key (made on first start)",
    "window": "seconds a flight-2 timestamp may be off (server) / a transaction waits for flight 3",
    "max_pending": "unfinished bootstraps kept per node before new ones are refused",
    "profile": "paper (flight 3 gives the controller IK) or hardened (flight 8: PSK only)",
    "log_level": "debug, info, warning or error (keys are never logged at any level)",
    "id": "this controller's EUI-64, as registered with `keystrap admin controller add`",
    "server": "CoAP URI of the authentication server",
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


def load_config(cls: type[C], path: Path | None, overrides: dict[str, Any]) -> C:
    section = "server" if cls is ServerConfig else "controller"
    values: dict[str, Any] = {}
    base = Path(".")
    if path is not None:
        try:
            doc = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        unknown_sections = set(doc) - {section}
        if unknown_sections:
            raise ConfigError(f"{path}: unknown section(s) {sorted(unknown_sections)}")
        table = doc.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
        values = dict(table)
        base = Path(path).parent
    known = {f.name: f for f in fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise ConfigError(f"{path}: unknown option(s) {sorted(unknown)} in [{section}]")
    given = {k: v for k, v in overrides.items() if v is not None}  # flags the user typed
    values.update(given)
    if values.get("profile", "paper") not in ("paper", "hardened"):
        raise ConfigError(f'[{section}] profile must be "paper" or "hardened"')
    converted: dict[str, Any] = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        if isinstance(default, Path):
            if not isinstance(value, str | Path):
                raise ConfigError(f"[{section}] {name} must be a path, got {value!r}")
            p = Path(value)
            converted[name] = p if p.is_absolute() or name in given else base / p
        elif isinstance(default, int) and not isinstance(value, bool):
            if not isinstance(value, int):
                raise ConfigError(f"[{section}] {name} must be an integer, got {value!r}")
            converted[name] = value
        elif not isinstance(value, str):
            raise ConfigError(f"[{section}] {name} must be a string, got {value!r}")
        else:
            converted[name] = value
    return dataclasses.replace(cls(), **converted)


def render_config(config: ServerConfig | ControllerConfig) -> str:
    """The effective configuration as TOML, each option with its explanation."""
    section = "server" if isinstance(config, ServerConfig) else "controller"
    lines = [f"[{section}]"]
    for f in fields(config):
        value = getattr(config, f.name)
        text = str(value) if isinstance(value, int) else f'"{value}"'
        lines.append(f"# {HELP.get(f.name, '')}")
        lines.append(f"{f.name} = {text}")
    return "\n".join(lines) + "\n"
