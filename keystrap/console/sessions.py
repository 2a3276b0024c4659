"""Who is logged in, the token every form must carry, and how often a login may fail.

Sessions live in the console's memory only: a restart logs everyone out, and
the database holds nothing that would let a stolen copy of it act as a session.
The session token and the CSRF token are independent 256-bit randoms; the first
travels only in an HttpOnly SameSite=Strict cookie, the second only in forms.
"""

from __future__ import annotations

import hmac
import secrets
from collections import deque
from dataclasses import dataclass, field

SESSION_SECONDS = 8 * 3600
FAILURES_ALLOWED = 5  # per client address ...
FAILURE_WINDOW = 60.0  # ... within this many seconds
DOWNLOAD_SECONDS = 600


@dataclass
class Session:
    user: str
    csrf: str
    expires: float


@dataclass
class Download:
    """A bundle kept until its first download (or for ``DOWNLOAD_SECONDS``)."""

    user: str
    filename: str
    data: bytes
    expires: float


@dataclass
class Sessions:
    _sessions: dict[str, Session] = field(default_factory=dict)
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _downloads: dict[str, Download] = field(default_factory=dict)

    def open(self, user: str, now: float) -> str:
        self._expire(now)
        token = secrets.token_urlsafe(32)
        self._sessions[token] = Session(user, secrets.token_urlsafe(32), now + SESSION_SECONDS)
        return token

    def get(self, token: str | None, now: float) -> Session | None:
        session = None if token is None else self._sessions.get(token)
        if session is None or session.expires < now:
            return None
        return session

    def close(self, token: str | None) -> None:
        if token is not None:
            self._sessions.pop(token, None)

    @staticmethod
    def csrf_ok(session: Session, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(session.csrf.encode(), sent.encode())

    def login_attempt(self, client: str, now: float) -> bool:
        """False if ``client`` has no failure left; else this attempt counts as a
        failure until :meth:`login_succeeded` takes it back. It counts before the
        password is checked: the check takes 50 ms in a thread, and counted only
        after it, any number of guesses sent at once all passed this test."""
        recent = self._failures.setdefault(client, deque())
        while recent and recent[0] < now - FAILURE_WINDOW:
            recent.popleft()
        if len(recent) >= FAILURES_ALLOWED:
            return False
        recent.append(now)
        return True

    def login_succeeded(self, client: str, now: float) -> None:
        """The attempt :meth:`login_attempt` counted at ``now`` was no failure."""
        recent = self._failures.get(client)
        if recent is not None and now in recent:
            recent.remove(now)

    def offer(self, user: str, filename: str, data: bytes, now: float) -> str:
        self._expire(now)
        token = secrets.token_urlsafe(32)
        self._downloads[token] = Download(user, filename, data, now + DOWNLOAD_SECONDS)
        return token

    def offered(self, user: str, token: str, now: float) -> Download | None:
        """The download if ``user`` may still take it, left in place."""
        download = self._downloads.get(token)
        if download is None or download.user != user or download.expires < now:
            return None
        return download

    def take(self, user: str, token: str, now: float) -> Download | None:
        """The download, removed: a bundle can be fetched once, by whoever created it."""
        download = self.offered(user, token, now)
        if download is not None:
            del self._downloads[token]
        return download

    def _expire(self, now: float) -> None:
        for table in (self._sessions, self._downloads):
            for key in [k for k, v in table.items() if v.expires < now]:
                del table[key]
