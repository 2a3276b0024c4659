"""No input ends in a traceback (issue #11, item 3).

The property test walks the real argument parser, so a subcommand added later is
covered without touching this file: every leaf command gets, for each argument
that names a file, a pre-existing bad file (random bytes, a truncated or
corrupted SQLite store, text with control characters, a directory), and for
other arguments either nothing or a bad value. Whatever the mix, the command
must end with status 2, one line on stderr naming something it was given, no
traceback, and every file as it was.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from keystrap.cli.main import build_parser, main
from keystrap.cli.oob import MAX_SIGNAL
from keystrap.config import MAX_CONFIG
from keystrap.enrolment import MAX_BUNDLE
from keystrap.oob.frame import MAX_FLIGHT
from keystrap.store.node_file import MAX_NODE_FILE
from keystrap_lab.processes import free_udp_port

HARDWARE = {"camera", "record", "tag", "play"}  # would open a camera, microphone or reader


def leaf_commands(
    parser: argparse.ArgumentParser, path: tuple[argparse.ArgumentParser, ...] = ()
) -> Iterator[tuple[argparse.ArgumentParser, ...]]:
    """Every runnable command, as the chain of parsers from ``keystrap`` down."""
    chain = (*path, parser)
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs or not subs[0].required:
        yield chain
    for sub in subs:
        for child in dict.fromkeys(sub.choices.values()):
            yield from leaf_commands(child, chain)


def command_name(chain: tuple[argparse.ArgumentParser, ...]) -> str:
    return chain[-1].prog


COMMANDS = list(leaf_commands(build_parser()))


BAD_FILE_KINDS = ("bytes", "truncated", "corrupted", "text", "dir")
NOT_A_DATABASE = ("bytes", "text", "dir")
"""What a ``--database`` is given to be bad: text would name a new SQLite file,
which the server rightly creates and serves, and a store with a few bytes
flipped may still open."""


class BadFiles:
    """Makes the bad files of one example and remembers what they held."""

    def __init__(self, root: Path, draw: st.DrawFn, store: bytes) -> None:
        self.root = root
        self.draw = draw
        self.store = store
        self.names: list[str] = []

    def make(self, dest: str, kinds: tuple[str, ...] = BAD_FILE_KINDS) -> str:
        path = self.root / f"bad-{dest}-{len(self.names)}"
        self.names.append(path.name)
        kind = self.draw(st.sampled_from(kinds))
        if kind == "dir":
            path.mkdir()
            (path / "inside").write_bytes(b"x")
        elif kind == "bytes":
            path.write_bytes(self.draw(st.binary(min_size=1, max_size=300)))
        elif kind == "text":
            path.write_text(self.draw(st.text(min_size=1, max_size=80)) + "\x00\x1b")
        else:
            cut = self.draw(st.integers(1, len(self.store) - 1))
            data = bytearray(self.store[:cut] if kind == "truncated" else self.store)
            if kind == "corrupted":
                for _ in range(8):
                    data[self.draw(st.integers(100, len(data) - 1))] ^= 0xFF
            path.write_bytes(bytes(data))
        return str(path)


# Values no option of that type accepts (a count of 70000 nodes would be valid).
BAD_INTS = st.sampled_from(["-1", "x", "", "1e3", "0x10"])
BAD_FLOATS = st.sampled_from(["-1", "nan", "inf", "-inf", "x", ""])
CONTROL_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30).map(
    lambda t: t + "\x07\n"
)
SOME_TEXT = CONTROL_TEXT | st.sampled_from(
    ["02:00:00:00:00:00:00:01", "zz", "1-2", "unix:", "coap://[", "-", "70000"]
)


@st.composite
def command_lines(draw: st.DrawFn, root: Path) -> tuple[list[str], list[str]]:
    """``(argv, tokens)``: a command line with at least one bad argument, and what
    its error message may name."""
    chain = draw(st.sampled_from(COMMANDS))
    files = BadFiles(root, draw, store_bytes())
    segments: list[list[str]] = []
    tokens: list[str] = []
    spare: list[tuple[int, argparse.Action]] = []  # options left out, to make one bad
    bad = False
    for level, parser in enumerate(chain[1:]):
        options, positionals = [parser.prog.rsplit(" ", 1)[-1]], []
        for action in parser._actions:
            if (
                action.nargs == 0
                or isinstance(action, argparse._SubParsersAction)
                or action.dest in HARDWARE
            ):
                continue
            tokens += [*action.option_strings, action.dest, action.dest.replace("_", "-")][
                : None if len(action.dest) > 3 else len(action.option_strings)
            ]
            value = _value(draw, action, files, _required(action))
            if value is None:
                if action.option_strings and action.choices is None:
                    spare.append((level, action))
                continue
            bad = bad or (action.choices is None and value not in SOME_VALID)
            tokens.append(value)
            if action.option_strings:
                options += [action.option_strings[-1], value]
            else:
                positionals.append(value)
        segments.append(options + positionals)
    if not bad:
        assume(spare)
        level, action = draw(st.sampled_from(spare))
        value = _value(draw, action, files, True, CONTROL_TEXT)
        assert value is not None
        segments[level][1:1] = [action.option_strings[-1], value]
        tokens.append(value)
    return [arg for segment in segments for arg in segment], tokens + files.names


SOME_VALID = {"02:00:00:00:00:00:00:01", "70000"}


def _required(action: argparse.Action) -> bool:
    return action.required or (not action.option_strings and action.nargs is None)


def _value(
    draw: st.DrawFn,
    action: argparse.Action,
    files: BadFiles,
    required: bool,
    text: st.SearchStrategy[str] = SOME_TEXT,
) -> str | None:
    if action.type is Path or action.dest == "database":  # a path, or a PostgreSQL URL
        if not (required or draw(st.booleans())):
            return None
        return files.make(action.dest, BAD_FILE_KINDS if action.type is Path else NOT_A_DATABASE)
    if action.choices is not None:
        choices = st.sampled_from(sorted(action.choices))
        return draw(choices if required else st.none() | choices)
    bad = BAD_INTS if action.type is int else BAD_FLOATS if action.type is float else text
    return draw(bad if required else st.none() | bad)


@functools.cache
def store_bytes() -> bytes:
    """A real server store with one controller, to truncate and corrupt."""
    root = Path(tempfile.mkdtemp(prefix="keystrap-store-"))
    db = root / "sbs.sqlite"
    argv = ["admin", "--database", str(db), "--master-key", str(root / "m.key")]
    assert (
        main([*argv, "controller", "add", "02:00:00:00:00:00:00:c0", "--key-out", str(root / "k")])
        == 0
    )
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = db.read_bytes()
    shutil.rmtree(root)
    return data


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in root.rglob("*")
    }


def escaped(text: str) -> str:
    """How a message shows a value holding control characters."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ServiceStarted(AssertionError):
    pass


