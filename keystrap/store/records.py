"""What the SQLite and PostgreSQL repositories share above their SQL dialects.

Both stores hold the same rows under the same AES-KW wrapping and must refuse
the same things in the same words, so an operator moving a site between them
sees no difference; only the statements and the transaction handling differ.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from keystrap.crypto import KeyUnwrapError, unwrap_key, wrap_key
from keystrap.ids import eui64
from keystrap.protocol.repository import (
    NodeRecord,
    NodeStatus,
    TransactionRecord,
    TransactionStatus,
)
from keystrap.protocol.revocation_feed import MAX_CURSOR
from keystrap.shown import shown_id
from keystrap.store.errors import StoreError

if TYPE_CHECKING:
    from keystrap.store.sqlite_repository import ControllerInfo

ALREADY_REGISTERED = (
    "controller {} is already registered; to give it a new key use: "
    "keystrap admin controller rotate-key"
)
UNKNOWN_CONTROLLER = "unknown controller; add it with: keystrap admin controller add"


class WrongMasterKey(StoreError):
    """The store's keys were wrapped under another master key."""


class UnfinishedBootstraps(StoreError):
    """A controller's key is not rotated while bootstraps it started are pending."""


def unwrap_stored(kek: bytes, wrapped: bytes, store: str) -> bytes:
    try:
        return unwrap_key(kek, wrapped)
    except KeyUnwrapError:
        raise WrongMasterKey(
            f"{store}: a stored key does not unwrap -- wrong master key file?"
        ) from None


KEYS_REMEMBERED = 32_768
"""Keys :class:`KeyWrapping` keeps by their wrapped bytes (about 200 bytes each):
two per bootstrap between its flights 2 and 6, which wait for flights 4 and 5
out of band, so some 16,000 bootstraps, seconds of them at thousands a second.
One found no longer costs one unwrap, nothing else."""


class KeyWrapping:
    """The master key's AES-KW wrapping of a store's keys, remembering the keys it
    wrapped or unwrapped lately by their wrapped bytes.

    Why: a bootstrap wraps ``PSK_i`` and ``RN_c`` at flight 2 and unwraps the same
    two at flight 6, and an installer's nodes may share one initial key; each
    wrap or unwrap sets up a cipher context in ``cryptography``, and the five
    of a bootstrap were 4.5 % of the server's instructions (docs/performance.md
    §3). RFC 3394 is deterministic, so wrapped bytes found here are the wrapping
    of the key beside them under this master key: the wrap that made them, or
    the integrity check they passed, holds for the same bytes again. The process
    holds the master key, which unwraps every key, so keeping some keys
    unwrapped exposes nothing the process did not hold already. Audits
    (:func:`key_problems`) unwrap every key afresh.
    """

    def __init__(self, kek: bytes, store: str) -> None:
        self._kek = kek
        self._store = store
        self._keys: OrderedDict[bytes, bytes] = OrderedDict()

    def wrap(self, key: bytes) -> bytes:
        wrapped = wrap_key(self._kek, key)
        self._remember(wrapped, key)
        return wrapped

    def unwrap(self, wrapped: bytes) -> bytes:
        key = self._keys.get(wrapped)
        if key is None:
            key = unwrap_stored(self._kek, wrapped, self._store)
            self._remember(wrapped, key)
        return key

    def _remember(self, wrapped: bytes, key: bytes) -> None:
        keys = self._keys
        keys[wrapped] = key
        if len(keys) > KEYS_REMEMBERED:
            keys.popitem(last=False)


def master_key_mismatch(store: str) -> WrongMasterKey:
    return WrongMasterKey(
        f"{store}: master key check failed: its keys were not wrapped under this master key file"
    )


TRANSACTION_COLUMNS = (
    "t.node_id, t.request, t.grant_flight, t.rn_c_wrapped, t.psk_wrapped, t.status, t.created"
)
"""A transaction's columns as both stores select them (the table named ``t``),
first in every row :func:`transaction_record` reads."""

