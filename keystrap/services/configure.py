"""``keystrap controller configure|show|nodes``: the controller configures a
node "by using the newly configured key" (paper, section 1).

Runs beside the controller service, reading the same state file (SQLite in
WAL mode allows it): the node's current PSK comes from its last confirmed
bootstrap, and a node the server has revoked is refused here, before any
packet is sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from keystrap.coap.node_client import NodeClient
from keystrap.config import ControllerConfig
from keystrap.hostport import parse_host_port
from keystrap.ids import eui64
from keystrap.settings import NETWORK_KEYS
from keystrap.store.controller_store import ControllerStore
from keystrap.store.errors import StoreError
from keystrap.store.keyfile import read_key_file


@dataclass
class ConfigUpdate:
    """What ``configure`` was asked to change; empty means "just read it back"."""

    network: dict[str, str | None] = field(default_factory=dict)
    application: dict[str, str | None] = field(default_factory=dict)

    def set(self, key: str, value: str | None) -> None:
        """``None`` removes the setting. A setting both given a value and removed,
        or given two different values (``--domain`` and ``--set domain=``, or
        ``--set`` twice), is refused: the flags are not applied in the order
        typed, so whichever won would be a silent surprise."""
        target = self.network if key in NETWORK_KEYS else self.application
        if key in target and (target[key] is None) != (value is None):
            raise ValueError(f"{key!r} is both set and removed (--unset): give one or the other")
        if key in target and target[key] != value:
            raise ValueError(
                f"{key!r} is given two values ({target[key]!r} and {value!r}): give one"
            )
        target[key] = value

    def __bool__(self) -> bool:
        return bool(self.network or self.application)

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {}
        if self.network:
            doc["network"] = self.network
        if self.application:
            doc["application"] = self.application
        return json.dumps(doc, separators=(",", ":")).encode()


def parse_assignment(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set needs key=value, got {text!r}")
    return key.strip(), value


def _open_store(config: ControllerConfig) -> ControllerStore:
    if not config.state.exists():
        raise StoreError(f"controller state {config.state} does not exist (run the controller)")
    return ControllerStore(config.state, read_key_file(config.master_key))


async def configure_node(
    config: ControllerConfig, node_id: bytes, update: ConfigUpdate, address: str | None = None
) -> dict[str, Any]:
    """Push ``update`` (if any) to the node over CoAPS, then return its settings."""
    store = _open_store(config)
    try:
        node = store.get_node(node_id)
        if node is None:
            raise StoreError(f"node {eui64(node_id)} has not bootstrapped through this controller")
        if node.status == "revoked" or node.psk is None:
            raise StoreError(f"node {eui64(node_id)} is revoked; its PSK has been dropped")
        where = address or node.address
        if where is None:
            raise StoreError(
                f"no CoAPS address known for node {eui64(node_id)}: give --address HOST:PORT "
                "(the node agent prints it when it starts serving)"
            )
        psk = node.psk
    finally:
        store.close()
    host, port = parse_host_port(where)
    client = await NodeClient.connect(node_id, psk, host, port, config.dtls_timeout)
    try:
        payload = await client.update_config(update.to_json()) if update else None
        if payload is None:
            payload = await client.read_config()
    finally:
        await client.close()
    settings: dict[str, Any] = json.loads(payload)
    if address is not None and address != node.address:
        _remember_address(config, node_id, address)
    return settings


def _remember_address(config: ControllerConfig, node_id: bytes, address: str) -> None:
    """Only an address the node answered on is kept: a mistyped one is never
    remembered in place of a good one."""
    store = _open_store(config)
    try:
        store.set_node_address(node_id, address)
    finally:
        store.close()


def list_nodes(config: ControllerConfig) -> list[tuple[bytes, str, str | None]]:
    store = _open_store(config)
    try:
        return store.list_nodes()
    finally:
        store.close()
