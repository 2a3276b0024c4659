"""What the rest of keystrap needs to know about a PostgreSQL URL, apart from
:mod:`keystrap.store.postgres_repository`: that module loads psycopg (a third of
a second), which only a command that opens a PostgreSQL store should pay."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from keystrap.config import POSTGRES


def is_postgres_url(database: object) -> bool:
    return isinstance(database, str) and database.startswith(POSTGRES)


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
