"""``keystrap admin migrate-store``: a whole site from one store into another.

Rows are copied as stored -- every key stays wrapped under the same master key,
so nothing is unwrapped on the way and no node needs enrolling again. The
target must be empty (an operator's data is never merged into or overwritten),
and after the copy each table is counted on both sides.
"""

from __future__ import annotations

from pathlib import Path

from keystrap.store.errors import StoreError
from keystrap.store.migrations import TABLES
from keystrap.store.open import Repository, open_store
from keystrap.store.postgres_url import is_postgres_url, redacted


def move_store(source: Repository, target: str, master_key: bytes) -> dict[str, int]:
    """Copy ``source`` into the empty store ``target`` (a path or URL); returns
    the number of rows per table, equal on both sides."""
    if not _exists_empty(target):
        raise StoreError(f"{redacted(target)} is not empty: migrate-store only fills a new store")
    destination = open_store(target, master_key)
    try:
        if not destination.is_empty():
            raise StoreError(
                f"{redacted(target)} is not empty: migrate-store only fills a new store"
            )
        destination.load({table: list(source.rows(table)) for table in TABLES})
        counts = {table: source.count_rows(table) for table in TABLES}
        copied = {table: destination.count_rows(table) for table in TABLES}
    finally:
        destination.close()
    if copied != counts:
        raise StoreError(f"copy incomplete: {copied} rows in the target, {counts} in the source")
    return counts


def _exists_empty(target: str) -> bool:
    """A SQLite target must be a new file: any existing file is someone's data."""
    return is_postgres_url(target) or not Path(target).exists()
