"""The controller's persisted state (next TID, transactions) in a SQLite file.

``save`` writes only what changed since the last save, in one transaction, and
must complete before the controller sends anything (the persistence rule of
:mod:`keystrap.protocol`). ``RN_c`` and the PSKs are wrapped under the
controller's own master key.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from keystrap.crypto import KeyUnwrapError, unwrap_key, wrap_key
from keystrap.protocol import ControllerState, ControllerTransaction, TransactionStage
from keystrap.store.errors import StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS transactions (
    tid INTEGER PRIMARY KEY, node_id BLOB NOT NULL, rn_i BLOB NOT NULL,
    rn_c_wrapped BLOB NOT NULL, ts INTEGER NOT NULL, stage TEXT NOT NULL,
    request BLOB NOT NULL, challenge BLOB, psk_wrapped BLOB, confirm BLOB, failure TEXT);
"""


class ControllerStore:
    def __init__(self, path: Path, master_key: bytes) -> None:
        self.path = Path(path)
        self._kek = master_key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self.path.chmod(0o600)

    def close(self) -> None:
        self._db.close()

    def load(self, controller_id: bytes, sk_cs: bytes) -> ControllerState:
        row = self._db.execute("SELECT value FROM meta WHERE name='next_tid'").fetchone()
        next_tid = 1 if row is None else int(row[0])
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

    def save(self, previous: ControllerState, current: ControllerState) -> None:
        changed = [
            tx
            for tid, tx in current.transactions.items()
            if previous.transactions.get(tid) is not tx
        ]
        if not changed and previous.next_tid == current.next_tid:
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT INTO meta VALUES ('next_tid', ?) "
                "ON CONFLICT(name) DO UPDATE SET value=excluded.value",
                (current.next_tid,),
            )
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
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _unwrap(self, wrapped: bytes) -> bytes:
        try:
            return unwrap_key(self._kek, wrapped)
        except KeyUnwrapError:
            raise StoreError(f"{self.path}: wrong master key file") from None