def refuse_to_serve(ready: object = None) -> None:
    raise ServiceStarted("a command given only bad input started serving")


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_every_command_fails_cleanly_on_bad_input(
    data: st.DataObject, monkeypatch: pytest.MonkeyPatch
) -> None:
    for service in ("lifetime", "server", "controller", "node_agent"):  # each imported it
        monkeypatch.setattr(f"keystrap.services.{service}.wait_for_signal", refuse_to_serve)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        monkeypatch.chdir(root)
        argv, tokens = data.draw(command_lines(root))
        before = snapshot(root)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(argv)
        after = {k: v for k, v in snapshot(root).items() if k in before}
    text = err.getvalue()
    assert status == 2, (argv, text)
    assert "Traceback" not in text
    assert text.count("\n") == 1 and text.endswith("\n"), (argv, text)
    assert text.startswith("keystrap") and ": error: " in text
    forms = [(t, escaped(t), repr(t)[1:-1]) for t in tokens if t]
    assert any(form in text for group in forms for form in group), (argv, text)
    assert after == before, argv


def test_every_command_is_reached() -> None:
    names = {command_name(chain) for chain in COMMANDS}
    assert {"keystrap server", "keystrap controller", "keystrap controller nodes"} <= names
    assert {"keystrap node", "keystrap install", "keystrap oob decode"} <= names
    assert len([n for n in names if n.startswith("keystrap admin ")]) >= 10


def test_every_argument_and_command_has_a_help_text() -> None:
    """``keystrap oob decode --help`` listed ``--channel`` and ``admin backup --help``
    ``file`` with nothing beside them. Hidden options (retired, refused with the
    reason) are the exception, as they are not listed."""
    missing = []
    for chain in COMMANDS:
        for parser in chain:
            for action in parser._actions:
                if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
                    continue
                if isinstance(action, argparse._SubParsersAction):
                    said = {a.dest: a.help for a in action._choices_actions}
                    missing += [f"{parser.prog} {n}" for n in action.choices if not said.get(n)]
                elif not (action.help or "").strip():
                    missing.append(
                        f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
                    )
    assert sorted(set(missing)) == []