_TRANSACTION_STATUS = {status.value: status for status in TransactionStatus}
_NODE_STATUS = {status.value: status for status in NodeStatus}


def transaction_record(
    controller_id: bytes, tid: int, row: Sequence[Any], unwrap: Callable[[bytes], bytes]
) -> TransactionRecord:
    """``row`` starts with :data:`TRANSACTION_COLUMNS`."""
    return TransactionRecord(
        controller_id,
        tid,
        row[0],
        row[1],
        row[2],
        unwrap(row[3]),
        None if row[4] is None else unwrap(row[4]),
        _TRANSACTION_STATUS[row[5]],
        row[6],
    )


def request_lookup(
    controller_id: bytes,
    tid: int,
    node_id: bytes,
    row: Sequence[Any],
    unwrap: Callable[[bytes], bytes],
) -> tuple[TransactionRecord | None, NodeRecord | None, int]:
    """:meth:`KeyRepository.lookup_request` from the one row both stores select:
    the transaction's columns (all NULL if there is none), the node's wrapped key
    and status (NULL if there is none), its pending count."""
    previous = None if row[0] is None else transaction_record(controller_id, tid, row, unwrap)
    node = None if row[7] is None else NodeRecord(node_id, unwrap(row[7]), _NODE_STATUS[row[8]])
    return previous, node, row[9]


def confirm_lookup(
    controller_id: bytes, tid: int, row: Sequence[Any], unwrap: Callable[[bytes], bytes]
) -> tuple[TransactionRecord, NodeStatus | None]:
    """:meth:`KeyRepository.lookup_confirm` from the transaction's columns and its
    node's status (NULL if the node is gone)."""
    status = None if row[7] is None else _NODE_STATUS[row[7]]
    return transaction_record(controller_id, tid, row, unwrap), status


def transaction_row(record: TransactionRecord, wrap: Callable[[bytes], bytes]) -> tuple[Any, ...]:
    """The columns of the transactions table, in order, with the keys wrapped."""
    return (
        record.controller_id,
        record.tid,
        record.node_id,
        record.request,
        record.grant,
        wrap(record.rn_c),
        None if record.psk is None else wrap(record.psk),
        record.status.value,
        record.created,
    )


def controller_row(info: ControllerInfo, sk_wrapped: bytes) -> tuple[Any, ...]:
    """The columns of the controllers table, in order, registered now."""
    return (info.controller_id, info.name, info.host, info.port, sk_wrapped, int(time.time()))


def already_registered(controller_id: bytes) -> StoreError:
    return StoreError(ALREADY_REGISTERED.format(eui64(controller_id)))


def already_enrolled(node_id: bytes, order_id: int, status: str) -> StoreError:
    """Why an order naming a known node is refused, and what to do about it."""
    node = eui64(node_id)
    if status == "revoked":
        return StoreError(
            f"node {node} is already enrolled (order {order_id}, revoked); "
            "to enrol it again on purpose add --re-enrol"
        )
    return StoreError(
        f"node {node} is already enrolled (order {order_id}, {status}); only a revoked "
        f"node can be enrolled again: revoke it first (keystrap admin revoke {node})"
    )


def unfinished_bootstraps(controller_id: bytes, pending: int) -> UnfinishedBootstraps:
    return UnfinishedBootstraps(
        f"controller {eui64(controller_id)} has {pending} unfinished bootstrap(s); their "
        "confirmations are sealed with the old key"
    )


def order_in_use(order_id: int, live: int) -> StoreError:
    return StoreError(
        f"order {order_id} has {live} bootstrapping or active node(s); revoke them "
        f"first (keystrap admin revoke --order {order_id}), then remove the order"
    )


def shown_status(status: str, pending: bool) -> str:
    """An enrolled or active node with an open candidate is shown as bootstrapping."""
    return "bootstrapping" if pending and status != "revoked" else status


