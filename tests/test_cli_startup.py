"""``keystrap`` starts without the libraries a command does not use: psycopg only
for a PostgreSQL store, the console's web stack only for ``keystrap console``,
aiocoap only for a command that goes on the network. Each of them adds a tenth
of a second or more to every start, and the tests start hundreds of commands.
A fresh interpreter per case: this test process has loaded all of them. (That
a PostgreSQL store still opens is tests/test_postgres_cli.py's.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("psycopg", "starlette", "uvicorn", "jinja2", "aiocoap", "keystrap.console")
STORE = ("keystrap.protocol", "keystrap.store.sqlite_repository", "cryptography")


def loaded_by(argv: list[str], cwd: Path, watched: tuple[str, ...] = HEAVY) -> list[str]:
    code = f"""
import contextlib, json, sys
from keystrap.cli.main import main
with contextlib.suppress(SystemExit):
    status = main({argv!r})
    assert status == 0, status
print(json.dumps(sorted(m for m in {watched!r} if m in sys.modules)))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.splitlines()[-1])
    return loaded


@pytest.mark.parametrize(
    "argv", [["--help"], ["server", "--print-config"], ["admin", "controller", "--help"]]
)
def test_parsing_loads_none_of_them_nor_the_store(argv: list[str], tmp_path: Path) -> None:
    assert loaded_by(argv, tmp_path, HEAVY + STORE) == []


def test_an_admin_command_on_a_sqlite_store_loads_none_of_them(tmp_path: Path) -> None:
    store = ["admin", "--database", "sbs.sqlite", "--master-key", "master.key"]
    add = [*store, "controller", "add", "02:00:00:00:00:00:00:c0", "--key-out", "sk.key"]
    assert loaded_by(add, tmp_path) == []
    assert loaded_by([*store, "nodes"], tmp_path) == []
    assert (tmp_path / "sbs.sqlite").is_file()  # the commands did run
