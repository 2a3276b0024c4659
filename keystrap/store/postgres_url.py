"""What the rest of keystrap needs to know about a PostgreSQL URL, apart from
:mod:`keystrap.store.postgres_repository`: that module loads psycopg (a third of
a second), which only a command that opens a PostgreSQL store should pay.

A URL may hold a password (``user:PASSWORD@`` or ``?password=``), and
docs/deployment.md promises it is never logged: every message, log line or
printed configuration that names a store goes through :func:`redacted`, and any
text that libpq or urllib wrote about the URL through :func:`scrubbed`.

This module imports nothing of keystrap's: :mod:`keystrap.config` checks a
database value with it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

POSTGRES = ("postgresql://", "postgres://")
MASK = "***"

# What makes a database value a URL rather than a SQLite file: RFC 3986's
# scheme followed by "://". A path meant to look like one can start with "./".
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
# libpq's query parameters whose value is a secret. ``passfile`` names a file
# and is shown; ``sslpassword`` unlocks the client's TLS key and is not.
_SECRET_PARAMETERS = frozenset({"password", "sslpassword"})
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PARAMETER = re.compile(r"(?<=[?&])[^?&]*")  # what follows each ? or &
_QUOTED = re.compile(r"\s*(?:as\s+)?(?:'[^']*'|\"[^\"]*\")")


def is_postgres_url(database: object) -> bool:
    return isinstance(database, str) and database.startswith(POSTGRES)


def looks_like_url(database: str) -> bool:
    """``scheme://...``: never a SQLite file, whatever the scheme."""
    return _SCHEME.match(database) is not None


def check_database(database: str) -> None:
    """Refuse (ValueError) a database value that looks like a URL but is no
    PostgreSQL URL libpq can read, before anything is opened or created: an
    unknown scheme was taken as a SQLite path (``mysql://x/y`` made directories
    ``mysql:/x/y`` and a store in them).

    The scheme must be lower case. libpq compares ``postgresql://`` and
    ``postgres://`` byte for byte, so ``POSTGRESQL://`` is an error of its own
    ("missing "=" after ... in connection info string", quoting the whole URL and
    its password); refusing it here with the spelling libpq wants is clearer
    than rewriting the scheme behind the operator's back.

    A message never quotes the URL: it may hold a password."""
    match = _SCHEME.match(database)
    if match is None:
        return  # a SQLite file
    scheme = match.group(1)
    if not database.startswith(POSTGRES):
        if scheme.lower() in ("postgresql", "postgres"):
            raise ValueError(
                f"write the scheme {scheme}:// in lower case, {scheme.lower()}:// "
                "(libpq reads no other spelling)"
            )
        raise ValueError(
            f"unknown scheme {scheme}:// (a database is a SQLite file or a postgresql:// URL)"
        )
    _check_postgres_url(database)


def _check_postgres_url(url: str) -> None:
    """A URL that cannot be parsed fails at start, before the master key is made;
    urllib's message loses what it quotes, which may be a password."""
    if _BAD_PERCENT.search(url):
        raise ValueError(
            "not a valid PostgreSQL URL (a % not followed by two hex digits; "
            "a % in a password is written %25)"
        )
    if "%00" in url:
        raise ValueError("not a valid PostgreSQL URL (%00 is not allowed)")
    try:
        port = urlsplit(url).port
    except ValueError as exc:
        hint = "; a : / ? # or @ in a user name or password is percent-encoded"
        problem = _unquoted(str(exc)) + (hint if "Port" in str(exc) else "")
        raise ValueError(f"not a valid PostgreSQL URL ({problem})") from None
    if port == 0:
        raise ValueError("not a valid PostgreSQL URL (port 0)")


def _unquoted(message: str) -> str:
    return _QUOTED.sub("", message).strip() or "cannot be parsed"


def _secret_spans(url: str) -> list[tuple[int, int]]:
    """Where ``url`` holds secrets: the password of its user information and the
    values of its ``password`` and ``sslpassword`` parameters.

    Read as libpq and urllib might both read a URL someone got wrong. The user
    information ends at the last ``@`` before the path or the query, whichever
    comes later: libpq reads ``u:pa?ss@h`` as the password ``pa?ss``, and an
    unencoded ``/`` (``u:pa/ss@h``) still marks where the password ended. Every
    ``?`` or ``&`` may begin a parameter, and one without ``=`` after a secret
    one is more of the secret (an unencoded ``&`` in ``password=a&b``). Masking
    too much of a strange URL costs a clear message; too little, the password."""
    match = _SCHEME.match(url)
    if match is None:
        return []
    start = match.end()
    slash, query = (url.find(c, start) for c in "/?")  # -1: none
    authority_end = max(len(url) if i < 0 else i for i in (slash, query))
    at = url.rfind("@", start, authority_end)
    spans: list[tuple[int, int]] = []
    if at >= 0:
        colon = url.find(":", start, at)
        if colon >= 0:
            spans.append((colon + 1, at))
    secret = False
    for piece in _PARAMETER.finditer(url, start):
        key, equals, _ = piece.group().partition("=")
        if equals:
            secret = unquote(key).strip().lower() in _SECRET_PARAMETERS
            if secret:
                spans.append((piece.start() + len(key) + 1, piece.end()))
        elif secret:
            spans.append(piece.span())
    return sorted(spans)


def redacted(url: str) -> str:
    """The URL with each secret shown as ``***``, for messages, logs and the
    printed configuration; never raises, whatever the text (a URL that cannot
    be parsed is just what an error message names)."""
    parts: list[str] = []
    done = 0
    for begin, end in _secret_spans(url):
        if begin >= done:
            parts += [url[done:begin], MASK]
        done = max(done, end)
    return "".join(parts) + url[done:]


def scrubbed(message: str, url: str, also: Iterable[str] = ()) -> str:
    """``message`` (libpq's or urllib's, about ``url``) without the URL's
    secrets, as written in it or percent-decoded. libpq quotes what it could not
    parse (``invalid percent-encoded token: "S3CRET%zz"``), sometimes the whole
    URL; a quoted piece of a secret (libpq read ``u:pa/ss@h`` as the port
    ``pa``) goes too. ``also``: the secrets as libpq itself parsed them."""
    secrets = {secret for secret in also if secret}
    for begin, end in _secret_spans(url):
        text = url[begin:end]
        secrets.update(t for t in (text, unquote(text)) if t)
    if not secrets:
        return message
    for secret in sorted(secrets, key=len, reverse=True):
        message = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", MASK, message)

    def quoted(found: re.Match[str]) -> str:
        inner = found.group(2)
        if len(inner) >= 3 and any(inner in s for s in secrets):
            return f"{found.group(1)}{MASK}{found.group(1)}"
        return found.group(0)

    return re.sub(r"([\"'])([^\"']*)\1", quoted, message)