def key_problems(
    kek: bytes,
    controllers: Iterable[Sequence[Any]],
    nodes: Iterable[Sequence[Any]],
    transactions: Iterable[Sequence[Any]],
) -> list[str]:
    """Every wrapped key that does not unwrap under ``kek``, named by its owner.

    The rows are ``(id, sk_wrapped)``, ``(id, key_wrapped)`` and
    ``(controller_id, tid, rn_c_wrapped, psk_wrapped)``. An ID that holds no
    bytes is a problem of its own, named by its value."""
    problems: list[str] = []
    wrapped = [(_owner("controller", cid, problems), w) for cid, w in controllers]
    wrapped += [(_owner("node", nid, problems), w) for nid, w in nodes]
    for cid, tid, *keys in transactions:
        owner = f"transaction {tid} of {_owner('controller', cid, problems)}"
        wrapped += [(owner, w) for w in keys if w is not None]
    for owner, blob in wrapped:
        if not isinstance(blob, bytes | bytearray | memoryview):  # a hand-edited row: text
            problems.append(f"the key of {owner} is {type(blob).__name__}, not a wrapped key")
            continue
        try:
            unwrap_key(kek, bytes(blob))
        except KeyUnwrapError:
            problems.append(f"the key of {owner} does not unwrap under the master key")
    return problems


def revocation_problems(rows: Iterable[Sequence[Any]]) -> list[str]:
    """Revocations numbered where the feed cannot reach them, from the rows of
    :data:`REVOCATIONS_OUT_OF_REACH`: one problem each for those below 1 and
    those above what flight 10 carries, naming the first of them. Only a hand
    edit or a foreign tool makes them, and the store then numbers every new one
    after the highest, out of reach too."""
    below: list[Sequence[Any]] = []
    above: list[Sequence[Any]] = []
    for row in rows:
        (below if row[0] < 1 else above).append(row)
    problems = []
    for out, where in ((below, "below 1"), (above, f"above {MAX_CURSOR}")):
        if out:
            seq, node_id = out[0][0], out[0][1]
            more = f" and {len(out) - 1} more" if len(out) > 1 else ""
            are, them = ("are", "them") if more else ("is", "it")
            problems.append(
                f"revocation {seq} (node {shown_id(node_id)}){more} {are} numbered {where}, "
                f"which the revocation feed cannot send: no controller is told of {them} "
                "(was the store edited?)"
            )
    return problems


def _owner(kind: str, identifier: object, problems: list[str]) -> str:
    """``kind`` and its EUI-64, or, for an ID column a hand-edited row gave text
    (SQLite keeps any type in any column), the value itself, escaped, with a
    problem saying so."""
    owner = f"{kind} {shown_id(identifier)}"
    if not isinstance(identifier, bytes | bytearray | memoryview):
        problems.append(f"the id of {owner} is {type(identifier).__name__}, not an EUI-64")
    return owner


def count_states(statuses: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return counts


LIST_ORDERS = (
    "SELECT o.id, o.installer, o.controller_id, o.key_mode, "
    "(SELECT COUNT(*) FROM nodes n WHERE n.order_id=o.id), o.created, o.version "
    "FROM orders o ORDER BY o.id"
)
LIST_NODES = (
    "SELECT n.id, n.order_id, n.status, EXISTS(SELECT 1 FROM transactions t "
    "WHERE t.node_id=n.id AND t.status='pending') FROM nodes n ORDER BY n.id"
)
REVOCATIONS_OUT_OF_REACH = (
    f"SELECT seq, node_id FROM revocations WHERE seq < 1 OR seq > {MAX_CURSOR} ORDER BY seq"  # noqa: S608
)
WRAPPED_CONTROLLER_KEYS = "SELECT id, sk_wrapped FROM controllers"
WRAPPED_NODE_KEYS = "SELECT id, key_wrapped FROM nodes"
WRAPPED_TRANSACTION_KEYS = "SELECT controller_id, tid, rn_c_wrapped, psk_wrapped FROM transactions"