def cli(*args: str, cwd: Path | None = None, stdout: int = subprocess.PIPE) -> tuple[int, str]:
    result = subprocess.run(
        [sys.executable, "-m", "keystrap.cli.main", *args],
        cwd=cwd,
        stdout=stdout,
        stderr=subprocess.PIPE,
        timeout=60,
        check=False,
        preexec_fn=at_most_two_gib,
    )
    return result.returncode, result.stderr.decode()


def at_most_two_gib() -> None:
    """A command that reads an input without bound (/dev/zero, say) ends in a
    MemoryError, and its test fails, rather than taking the machine's memory."""
    resource.setrlimit(resource.RLIMIT_DATA, (2**31, 2**31))


def test_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    """``keystrap admin controller list | head -0``: the reader is gone before we write."""
    argv = ["admin", "--database", str(tmp_path / "db"), "--master-key", str(tmp_path / "k")]
    for n in range(3):
        assert (
            main(
                [
                    *argv,
                    "controller",
                    "add",
                    f"02:00:00:00:00:00:00:0{n}",
                    "--key-out",
                    str(tmp_path / f"sk{n}"),
                ]
            )
            == 0
        )
    read, write = os.pipe()
    os.close(read)
    status, stderr = cli(*argv, "controller", "list", stdout=write)
    os.close(write)
    assert (status, stderr) == (141, "")


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["controller", "--server", "coap://nowhere.invalid"], "nowhere.invalid"),
        (["controller", "--server", "http://x"], "coap://"),
        (["server", "--host", "nowhere.invalid", "--port", "1"], "nowhere.invalid"),
        (["server", "--window", "0"], "window"),
    ],
)
def test_services_refuse_bad_options_at_start(tmp_path: Path, args: list[str], names: str) -> None:
    """Real processes: the service exits 2 at start, not running with dead tasks."""
    (tmp_path / "keystrap-data").mkdir()
    (tmp_path / "keystrap-data" / "controller-sk.key").write_text("00" * 16 + "\n")
    (tmp_path / "keystrap-data" / "controller-sk.key").chmod(0o600)
    before = snapshot(tmp_path)
    status, line = cli(*args, cwd=tmp_path)
    assert status == 2
    assert line.count("\n") == 1 and names in line and "Traceback" not in line
    assert snapshot(tmp_path) == before


def test_a_controller_without_its_key_file_names_the_option(tmp_path: Path) -> None:
    """Found by the property test above: the default key file missing was reported
    without a word of how to give another."""
    status, line = cli("controller", cwd=tmp_path)
    assert status == 2 and line.count("\n") == 1
    assert "controller-sk.key does not exist" in line
    assert "--key-file" in line and "keystrap admin controller add" in line


def test_a_value_taken_for_an_option_is_named(tmp_path: Path) -> None:
    """Found by the property test too: argparse read '-zz' as an unknown option and
    said only that the ID was missing."""
    status, line = cli("admin", "controller", "remove", "-zz", cwd=tmp_path)
    assert status == 2 and line.count("\n") == 1
    assert "required: id" in line and "-zz taken for an option" in line and "put --" in line
    status, line = cli("admin", "controller", "remove", "--", "-zz", cwd=tmp_path)
    assert status == 2 and "not an EUI-64: '-zz'" in line


def test_a_directory_given_as_a_key_file_is_called_one(tmp_path: Path) -> None:
    """A directory's usual mode (0755) was reported as a key file readable by
    others, with a chmod that would then have failed on the next read."""
    keys = tmp_path / "keys"
    keys.mkdir()
    status, line = cli("controller", "--key-file", str(keys), cwd=tmp_path)
    assert status == 2 and line.count("\n") == 1
    assert f"key file {keys} is a directory" in line and "chmod" not in line
    assert not any(keys.iterdir())
    assert {p.name for p in tmp_path.rglob("*")} == {"keys"}  # nor the lock, nor its directory


ADD = ["controller", "add", "02:00:00:00:00:00:00:01", "--key-out", "c.key"]


