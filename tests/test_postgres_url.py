"""A database password never shows (docs/deployment.md), and a database value
that looks like a URL is a PostgreSQL URL or refused.

No PostgreSQL server is needed: every error here happens before or at the
connection, to a socket directory that does not exist (refused at once)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from keystrap.cli.main import main
from keystrap.config import ConfigError, ServerConfig, load_config
from keystrap.store.errors import StoreError
from keystrap.store.open import open_repository, open_store
from keystrap.store.postgres_repository import PostgresRepository
from keystrap.store.postgres_url import redacted, scrubbed

MASTER = bytes(range(16))
NOWHERE = "host=/nonexistent"  # a socket directory that is not there: refused at once


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://u:pw@h:5432/db?sslmode=require",
            "postgresql://u:***@h:5432/db?sslmode=require",
        ),
        ("postgresql://u@h:1/db?password=s3cr3tpw", "postgresql://u@h:1/db?password=***"),
        (
            "postgresql://u@/sbs?host=/nonexist&password=S3CRETPW",
            "postgresql://u@/sbs?host=/nonexist&password=***",
        ),
        (
            "postgres://u@/x?passfile=/etc/pg.pass&sslpassword=K3Y&sslmode=verify-full",
            "postgres://u@/x?passfile=/etc/pg.pass&sslpassword=***&sslmode=verify-full",
        ),
        ("postgresql://u@/x?pass%77ord=s3cr3tpw", "postgresql://u@/x?pass%77ord=***"),
        ("postgresql://u@/x?password=a&s3cr3t&port=5", "postgresql://u@/x?password=***&***&port=5"),
        ("postgresql://u:s3cr3t?pw@h/x", "postgresql://u:***@h/x"),  # libpq's password: s3cr3t?pw
        ("postgresql://u:S3CRET@[bad/db", "postgresql://u:***@[bad/db"),  # urllib cannot parse it
        ("postgresql://u@[bad/db", "postgresql://u@[bad/db"),
        ("postgresql://h/db", "postgresql://h/db"),
        ("keystrap-data/sbs.sqlite", "keystrap-data/sbs.sqlite"),
    ],
)
def test_redacted_masks_every_password_of_a_url(url: str, shown: str) -> None:
    assert redacted(url) == shown


def test_scrubbed_takes_the_password_out_of_libpq_messages() -> None:
    url = "postgresql://u:S3CRET%zz@[bad/db"
    message = f'invalid percent-encoded token: "S3CRET%zz" in URI: "{url}"'
    assert scrubbed(message, url) == (
        'invalid percent-encoded token: "***" in URI: "postgresql://u:***@[bad/db"'
    )
    decoded = "postgresql://u:p%41ss%2Fword@h/x"
    assert "pAss/word" not in scrubbed('user "u", password "pAss/word"', decoded)
    plain = 'connection to server at "h", port 5432 failed: Connection refused'
    assert scrubbed(plain, "postgresql://u:port@h/x") == plain.replace("port 5432", "*** 5432")


def master_key(tmp_path: Path) -> Path:
    path = tmp_path / "mk.key"
    path.write_text(secrets.token_hex(16) + "\n")
    os.chmod(path, 0o600)
    return path


@pytest.mark.parametrize("command", [["admin", "nodes"], ["server", "--port", "47070"]])
def test_a_password_in_the_query_never_reaches_the_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    url = f"postgresql://u@/sbs?{NOWHERE}&password=S3CRETPW&sslpassword=K3YPW"
    key = str(master_key(tmp_path))
    where = ["--database", url, "--master-key", key]
    argv = [command[0], *where, *command[1:]] if command[0] == "admin" else [*command, *where]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot open database" in err and "password=***&sslpassword=***" in err
    assert "S3CRETPW" not in err and "K3YPW" not in err


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:S3CRET%zz@/x",  # libpq: invalid percent-encoded token: "S3CRET%zz"
        f"postgresql://u@/x?{NOWHERE}&password=a&S3CRET",  # libpq: ... parameter: "S3CRET"
        "postgresql://u:S3CRET@[bad/db",  # libpq quotes the whole URL
        f"postgresql://u@/x?{NOWHERE}&password=S3CRET%00",  # forbidden value %00 in "S3CRET%00"
    ],
)
def test_libpq_cannot_parse_the_url_and_the_message_keeps_the_password_out(url: str) -> None:
    with pytest.raises(StoreError, match="not a valid PostgreSQL URL") as refused:
        PostgresRepository(url, MASTER)
    assert "S3CRET" not in str(refused.value) and "cannot open database" in str(refused.value)


@pytest.mark.parametrize(
    ("database", "problem"),
    [
        ("postgresql://u:S3CRET%zz@/x", "a % not followed by two hex digits"),
        ("postgresql://u@/x?password=S3CRET%00", "%00 is not allowed"),
        ("postgresql://u:S3CRET?x@h/x", "Port could not be cast to integer value; a : / ?"),
        ("mysql://x/y", "unknown scheme mysql://"),
        (
            "POSTGRESQL://u:S3CRET@h/x",
            "write the scheme POSTGRESQL:// in lower case, postgresql://",
        ),
        ("Postgres://h/x", "in lower case, postgres://"),
    ],
)
def test_a_database_value_that_is_no_usable_url_is_refused_by_the_configuration(
    tmp_path: Path, database: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match="database: ") as refused:
        load_config(ServerConfig, None, {"database": database})
    assert problem in str(refused.value) and "S3CRET" not in str(refused.value)
    (tmp_path / "s.toml").write_text(f'[server]\ndatabase = "{database}"\n')
    with pytest.raises(ConfigError, match=problem.split(";")[0].replace("?", "\\?")):
        load_config(ServerConfig, tmp_path / "s.toml", {})
    assert not (tmp_path / "mysql:").exists()
    with pytest.raises(StoreError, match=problem.split(";")[0].replace("?", "\\?")):
        open_repository(ServerConfig(database=database), MASTER)  # no load_config on the way


def test_print_config_shows_the_database_url_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql://u:s3cr3tpw@h/db?sslpassword=K3YPW&passfile=/etc/pg.pass"
    assert main(["server", "--database", url, "--print-config"]) == 0
    out = capsys.readouterr().out
    assert 'database = "postgresql://u:***@h/db?sslpassword=***&passfile=/etc/pg.pass"' in out
    assert "s3cr3tpw" not in out and "K3YPW" not in out


def test_a_database_with_control_characters_is_refused_redacted() -> None:
    with pytest.raises(ConfigError, match="printable") as refused:
        load_config(ServerConfig, None, {"database": "postgresql://u:S3CRET@h/x\tz"})
    assert "S3CRET" not in str(refused.value) and "u:***@h" in str(refused.value)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A SQLite site with one controller, in the current directory."""
    monkeypatch.chdir(tmp_path)
    flags = ["admin", "--database", "sbs.sqlite", "--master-key", "mk.key"]
    add = ["controller", "add", "02:00:00:00:00:00:00:c0", "--key-out", "sk.key"]
    assert main([*flags, *add]) == 0
    return flags


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("mysql://x/y", "mysql://x/y: unknown scheme mysql://"),
        ("POSTGRESQL://u@/x", "POSTGRESQL://u@/x: write the scheme POSTGRESQL:// in lower case"),
        (
            "postgresql://u@[bad/db",
            "postgresql://u@[bad/db: not a valid PostgreSQL URL (Invalid IPv6",
        ),
        ("postgresql://u:S3CRET@[bad/db", "postgresql://u:***@[bad/db: not a valid PostgreSQL URL"),
        ("postgresql://u:S3CRET%zz@/x", "postgresql://u:***@/x: not a valid PostgreSQL URL (a %"),
    ],
)
def test_migrate_store_names_a_target_it_cannot_use_and_creates_nothing(
    site: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str, message: str
) -> None:
    before = sorted(tmp_path.rglob("*"))
    assert main([*site, "migrate-store", "--to", target]) == 2
    err = capsys.readouterr().err
    assert message in err and "S3CRET" not in err and len(err.splitlines()) == 1
    assert sorted(tmp_path.rglob("*")) == before  # no ./mysql:/x/y, no store in it
    with pytest.raises(StoreError, match=message.split(": ")[1].split(" (")[0]):
        open_store(target, MASTER)


def test_a_new_sqlite_target_is_still_a_path(site: list[str], tmp_path: Path) -> None:
    assert main([*site, "migrate-store", "--to", "moved/sbs.sqlite"]) == 0
    assert (tmp_path / "moved" / "sbs.sqlite").is_file()
