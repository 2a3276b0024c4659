"""The server store's schema, as numbered steps applied in order.

Both back ends (SQLite, PostgreSQL) hold the same tables with the same columns in
the same order, so a store moves between them row by row with its keys still
wrapped (``keystrap admin migrate-store``). Each step is written once per dialect
next to the other; ``meta.schema_version`` records the last step applied.

A server refuses a store whose schema is older than this keystrap's (one clear
line pointing at ``keystrap admin migrate``) or newer (written by a later
keystrap): it never guesses at tables it does not know. Only an empty store is
brought to the latest version on its own, which is how a new site is created.
"""

from __future__ import annotations

from dataclasses import dataclass

from keystrap.store.errors import StoreError

META = "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"

_TABLES = """
CREATE TABLE controllers (
    id {blob} PRIMARY KEY, name TEXT NOT NULL, host TEXT NOT NULL, port INTEGER NOT NULL,
    sk_wrapped {blob} NOT NULL, created BIGINT NOT NULL);
CREATE TABLE installers (name TEXT PRIMARY KEY, created BIGINT NOT NULL);
CREATE TABLE orders (
    id {serial},
    installer TEXT NOT NULL REFERENCES installers(name),
    controller_id {blob} NOT NULL REFERENCES controllers(id),
    key_mode TEXT NOT NULL, created BIGINT NOT NULL);
CREATE TABLE nodes (
    id {blob} PRIMARY KEY, order_id BIGINT NOT NULL REFERENCES orders(id),
    key_wrapped {blob} NOT NULL, status TEXT NOT NULL, updated BIGINT NOT NULL);
CREATE INDEX nodes_by_order ON nodes(order_id);
CREATE TABLE transactions (
    controller_id {blob} NOT NULL, tid BIGINT NOT NULL, node_id {blob} NOT NULL,
    request {blob} NOT NULL, grant_flight {blob}, rn_c_wrapped {blob} NOT NULL,
    psk_wrapped {blob}, status TEXT NOT NULL, created BIGINT NOT NULL,
    PRIMARY KEY (controller_id, tid));
CREATE INDEX transactions_by_node ON transactions(node_id, status);
CREATE TABLE revocations (seq {serial}, node_id {blob} NOT NULL, at BIGINT NOT NULL);
"""

_OPEN_INDEX = (
    "CREATE INDEX transactions_open ON transactions(controller_id) WHERE status='pending';"
)

_ORDER_VERSION = "ALTER TABLE orders ADD COLUMN version INTEGER NOT NULL DEFAULT 1;"

UNNUMBERED_SQLITE = (
    "CREATE TABLE IF NOT EXISTS revocations "
    "(seq INTEGER PRIMARY KEY AUTOINCREMENT, node_id BLOB NOT NULL, at BIGINT NOT NULL);"
)
"""What a SQLite store made before schemas were numbered (``meta.schema`` = '1')
may lack of step 1: each table was created only if missing, and revocations came
last, so a store from before revocations is marked '1' without that table.
Migrating it applied steps 2 and 3 only and left a store marked 3 that every
admin command refused and on which ``admin revoke`` failed."""


@dataclass(frozen=True)
class Migration:
    version: int
    what: str
    sqlite: str
    postgresql: str


MIGRATIONS = (
    Migration(
        1,
        "controllers, orders, nodes, transactions and revocations",
        _TABLES.format(blob="BLOB", serial="INTEGER PRIMARY KEY AUTOINCREMENT"),
        _TABLES.format(blob="BYTEA", serial="BIGSERIAL PRIMARY KEY"),
    ),
    Migration(
        2,
        "an index of open transactions (pending counts without a table scan)",
        _OPEN_INDEX,
        _OPEN_INDEX,
    ),
    Migration(
        3,
        "each order's wire profile (1 paper, 2 compact; orders made before it are 1)",
        _ORDER_VERSION,
        _ORDER_VERSION,
    ),
)
LATEST = MIGRATIONS[-1].version

# The tables a store holds, in an order that satisfies their foreign keys.
TABLES = ("controllers", "installers", "orders", "nodes", "transactions", "revocations")


class SchemaMismatch(StoreError):
    """The store's schema is not the one this keystrap works with."""


def steps_after(version: int) -> list[Migration]:
    return [m for m in MIGRATIONS if m.version > version]


def require_latest(version: int, where: str) -> None:
    if version < LATEST:
        raise SchemaMismatch(
            f"{where}: schema version {version}, this keystrap needs {LATEST}: "
            "back it up, then run `keystrap admin migrate`"
        )
    if version > LATEST:
        raise SchemaMismatch(
            f"{where}: schema version {version} was written by a newer keystrap "
            f"(this one knows up to {LATEST}); left untouched"
        )
