"""The enrolment phase (paper section 3, steps 1-5): orders, bundles, installation.

1. The administrator orders nodes from an installer (``create_order``): the
   nodes and their initial key are recorded at the server, and the installer
   receives a *bundle* (a 0600 file) with the IDs, the controller's ID and NID,
   and the initial key(s).
2. The installer turns the bundle into one provisioning file per node
   (``install_bundle``), as it would be imprinted into each device.

Key modes:

* ``shared`` (the paper's default): every node of the order holds one ``IK_N``.
* ``diversified``: the installer still receives one ``IK_N``, but imprints each
  node with ``IK_i = KDF(IK_N, "keystrap IK_i" || ID_i)``; a node then holds only
  its own key, so a rogue node of the same installer cannot answer for another.
* ``per-node``: an independent random key per node.

Profiles (the wire version the nodes of an order speak, docs/protocol.md): ``paper``
(version 1, the paper's flights) or ``compact`` (version 2, fewer bytes on every
channel). A node speaks only its own, so the bundle and the node file carry it.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keystrap.config import RANGES
from keystrap.crypto import kbkdf_cmac
from keystrap.ids import eui64, parse_eui64
from keystrap.oob.channel import OobError, parse_endpoint
from keystrap.order_options import KEY_MODES, PROFILE_NAMES
from keystrap.protocol import NodeState
from keystrap.store.atomic import ExistingFile, make_private_dirs, write_new
from keystrap.store.bounded_read import InputRefused, read_bounded
from keystrap.store.errors import StoreError
from keystrap.store.json_members import Members
from keystrap.store.node_file import (
    MAX_NODE_FILE,
    NodeFile,
    encode_node_file,
    holds_psk,
    is_node_file,
    load_node_file,
)
from keystrap.store.open import Repository
from keystrap.wire import COMPACT, VERSION

BUNDLE_FORMAT = "keystrap-bundle/1"
MAX_BUNDLE = 2**30
"""Bytes of a bundle ``install`` reads: the largest order's (10,000,000 nodes
with per-node keys, about 90 bytes each) fits, ``/dev/zero`` does not."""
MAX_CSV = 2**30
"""Bytes of an ``order create --csv`` file: 10,000,000 IDs (the most an order
holds) of a few columns each fit."""
PROFILES = dict(zip(PROFILE_NAMES, (VERSION, COMPACT), strict=True))


def diversify(ik_n: bytes, node_id: bytes) -> bytes:
    """``IK_i = SP800-108-CMAC(IK_N, "keystrap IK_i" || 0x00 || ID_i || [128]_32)``."""
    return kbkdf_cmac(ik_n, b"keystrap IK_i\x00" + node_id + (128).to_bytes(4, "big"), 16)


def ids_from_count(count: int) -> list[bytes]:
    """Random locally administered EUI-64s (first byte 0x02)."""
    if not 1 <= count <= 10_000_000:
        raise ValueError("--count must be between 1 and 10,000,000")
    return [b"\x02" + secrets.token_bytes(7) for _ in range(count)]


def ids_from_range(spec: str) -> list[bytes]:
    """``FIRST-LAST`` inclusive, e.g. ``02:00:00:00:00:00:00:01-02:00:00:00:00:00:00:14``."""
    first_text, sep, last_text = spec.partition("-") if spec.count("-") == 1 else ("", "", "")
    if not sep:
        raise ValueError("--range takes FIRST-LAST, with EUI-64s written with colons")
    first = int.from_bytes(parse_eui64(first_text), "big")
    last = int.from_bytes(parse_eui64(last_text), "big")
    if last < first or last - first >= 10_000_000:
        raise ValueError("--range must be ascending and hold at most 10,000,000 IDs")
    return [n.to_bytes(8, "big") for n in range(first, last + 1)]


def ids_from_csv(path: Path) -> list[bytes]:
    """First column of each non-empty row; a header row is skipped if it is not an EUI-64."""
    ids: list[bytes] = []
    try:
        data = read_bounded(path, MAX_CSV, "--csv file")
    except OSError as exc:
        raise StoreError(f"cannot read --csv file {path}: {exc.strerror or exc}") from None
    try:
        rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"--csv file {path} is not a CSV text file: {exc}") from None
    for number, row in enumerate(rows, 1):
        if not row or not row[0].strip() or row[0].startswith("#"):
            continue
        try:
            ids.append(parse_eui64(row[0]))
        except ValueError:
            if number == 1:
                continue
            raise ValueError(f"{path}, line {number}: {row[0]!r} is not an EUI-64") from None
    if not ids:
        raise ValueError(f"{path} lists no node IDs")
    return ids


@dataclass(frozen=True)
class Order:
    order_id: int
    installer: str
    controller_id: bytes
    controller_host: str
    controller_port: int
    oob: str
    key_mode: str
    shared_key: bytes | None  # IK_N (shared and diversified modes)
    node_keys: dict[bytes, bytes]  # what each node is imprinted with
    profile: str = "paper"


def create_order(
    repository: Repository,
    installer: str,
    controller_id: bytes,
    node_ids: Iterable[bytes],
    *,
    key_mode: str = "shared",
    profile: str = "paper",
    oob: str,
    re_enrol: bool = False,
    publish: Callable[[Order], None] | None = None,
) -> Order:
    """Record the order at the server. ``publish`` hands the order out (writes the
    bundle) before the store commits it: if it fails, nothing is enrolled."""
    controller = repository.get_controller(controller_id)
    if controller is None:
        raise StoreError(
            f"controller {eui64(controller_id)} is not registered; "
            "add it with: keystrap admin controller add"
        )
    ids = list(node_ids)
    if len(set(ids)) != len(ids):
        raise ValueError("the order lists a node ID twice")
    if key_mode not in KEY_MODES:
        raise ValueError(f"key mode must be one of {', '.join(KEY_MODES)}")
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}")
    shared = None if key_mode == "per-node" else secrets.token_bytes(16)
    if shared is None:
        keys = {nid: secrets.token_bytes(16) for nid in ids}
    elif key_mode == "diversified":
        keys = {nid: diversify(shared, nid) for nid in ids}
    else:
        keys = dict.fromkeys(ids, shared)

    def made(order_id: int) -> Order:
        return Order(
            order_id,
            installer,
            controller_id,
            controller.host,
            controller.port,
            oob,
            key_mode,
            shared,
            keys,
            profile,
        )

    def hand_out(order_id: int) -> None:
        if publish is not None:
            publish(made(order_id))

    order_id = repository.create_order(
        installer,
        controller_id,
        keys.items(),
        key_mode,
        version=PROFILES[profile],
        re_enrol=re_enrol,
        publish=hand_out,
    )
    return made(order_id)


def bundle_bytes(order: Order) -> bytes:
    doc: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "order": order.order_id,
        "installer": order.installer,
        "controller": {
            "id": eui64(order.controller_id),
            "host": order.controller_host,
            "port": order.controller_port,
        },
        "oob": order.oob,
        "key_mode": order.key_mode,
        "profile": order.profile,
        "version": PROFILES[order.profile],
    }
    if order.shared_key is not None:
        doc["shared_key"] = order.shared_key.hex()
        doc["nodes"] = [{"id": eui64(nid)} for nid in order.node_keys]
    else:
        doc["nodes"] = [{"id": eui64(nid), "key": k.hex()} for nid, k in order.node_keys.items()]
    return (json.dumps(doc, indent=1) + "\n").encode()


def install_bundle(
    bundle_path: Path,
    out_dir: Path,
    channel_up: str = "qr",
    channel_down: str = "qr",
    *,
    force: bool = False,
) -> list[Path]:
    """The installer's step: one provisioning file per node, named after its EUI-64.
    The channels are the device's out-of-band hardware (node->controller, back).

    Every file is checked before the first is written: an existing file is
    replaced only with ``force``, and never one whose node has bootstrapped (it
    may hold the only copy of its PSK). A file already identical is left alone.
    If a write fails (or the run is interrupted), the files this run created are
    removed again; a file it replaced with ``force`` keeps its new contents, since
    removing it would lose the file the operator had.
    """
    files = [
        (path, encode_node_file(node))
        for path, node in _node_files(bundle_path, out_dir, channel_up, channel_down)
    ]
    todo = [(path, data) for path, data in files if _must_write(path, data, force)]
    make_private_dirs(out_dir)
    created: list[Path] = []
    try:
        for path, data in todo:
            new = not path.exists()
            write_new(path, data, force=force)
            if new:
                created.append(path)
    except BaseException:
        for path in created:
            path.unlink(missing_ok=True)
        raise
    return [path for path, _ in files]


def _node_files(
    bundle_path: Path, out_dir: Path, channel_up: str, channel_down: str
) -> list[tuple[Path, NodeFile]]:
    try:
        doc: Any = json.loads(read_bounded(bundle_path, MAX_BUNDLE, "bundle"))
    except (OSError, ValueError, RecursionError) as exc:
        raise StoreError(f"cannot read bundle {bundle_path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
        raise StoreError(f"{bundle_path} is not a keystrap bundle ({BUNDLE_FORMAT})")
    try:
        nodes = _decode_bundle(Members(doc), channel_up, channel_down)
    except ValueError as exc:
        raise StoreError(f"bundle {bundle_path} is malformed: {exc}") from None
    return [(out_dir / (eui64(n.state.node_id).replace(":", "") + ".json"), n) for n in nodes]


def _decode_bundle(doc: Members, channel_up: str, channel_down: str) -> list[NodeFile]:
    """The node files a bundle describes, every member checked against
    docs/files.md first: a wrong one is named here instead of ending up in a
    node file (a port of -1) or changing what it means (an unknown key mode read
    as "shared")."""
    doc.integer("order", 1, 2**63 - 1)
    doc.text("installer")
    controller = doc.child("controller")
    controller_id = controller.eui64("id")
    host, port = controller.text("host"), controller.integer("port", *RANGES["port"])
    oob = doc.text("oob")
    try:
        parse_endpoint(oob)
    except OobError as exc:
        raise ValueError(f"oob: {exc}") from None
    key_mode = doc.choice("key_mode", KEY_MODES)
    version = doc.integer("version", VERSION, COMPACT, default=VERSION)  # PROFILES' versions
    profile = doc.choice("profile", PROFILE_NAMES, default=PROFILE_NAMES[0])
    if doc.has("profile") and PROFILES[profile] != version:
        raise ValueError(f"profile {profile} is wire version {PROFILES[profile]}, not {version}")
    if key_mode == "per-node" and doc.has("shared_key"):
        raise ValueError("shared_key belongs to the shared and diversified modes, not per-node")
    shared = None if key_mode == "per-node" else doc.hex("shared_key", 16)
    entries = doc.array("nodes")
    if not entries:
        raise ValueError("nodes lists no node")
    files: dict[bytes, NodeFile] = {}
    for number, item in enumerate(entries):
        entry = Members(item, f"nodes[{number}].")
        node_id = entry.eui64("id")
        if node_id in files:
            raise ValueError(f"nodes lists {eui64(node_id)} twice")
        if shared is None:
            key = entry.hex("key", 16)
        elif entry.has("key"):
            raise ValueError(f"nodes[{number}].key belongs to the per-node mode, not {key_mode}")
        else:
            key = diversify(shared, node_id) if key_mode == "diversified" else shared
        state = NodeState(node_id, controller_id, key, version=version)
        files[node_id] = NodeFile(state, host, port, oob, channel_up, channel_down)
    return list(files.values())


def _must_write(path: Path, data: bytes, force: bool) -> bool:
    """False if ``path`` already holds exactly ``data``; raises if it may not be replaced.

    A regular file larger than any node file keystrap writes is no node file:
    like any other foreign file, only ``force`` replaces it (it was refused even
    then, for failing to be read first)."""
    try:
        if read_bounded(path, MAX_NODE_FILE, "node state file") == data:
            return False
    except FileNotFoundError:
        return True
    except InputRefused:
        if not path.is_file():  # a directory, FIFO or device: nothing replaces it
            raise
        return _foreign(path, force)
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        existing: NodeFile | None = load_node_file(path)
    except StoreError as exc:
        if is_node_file(path):  # edited, or from a newer keystrap: it may hold a PSK
            raise StoreError(
                f"{exc}; install never replaces a node file it cannot read, not even "
                "with --force (it may hold the node's only PSK); to start over: keystrap "
                f"node {path} --factory-reset, revoke and re-enrol it (keystrap admin order "
                "create --re-enrol), then install with --force"
            ) from None
        existing = None  # a factory-reset or foreign file: no key to lose
    if existing is not None and holds_psk(existing):
        node = eui64(existing.state.node_id)
        raise StoreError(
            f"node {node}: {path} holds its PSK ({existing.state.stage.value}); install never "
            f"replaces it, not even with --force. To bootstrap it again: keystrap node {path} "
            f"--reinstall; to start over: keystrap node {path} --factory-reset, revoke and "
            "re-enrol it (keystrap admin order create --re-enrol), then install with --force"
        )
    return _foreign(path, force)


def _foreign(path: Path, force: bool) -> bool:
    """A file with other contents and no PSK to lose: replaced only with ``force``."""
    if not force:
        raise ExistingFile(
            f"{path} already exists with other contents; keystrap never overwrites a file it "
            "did not create (give --force to replace it)"
        )
    return True
