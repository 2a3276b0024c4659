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

from keystrap.config import RANGES
from keystrap.oob.medium import MEDIA
from keystrap.protocol import NodeStage, NodeState
from keystrap.settings import NodeSettings, SettingsError
from keystrap.store.atomic import write_atomic
from keystrap.store.bounded_read import InputRefused, read_bounded
from keystrap.store.errors import StoreError
from keystrap.store.json_members import Members
from keystrap.wire import (
    COMPACT,
    TID_MAX,
    VERSION,
    CompactFlight4,
    CompactFlight5,
    Flight4,
    Flight5,
)
from keystrap.wire.header import VERSIONS
from keystrap.wire.sizes import ID_SIZE, KEY_SIZE, RN_SIZE

FORMAT = "keystrap-node/1"
RESET_FORMAT = "keystrap-node-reset/1"
MAX_NODE_FILE = 64 * 1024  # about 1 KiB, settings included (keystrap.settings bounds them)


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


def _document(path: Path) -> dict[str, Any] | None:
    """The file's JSON object, or ``None`` if it has none: for telling what a
    file says it is when it may not load."""
    try:
        doc: Any = json.loads(read_bounded(path, MAX_NODE_FILE, "node state file"))
    except (OSError, ValueError, RecursionError, InputRefused):
        return None
    return doc if isinstance(doc, dict) else None


def is_node_file(path: Path) -> bool:
    """``path`` says it is a node file (its format), whether or not it loads."""
    doc = _document(path)
    return doc is not None and doc.get("format") == FORMAT


def is_reset_file(path: Path) -> bool:
    """``path`` is what a factory reset wrote (its format), whether or not its
    ``node_id`` is sound."""
    doc = _document(path)
    return doc is not None and doc.get("format") == RESET_FORMAT


def load_node_file(path: Path) -> NodeFile:
    try:
        doc: Any = json.loads(read_bounded(path, MAX_NODE_FILE, "node state file"))
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
        return _decode(Members(doc))
    except SettingsError as exc:
        raise StoreError(f"node state file {path} has invalid settings: {exc}") from None
    except ValueError as exc:
        raise StoreError(f"node state file {path} is malformed: {exc}") from None


BOOTSTRAP = ("rn_i", "tid", "session_key", "challenge", "proof")
STAGE_HOLDS: dict[NodeStage, tuple[tuple[str, ...], ...]] = {
    NodeStage.PROVISIONED: ((),),
    NodeStage.AWAITING_CHALLENGE: (("rn_i",),),
    # The record of the flight 4 answered; none if the key came otherwise (lab nodes).
    NodeStage.KEYED: (("tid", "session_key", "challenge", "proof"), ()),
}
"""Which of :data:`BOOTSTRAP` each stage holds: the node relies on them (it
re-sends flight 1 with ``rn_i``, and flight 5 for its TID) and on nothing left
over from another stage."""
FLIGHT_SIZES = {
    VERSION: (Flight4.SIZE, Flight5.SIZE),
    COMPACT: (CompactFlight4.SIZE, CompactFlight5.SIZE),
}


def _decode(doc: Members) -> NodeFile:
    """Every member checked against docs/files.md, and the stage against what it
    must hold: an edited file fails here, naming what is wrong, rather than
    deep inside the node agent or, worse, taking ``"false"`` for true."""
    version = doc.integer("version", 0, 15, default=VERSION)  # 4 bits of a flight's header
    if version not in VERSIONS:
        raise ValueError(f"wire version {version} is not spoken here")
    stage = NodeStage(doc.choice("stage", [known.value for known in NodeStage]))
    held = tuple(name for name in BOOTSTRAP if doc.has(name))
    if held not in STAGE_HOLDS[stage]:
        wanted = " or ".join(", ".join(names) or "none" for names in STAGE_HOLDS[stage])
        raise ValueError(
            f"stage {stage.value} holds {', '.join(held) or 'none'} of {', '.join(BOOTSTRAP)}; "
            f"it must hold {wanted}"
        )
    challenge_size, proof_size = FLIGHT_SIZES[version]
    state = NodeState(
        node_id=doc.hex("node_id", ID_SIZE),
        controller_id=doc.hex("controller_id", ID_SIZE),
        key=doc.hex("key", KEY_SIZE),
        stage=stage,
        rn_i=doc.optional_hex("rn_i", RN_SIZE),
        tid=doc.optional_integer("tid", 0, TID_MAX),
        session_key=doc.optional_hex("session_key", KEY_SIZE),
        challenge=doc.optional_hex("challenge", challenge_size),
        proof=doc.optional_hex("proof", proof_size),
        version=version,
    )
    controller = doc.child("controller")
    channels = doc.child("channels", optional=True)
    return NodeFile(
        state,
        controller.text("host"),
        controller.integer("port", *RANGES["port"]),
        doc.text("oob"),
        channels.choice("to_controller", MEDIA, default="qr"),
        channels.choice("to_node", MEDIA, default="qr"),
        doc.boolean("confirmed", default=False),
        NodeSettings.from_dict(doc.raw("settings", {})),
    )


def factory_reset(path: Path) -> tuple[bytes | None, bool]:
    """Forget every key and setting; keep only the node's ID. Returns the ID
    (``None`` if the file's own could not be read) and whether the file had
    been reset already.

    A node file that does not load (edited by hand, written by a newer
    keystrap) is reset too: ``install`` never replaces one, so this is the
    operator's only way out. It must still say it is a node file, so that no
    other file is taken for one. A file already reset is left as it is: to an
    operator repeating a reset (a script run twice), the node is in the state
    asked for, which is no error."""
    if is_reset_file(path):
        return _node_id_of(path), True
    try:
        node_id: bytes | None = load_node_file(path).state.node_id
    except StoreError:
        if not is_node_file(path):
            raise
        node_id = _node_id_of(path)
    doc = {"format": RESET_FORMAT} | ({} if node_id is None else {"node_id": node_id.hex()})
    write_atomic(Path(path).resolve(), (json.dumps(doc, indent=2) + "\n").encode(), 0o600)
    return node_id, False


def _node_id_of(path: Path) -> bytes | None:
    """The ID of a node file that does not load, if that member at least is sound."""
    doc = _document(path)
    try:
        return None if doc is None else Members(doc).hex("node_id", ID_SIZE)
    except ValueError:
        return None
