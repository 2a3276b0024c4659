"""The controller's persisted state in a SQLite file: the TID sequence and
transactions, and the credentials of the nodes it has bootstrapped.

``save`` writes only what changed since the last save, in one transaction, and
must complete before the controller sends anything (the persistence rule of
:mod:`keystrap.protocol`). ``RN_c`` and the PSKs are wrapped under the
controller's own master key.

The ``nodes`` table is what ``keystrap controller configure`` reads: one row
per node with its current PSK (from the last confirmed bootstrap), where its
CoAPS endpoint is, and whether the server has revoked it (then the PSK is gone).
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from keystrap.crypto import KeyUnwrapError, unwrap_key, wrap_key
from keystrap.protocol import ControllerState, ControllerTransaction, TransactionStage
from keystrap.shown import escaped
from keystrap.store.errors import StoreError
from keystrap.store.sqlite import StoreKind, open_database, refuse_tableless, write_transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS transactions (
    tid INTEGER PRIMARY KEY, node_id BLOB NOT NULL, rn_i BLOB NOT NULL,
    rn_c_wrapped BLOB NOT NULL, ts INTEGER NOT NULL, stage TEXT NOT NULL,
    request BLOB NOT NULL, challenge BLOB, psk_wrapped BLOB, confirm BLOB, failure TEXT);
CREATE TABLE IF NOT EXISTS nodes (
    node_id BLOB PRIMARY KEY, tid INTEGER NOT NULL, psk_wrapped BLOB, address TEXT,
    status TEXT NOT NULL, updated INTEGER NOT NULL);
"""

CONTROLLER_STATE = StoreKind("a keystrap controller state", has="transactions", lacks="controllers")


@dataclass(frozen=True)
class NodeCredential:
    node_id: bytes
    tid: int
    psk: bytes | None  # None once revoked
    address: str | None  # "host:port" of its CoAPS endpoint, once known
    status: str  # active or revoked


class ControllerStore:
    def __init__(self, path: Path, master_key: bytes) -> None:
        """Opens the state, or makes it where there is none. A file already there
        that holds no table had been taken for a new state: the TIDs restarted
        at 1, and ``controller configure`` lost the PSKs of the nodes
        bootstrapped earlier (even ``controller nodes`` made it a state)."""
        self.path = Path(path)
        self._kek = master_key
        if self.path.exists():
            refuse_tableless(self.path, CONTROLLER_STATE)
        self._db = open_database(self.path, SCHEMA, kind=CONTROLLER_STATE)

    def close(self) -> None:
        self._db.close()

    def load(self, controller_id: bytes, sk_cs: bytes) -> ControllerState:
        next_tid = self.get_counter("next_tid") or 1
        transactions = {}
        for r in self._db.execute("SELECT * FROM transactions"):
            tx = ControllerTransaction(
                tid=r[0],
                node_id=r[1],
                rn_i=r[2],
                rn_c=self._unwrap(r[3]),
                ts=r[4],
                stage=TransactionStage(r[5]),
                request=r[6],
                challenge=r[7],
                psk=None if r[8] is None else self._unwrap(r[8]),
                confirm=r[9],
                failure=r[10],
            )
            transactions[tx.tid] = tx
        return ControllerState(controller_id, sk_cs, next_tid, transactions)

    def save(self, current: ControllerState, changed_tids: Collection[int]) -> None:
        """Write the transactions named in ``changed_tids`` (the core's
        ``unsaved()``): those still held are written, the others deleted. The work
        is proportional to the change, not to what the controller holds. A
        bootstrap that became done records the node's credential in the same
        commit."""
        if not changed_tids:
            return
        held = current.transactions
        changed = [held[tid] for tid in changed_tids if tid in held]
        removed = [(tid,) for tid in changed_tids if tid not in held]
        with write_transaction(self._db) as db:
            self.set_counter("next_tid", current.next_tid)
            db.executemany(
                "INSERT OR REPLACE INTO transactions VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    (
                        tx.tid,
                        tx.node_id,
                        tx.rn_i,
                        wrap_key(self._kek, tx.rn_c),
                        tx.ts,
                        tx.stage.value,
                        tx.request,
                        tx.challenge,
                        None if tx.psk is None else wrap_key(self._kek, tx.psk),
                        tx.confirm,
                        tx.failure,
                    )
                    for tx in changed
                ),
            )
            db.executemany("DELETE FROM transactions WHERE tid=?", removed)
            for tx in changed:
                if tx.stage is TransactionStage.DONE and tx.psk is not None:
                    self.record_node(tx.node_id, tx.tid, tx.psk)

    def _unwrap(self, wrapped: bytes) -> bytes:
        try:
            return unwrap_key(self._kek, wrapped)
        except KeyUnwrapError:
            raise StoreError(f"{self.path}: wrong master key file") from None

    # -- node credentials ---------------------------------------------------------

    def record_node(self, node_id: bytes, tid: int, psk: bytes) -> None:
        """A confirmed bootstrap: this PSK replaces any earlier one (re-installation)."""
        self._db.execute(
            "INSERT INTO nodes VALUES (?,?,?,NULL,'active',?) ON CONFLICT(node_id) DO UPDATE "
            "SET tid=excluded.tid, psk_wrapped=excluded.psk_wrapped, status='active', "
            "updated=excluded.updated",
            (node_id, tid, wrap_key(self._kek, psk), int(time.time())),
        )

    def revoke_node(self, node_id: bytes) -> bool:
        """Forget the node's PSK, here and in its transactions; False if never seen here."""
        with write_transaction(self._db) as db:
            known = db.execute(
                "UPDATE nodes SET psk_wrapped=NULL, status='revoked', updated=? WHERE node_id=?",
                (int(time.time()), node_id),
            ).rowcount
            known += db.execute(
                "UPDATE transactions SET psk_wrapped=NULL WHERE node_id=?", (node_id,)
            ).rowcount
        return known > 0

    def set_node_address(self, node_id: bytes, address: str) -> None:
        self._db.execute("UPDATE nodes SET address=? WHERE node_id=?", (address, node_id))

    def get_node(self, node_id: bytes) -> NodeCredential | None:
        row = self._db.execute(
            "SELECT node_id, tid, psk_wrapped, address, status FROM nodes WHERE node_id=?",
            (node_id,),
        ).fetchone()
        if row is None:
            return None
        psk = None if row[2] is None else self._unwrap(row[2])
        return NodeCredential(row[0], row[1], psk, row[3], row[4])

    def list_nodes(self) -> list[tuple[bytes, str, str | None]]:
        """``(ID_i, status, address)`` of every node this controller bootstrapped."""
        rows = self._db.execute("SELECT node_id, status, address FROM nodes ORDER BY node_id")
        return [(bytes(r[0]), str(r[1]), r[2]) for r in rows]

    def get_counter(self, name: str, most: int = 2**63 - 1) -> int:
        """A counter (0 if never set). One a hand edit left as another type or out
        of 0..``most`` is a StoreError naming it: ``int()`` took 1.5 as 1 and
        failed on text, and a cursor beyond what flight 9 can carry ended the
        revocation feed in silence."""
        row = self._db.execute(
            "SELECT value, typeof(value) FROM meta WHERE name=?", (name,)
        ).fetchone()
        if row is None:
            return 0
        value, kind = row
        if kind != "integer" or not 0 <= value <= most:
            raise StoreError(
                f"{self.path}: {name} is {escaped(repr(value))}, not a whole number from 0 "
                f"to {most} (was the file edited?)"
            )
        return int(value)

    def set_counter(self, name: str, value: int) -> None:
        self._db.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value=excluded.value",
            (name, value),
        )
