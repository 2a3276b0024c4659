"""The node's state file: its provisioning (written by ``keystrap install``) and,
after a bootstrap, its PSK, session key and settings. JSON, rewritten
atomically, 0600.

A factory reset rewrites it without any key: the node then needs enrolment
again and can never fall back to an old IK or PSK.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keystrap.protocol import NodeStage, NodeState
from keystrap.settings import NodeSettings, SettingsError
from keystrap.store.atomic import write_atomic
from keystrap.store.errors import StoreError
from keystrap.wire.header import VERSION, VERSIONS

FORMAT = "keystrap-node/1"
RESET_FORMAT = "keystrap-node-reset/1"


@dataclass(frozen=True)
class NodeFile:
    state: NodeState
    controller_host: str
    controller_port: int
    oob: str  # where the out-of-band channel to the controller is
    channel_up: str = "qr"  # medium of flights 1 and 5 (node -> controller)
    channel_down: str = "qr"  # medium of flight 4 (controller -> node)
    confirmed: bool = False  # the controller said the server took PSK_i
    settings: NodeSettings = field(default_factory=NodeSettings)


def save_node_file(path: Path, node: NodeFile) -> None:
    """The file is replaced whole (written aside, then renamed over it); through a
    symbolic link, the file it points to is: renaming over the link would leave
    the keys in that file while the node reads the link's copy."""
    write_atomic(Path(path).resolve(), encode_node_file(node), 0o600)


def encode_node_file(node: NodeFile) -> bytes:
    s = node.state

    def hx(value: bytes | None) -> str | None:
        return None if value is None else value.hex()

    doc = {
        "format": FORMAT,
        "node_id": s.node_id.hex(),
        "controller_id": s.controller_id.hex(),
        "version": s.version,
        "controller": {"host": node.controller_host, "port": node.controller_port},
        "oob": node.oob,
        "channels": {"to_controller": node.channel_up, "to_node": node.channel_down},
        "stage": s.stage.value,
        "key": s.key.hex(),
        "rn_i": hx(s.rn_i),
        "tid": s.tid,
        "session_key": hx(s.session_key),
        "challenge": hx(s.challenge),
        "proof": hx(s.proof),
        "confirmed": node.confirmed,
        "settings": node.settings.to_dict(),
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def holds_psk(node: NodeFile) -> bool:
    """The node has bootstrapped or is bootstrapping: its key may be a PSK that
    nothing else holds, so no provisioning may ever replace this file."""
    return node.confirmed or node.state.stage is not NodeStage.PROVISIONED


def is_node_file(path: Path) -> bool:
    """``path`` says it is a node file (its format), whether or not it loads."""
    try:
        doc: Any = json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and doc.get("format") == FORMAT


def load_node_file(path: Path) -> NodeFile:
    try:
        doc: Any = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise StoreError(f"node state file {path} does not exist") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise StoreError(f"node state file {path} is unreadable: {exc}") from None
    if isinstance(doc, dict) and doc.get("format") == RESET_FORMAT:
        raise StoreError(
            f"{path}: node was factory-reset; it needs enrolment "
            "(keystrap admin order create, then keystrap install)"
        )
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StoreError(f"{path} is not a keystrap node file ({FORMAT})")
    try:

        def opt(name: str) -> bytes | None:
            value = doc.get(name)
            return None if value is None else bytes.fromhex(value)

        state = NodeState(
            node_id=bytes.fromhex(doc["node_id"]),
            controller_id=bytes.fromhex(doc["controller_id"]),
            key=bytes.fromhex(doc["key"]),
            stage=NodeStage(doc["stage"]),
            rn_i=opt("rn_i"),
            tid=doc.get("tid"),
            session_key=opt("session_key"),
            challenge=opt("challenge"),
            proof=opt("proof"),
            version=int(doc.get("version", VERSION)),
        )
        controller = doc["controller"]
        channels = doc.get("channels", {})
        node = NodeFile(
            state,
            str(controller["host"]),
            int(controller["port"]),
            str(doc["oob"]),
            str(channels.get("to_controller", "qr")),
            str(channels.get("to_node", "qr")),
            bool(doc.get("confirmed", False)),
            NodeSettings.from_dict(doc.get("settings", {})),
        )
    except SettingsError as exc:
        raise StoreError(f"node state file {path} has invalid settings: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StoreError(f"node state file {path} is malformed: {exc}") from None
    if state.version not in VERSIONS:
        raise StoreError(f"node state file {path}: wire version {state.version} is not spoken here")
    if len(state.node_id) != 8 or len(state.controller_id) != 8 or len(state.key) != 16:
        raise StoreError(f"node state file {path} has fields of the wrong size")
    return node


def factory_reset(path: Path) -> bytes:
    """Forget every key and setting; keep only the node's ID. Returns the ID."""
    node_id = load_node_file(path).state.node_id
    doc = {"format": RESET_FORMAT, "node_id": node_id.hex()}
    write_atomic(Path(path).resolve(), (json.dumps(doc, indent=2) + "\n").encode(), 0o600)
    return node_id
