"""Administrator accounts of the console, in the server's database.

Passwords are stored as scrypt hashes (RFC 7914, n=2^14, r=8, p=1, 16-byte
salt): about 50 ms and 16 MiB per guess, which is what makes a stolen database
expensive to crack. A login for an unknown name costs the same hash, so timing
does not tell which names exist.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from pathlib import Path

from keystrap.store.errors import StoreError
from keystrap.store.sqlite import connect_read_only, open_database, write_transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS console_users (
    name TEXT PRIMARY KEY, password TEXT NOT NULL, created INTEGER NOT NULL);
"""
N, R, P = 2**14, 8, 1
MIN_PASSWORD = 10
NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_DUMMY = f"scrypt${N}${R}${P}${'00' * 16}${'00' * 32}"


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, dklen=32)
    return f"scrypt${N}${R}${P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        found = hashlib.scrypt(
            password.encode(),
            salt=bytes.fromhex(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=32,
            maxmem=64 * 1024 * 1024,
        )
    except ValueError:
        return False
    return hmac.compare_digest(found, bytes.fromhex(digest))


class Users:
    def __init__(self, database: Path, *, read_only: bool = False) -> None:
        """``read_only`` (listing them): the store as it is; without the table
        that an account's first use creates, there are none."""
        if read_only:
            self._db = connect_read_only(Path(database))
        else:
            self._db = open_database(Path(database), SCHEMA)

    def close(self) -> None:
        self._db.close()

    def add(self, name: str, password: str) -> None:
        if not NAME.fullmatch(name):
            raise ValueError("a user name is 1-64 letters, digits or _ . @ -")
        if len(password) < MIN_PASSWORD:
            raise ValueError(f"the password must have at least {MIN_PASSWORD} characters")
        with write_transaction(self._db) as db:
            if db.execute("SELECT 1 FROM console_users WHERE name=?", (name,)).fetchone():
                raise StoreError(f"user {name!r} already exists")
            db.execute(
                "INSERT INTO console_users VALUES (?, ?, ?)",
                (name, hash_password(password), int(time.time())),
            )

    def remove(self, name: str) -> None:
        with write_transaction(self._db) as db:
            if db.execute("DELETE FROM console_users WHERE name=?", (name,)).rowcount == 0:
                raise StoreError(f"no user {name!r}")

    def names(self) -> list[str]:
        made = "SELECT 1 FROM sqlite_schema WHERE type='table' AND name='console_users'"
        if self._db.execute(made).fetchone() is None:
            return []
        return [row[0] for row in self._db.execute("SELECT name FROM console_users ORDER BY name")]

    def authenticate(self, name: str, password: str) -> bool:
        return password_matches(password, self.password_of(name))

    def password_of(self, name: str) -> str | None:
        """The stored hash of ``name``'s password, None if there is no such user.
        Apart from :func:`password_matches` so that the console can read it on its
        store's thread and spend the hash's 50 ms on another."""
        row = self._db.execute(
            "SELECT password FROM console_users WHERE name=?", (name,)
        ).fetchone()
        return None if row is None else str(row[0])


def password_matches(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches ``stored``; for no user (None), as long to say no."""
    ok = check_password(password, _DUMMY if stored is None else stored)
    return ok and stored is not None
