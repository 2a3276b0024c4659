"""Which key repository a server configuration names: a SQLite file (the
embedded default) or a PostgreSQL database shared by several servers.

psycopg is imported only when a PostgreSQL store is opened: loading it takes
longer than most commands of a SQLite site take to run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from keystrap.config import ServerConfig
from keystrap.store.errors import StoreError
from keystrap.store.postgres_url import check_database, looks_like_url, redacted
from keystrap.store.sqlite_repository import SqliteRepository

if TYPE_CHECKING:
    from keystrap.store.postgres_repository import PostgresRepository

Repository: TypeAlias = "SqliteRepository | PostgresRepository"


def open_repository(
    config: ServerConfig, master_key: bytes, *, migrate: bool = False, read_only: bool = False
) -> Repository:
    """``read_only``: an existing store as it is (the repositories' constructors)."""
    if isinstance(config.database, str):
        from keystrap.store.postgres_repository import PostgresRepository

        is_postgres(config.database)  # a ServerConfig made without load_config too
        return PostgresRepository(
            config.database,
            master_key,
            max_pending=config.max_pending,
            migrate=migrate,
            read_only=read_only,
        )
    return SqliteRepository(config.database, master_key, migrate=migrate, read_only=read_only)


def open_store(database: Path | str, master_key: bytes) -> Repository:
    """A store named by a path or URL alone (``admin migrate-store --to``)."""
    if isinstance(database, str) and is_postgres(database):
        from keystrap.store.postgres_repository import PostgresRepository

        return PostgresRepository(database, master_key)
    return SqliteRepository(Path(database), master_key)


def is_postgres(database: str) -> bool:
    """True for a PostgreSQL URL libpq can read, False for no URL at all (a
    SQLite file); any other ``scheme://`` is one line naming it
    (redacted), before anything is created. Checked here as well as in
    :func:`keystrap.config.load_config` because a store named on its own (the
    target of ``migrate-store --to``) never passes through a configuration, and
    ``mysql://x/y`` was made a SQLite store in directories ``mysql:/x/y``."""
    try:
        check_database(database)
    except ValueError as exc:
        raise StoreError(f"{redacted(database)}: {exc}") from None
    return looks_like_url(database)


BACKUP_ON_POSTGRES = "docs/deployment.md § 6, Backups"
CONSOLE_ON_POSTGRES = "docs/deployment.md § 8, The console and PostgreSQL"


def sqlite_file(config: ServerConfig, purpose: str, instead: str) -> Path:
    """The SQLite file of a command that only works on one (backup files, the
    console's users), or one clear line saying so and what does the same on
    PostgreSQL (``instead``, naming the section of docs/deployment.md that says
    it: a pointer to the whole document left the operator searching)."""
    if isinstance(config.database, str):
        raise StoreError(
            f"{purpose} works on a SQLite store; this site's store is PostgreSQL: {instead}"
        )
    return config.database


def local_state(config: ServerConfig) -> Path:
    """Where one server keeps what is its own: the instance lock and the activity
    log. Beside a SQLite store, that is the store itself; servers sharing a
    PostgreSQL store each keep a small file of their own next to the master key,
    one per port (the UDP bind already allows one server per port)."""
    if isinstance(config.database, str):
        return config.master_key.with_name(f"sbs-{config.port}-local.sqlite")
    return config.database