@pytest.mark.parametrize(
    "args",
    [
        ["server", "--database", "file/sbs.sqlite", "--port", str(free_udp_port())],
        ["admin", "--database", "file/sbs.sqlite", *ADD],
    ],
)
def test_a_file_where_a_directory_is_needed_is_said_so_and_nothing_is_left(
    tmp_path: Path, args: list[str]
) -> None:
    """A store under a path through a regular file said only "File exists: file",
    and ``admin controller add`` left the empty ``keystrap-data/`` it had made for
    the master key behind."""
    (tmp_path / "file").write_bytes(b"mine")
    status, line = cli(*args, cwd=tmp_path)
    assert status == 2 and line.count("\n") == 1
    assert line.endswith("not a directory, so nothing can be made in it: file\n") or line.endswith(
        f"not a directory, so nothing can be made in it: {tmp_path / 'file'}\n"
    )
    assert {p.name for p in tmp_path.rglob("*")} == {"file"}
    assert (tmp_path / "file").read_bytes() == b"mine"


INPUTS = {
    "install": (["install", "INPUT", "--out", "nodes"], MAX_BUNDLE),
    "node": (["node", "INPUT"], MAX_NODE_FILE),
    "oob decode": (["oob", "decode", "--channel", "raw", "INPUT"], MAX_SIGNAL),
    "oob encode": (
        ["oob", "encode", "--channel", "raw", "--in", "INPUT", "--out", "f"],
        MAX_FLIGHT,
    ),
    "server": (["server", "--config", "INPUT"], MAX_CONFIG),
}


def listing(root: Path) -> dict[str, tuple[int, int, int]]:
    """Each entry's type, size and time of change: nothing here reads a FIFO or
    the whole of a large sparse file to compare it."""
    return {
        str(p.relative_to(root)): (p.lstat().st_mode, p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in root.rglob("*")
    }


@pytest.mark.parametrize("special", ["/dev/zero", "FIFO", "too large"])
@pytest.mark.parametrize("command", INPUTS)
def test_an_input_file_is_read_only_if_regular_and_bounded(
    tmp_path: Path, command: str, special: str
) -> None:
    """/dev/zero never ends and a FIFO without a writer never opens: as a bundle,
    node file, signal, flight or configuration each was read without end (the
    memory filled, or the command hung). Each is now refused before it is read,
    as is a regular file larger than any of its kind (a sparse one here)."""
    words, limit = INPUTS[command]
    path = Path(special) if special.startswith("/") else tmp_path / "input"
    if special == "FIFO":
        os.mkfifo(path)
    elif special == "too large":
        with path.open("wb") as handle:
            handle.truncate(limit + 1)
    before = listing(tmp_path)
    status, line = cli(*[str(path) if w == "INPUT" else w for w in words], cwd=tmp_path)
    assert status == 2 and line.count("\n") == 1 and "Traceback" not in line, line
    assert str(path) in line
    assert ("is larger than" if special == "too large" else "not a regular file") in line
    assert listing(tmp_path) == before


def test_a_key_file_or_csv_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    """A FIFO as the master key or an order's --csv blocked the command for good,
    and /dev/zero as the --csv filled the memory."""
    admin = ["admin", "--database", "sbs.sqlite", "--master-key", "mk.key"]
    controller = "02:00:00:00:00:00:00:c0"
    assert cli(*admin, "controller", "add", controller, "--key-out", "sk", cwd=tmp_path)[0] == 0
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    order = ["order", "create", "--installer", "acme", "--controller", controller, "--out", "b"]
    for args, says in (
        (["admin", "--database", "sbs.sqlite", "--master-key", "fifo", "nodes"],
         "key file fifo is a FIFO, not a regular file"),
        ([*admin, *order, "--csv", "fifo"], "--csv file fifo is a FIFO, not a regular file"),
        ([*admin, *order, "--csv", "/dev/zero"],
         "--csv file /dev/zero is a character device, not a regular file"),
    ):  # fmt: skip
        status, line = cli(*args, cwd=tmp_path)
        assert status == 2 and line.count("\n") == 1 and says in line, line
    assert not (tmp_path / "b").exists()


def test_python_dash_m_keystrap_is_the_command() -> None:
    """Where the ``keystrap`` script is not on the PATH, ``python -m keystrap``
    must be the same command, its errors included."""
    done = subprocess.run(
        [sys.executable, "-m", "keystrap", "admin", "nodes", "--database", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("keystrap: error: unrecognized arguments: --database x")
