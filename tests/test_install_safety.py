"""``keystrap install`` on a bad day: what it may replace, and what a failure takes back."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from keystrap.cli.main import main
from keystrap.enrolment import Order, bundle_bytes, install_bundle
from keystrap.services.instance import InstanceLock
from keystrap.store.errors import StoreError
from keystrap_lab.processes import keystrap_command

CONTROLLER = bytes.fromhex("02000000000000c0")


def bundle(tmp_path: Path, count: int) -> Path:
    ids = [bytes.fromhex(f"02000000000001{n:02x}") for n in range(count)]
    shared = secrets.token_bytes(16)
    order = Order(
        1, "acme", CONTROLLER, "127.0.0.1", 5683, "unix:oob.sock", "shared", shared,
        dict.fromkeys(ids, shared),
    )  # fmt: skip
    path = tmp_path / "bundle.json"
    path.write_bytes(bundle_bytes(order))
    return path


def test_a_node_file_it_cannot_read_is_never_replaced(tmp_path: Path) -> None:
    """A node file edited by hand (or written by a newer keystrap) may hold the
    node's only PSK: even --force leaves it as it is."""
    source = bundle(tmp_path, 1)
    (written,) = install_bundle(source, tmp_path / "nodes")
    doc = json.loads(written.read_text())
    doc.update(stage="keyed", session_key=secrets.token_hex(16), confirmed=True)
    doc["settings"] = {"application": {"unknown_setting": 1}}
    edited = json.dumps(doc).encode()
    written.write_bytes(edited)
    with pytest.raises(StoreError, match=r"never replaces a node file it cannot read.*--factory"):
        install_bundle(bundle(tmp_path, 1), tmp_path / "nodes", force=True)
    assert written.read_bytes() == edited


def test_a_node_file_that_does_not_load_can_still_be_factory_reset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Install never replaces a node file it cannot read: a factory reset that
    refused it too left the operator no way out. A file that does not say it
    is a node file is still refused and kept."""
    source = bundle(tmp_path, 1)
    (written,) = install_bundle(source, tmp_path / "nodes")
    doc = json.loads(written.read_text())
    doc.update(stage="keyed", session_key=secrets.token_hex(16), confirmed=True)
    written.write_text(json.dumps(doc))
    assert main(["node", str(written), "--factory-reset"]) == 0
    assert "node 02:00:00:00:00:00:01:00: factory reset" in capsys.readouterr().out
    reset = json.loads(written.read_text())
    assert reset == {"format": "keystrap-node-reset/1", "node_id": doc["node_id"]}
    assert install_bundle(source, tmp_path / "nodes", force=True) == [written]

    unnamed = tmp_path / "unnamed.json"
    unnamed.write_text(json.dumps({**doc, "node_id": "not hex"}))
    assert main(["node", str(unnamed), "--factory-reset"]) == 0
    assert json.loads(unnamed.read_text()) == {"format": "keystrap-node-reset/1"}

    for foreign in ('{"format": "something-else"}', "not json"):
        other = tmp_path / "other.json"
        other.write_text(foreign)
        assert main(["node", str(other), "--factory-reset"]) == 2
        assert other.read_text() == foreign
        assert capsys.readouterr().err.count("\n") == 1


def test_force_replaces_a_file_larger_than_any_node_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It is no node file, so --force replaces it like any other foreign file;
    it was refused even then, for failing to be read first."""
    source = bundle(tmp_path, 1)
    out = tmp_path / "nodes"
    (expected,) = install_bundle(source, tmp_path / "elsewhere")
    large = out / expected.name
    out.mkdir()
    large.write_bytes(b"x" * (64 * 1024 + 1))
    assert main(["install", str(source), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert large.stat().st_size == 64 * 1024 + 1
    assert main(["install", str(source), "--out", str(out), "--force"]) == 0
    assert large.read_bytes() == expected.read_bytes()
    assert sorted(out.iterdir()) == [large]  # no temporary file left beside it


def test_a_failed_forced_install_keeps_the_files_it_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files this run created are taken back; one it replaced is not deleted."""
    out = tmp_path / "nodes"
    first = install_bundle(bundle(tmp_path, 3), out)
    first[1].unlink()  # the second is new on the next run, the first replaced
    calls = 0
    real_write_new = install_bundle.__globals__["write_new"]

    def failing_third(path: Path, data: bytes, *, force: bool = False) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError("disk full")
        real_write_new(path, data, force=force)

    monkeypatch.setitem(install_bundle.__globals__, "write_new", failing_third)
    with pytest.raises(OSError, match="disk full"):
        install_bundle(bundle(tmp_path, 3), out, force=True)
    assert first[0].exists() and first[2].exists()  # replaced, and not reached
    assert not first[1].exists()  # created by the run that failed


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,
        json.dumps({"format": "keystrap-bundle/1", "controller": {"id": 5}, "nodes": []}),
    ],
)
def test_a_malformed_bundle_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    source = tmp_path / "bundle.json"
    source.write_text(text)
    assert main(["install", str(source), "--out", str(tmp_path / "nodes")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(source) in err


NODE = "02:00:00:00:00:01:00"
BAD_MEMBERS: list[tuple[tuple[str, ...], object, str]] = [
    (("key_mode",), "bogus", "key_mode"),
    (("key_mode",), "per-node", "shared_key"),  # a shared key, but no key per node
    (("controller", "port"), -1, "controller.port"),
    (("controller", "port"), 99_999_999, "controller.port"),
    (("controller", "port"), "5683", "controller.port"),
    (("controller", "host"), "", "controller.host"),
    (("controller", "id"), 5, "controller.id"),
    (("nodes",), [], "nodes"),
    (("nodes",), [{"id": NODE + "01"}, {"id": NODE + "01"}], "twice"),
    (("nodes",), [{"id": NODE + "01", "key": "00" * 16}], "nodes[0].key"),
    (("nodes",), ["02:00:00:00:00:01:00:01"], "nodes[0]"),
    (("shared_key",), "00" * 15, "shared_key"),
    (("version",), 3, "version"),
    (("version",), "1", "version"),
    (("profile",), "compact", "profile"),  # the paper's version 1
    (("oob",), "tcp:127.0.0.1:1", "oob"),
    (("oob",), None, "oob"),
    (("order",), "1", "order"),
    (("installer",), ["acme"], "installer"),
]


@pytest.mark.parametrize(
    ("where", "value", "named"),
    BAD_MEMBERS,
    ids=[f"{'.'.join(where)}={value!r}" for where, value, _ in BAD_MEMBERS],
)
def test_every_bundle_member_is_checked(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    where: tuple[str, ...],
    value: object,
    named: str,
) -> None:
    """A member of the wrong type or range is named, and no node file is written:
    once written, a node file with a wrong port or key mode would carry it on."""
    source = bundle(tmp_path, 1)
    doc = json.loads(source.read_text())
    *parents, name = where
    member = doc
    for parent in parents:
        member = member[parent]
    member[name] = value
    source.write_text(json.dumps(doc))
    out = tmp_path / "nodes"
    assert main(["install", str(source), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(source) in err and named in err
    assert doc["shared_key"] not in err  # never a key in a message
    assert not out.exists()


def test_a_factory_reset_repeated_succeeds_and_leaves_the_file_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second reset (a script run twice) ended in status 2, "node was
    factory-reset; it needs enrolment": the node is in the state asked for."""
    (written,) = install_bundle(bundle(tmp_path, 1), tmp_path / "nodes")
    unnamed = tmp_path / "unnamed.json"
    unnamed.write_text('{"format": "keystrap-node-reset/1"}\n')
    assert main(["node", str(written), "--factory-reset"]) == 0
    capsys.readouterr()
    for path, named in ((written, "node 02:00:00:00:00:00:01:00"), (unnamed, str(unnamed))):
        before, stat = path.read_bytes(), path.stat()
        assert main(["node", str(path), "--factory-reset"]) == 0
        out, err = capsys.readouterr()
        assert out == f"{named}: already factory-reset, file left as it was: needs enrolment\n"
        assert err == ""
        assert path.read_bytes() == before
        assert (path.stat().st_ino, path.stat().st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    assert sorted(p.name for p in written.parent.iterdir()) == [written.name]  # no lock left


def test_a_factory_reset_through_a_link_erases_the_file_it_points_to(tmp_path: Path) -> None:
    (written,) = install_bundle(bundle(tmp_path, 1), tmp_path / "nodes")
    link = tmp_path / "node.json"
    link.symlink_to(written)
    assert main(["node", str(link), "--factory-reset"]) == 0
    assert link.is_symlink()
    assert "key" not in json.loads(written.read_text())


def test_a_node_file_an_agent_holds_is_neither_reset_nor_run_by_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The agent writes the node's state back whole: a factory reset beside it was
    undone by its next save (the erased keys written back). Refused instead,
    naming the agent, and the file stays as it was."""
    monkeypatch.chdir(tmp_path)
    (written,) = install_bundle(bundle(tmp_path, 1), tmp_path / "nodes")
    before = written.read_bytes()
    agent = InstanceLock.acquire(written, "node agent")  # as a running agent holds it
    try:
        for extra in (["--factory-reset"], ["--timeout", "1"]):
            assert main(["node", str(written), *extra]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and f"another node agent (pid {os.getpid()})" in err
            assert written.read_bytes() == before
    finally:
        agent.release()
    assert main(["node", str(written), "--factory-reset"]) == 0
    assert sorted(p.name for p in written.parent.iterdir()) == [written.name]  # no lock left


def test_an_agent_stopped_by_sigterm_leaves_no_lock_file(tmp_path: Path) -> None:
    """SIGTERM (systemd, timeout(1)) killed the agent outright, before it could
    remove its lock file: it now ends the run as SIGINT does."""
    (written,) = install_bundle(bundle(tmp_path, 1), tmp_path / "nodes")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:  # never answers
        silent.bind(str(tmp_path / "oob.sock"))
        silent.listen()
        agent = subprocess.Popen(
            keystrap_command("node", str(written), "--channel-up", "raw", "--channel-down", "raw"),
            cwd=tmp_path,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert agent.stderr is not None
        assert "flight 1 sent" in agent.stderr.readline()
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(10) == 128 + signal.SIGINT
    assert "Traceback" not in agent.stderr.read()
    assert sorted(p.name for p in written.parent.iterdir()) == [written.name]
    assert json.loads(written.read_text())["stage"] == "awaiting-challenge"


def test_a_node_awaiting_its_challenge_without_rn_i_is_refused_when_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The agent re-sends flight 1 with the stored RN_i. A node file at that stage
    without one is one line, status 2, as it is read -- not an AssertionError
    once the out-of-band channel is up -- and it stays as it was."""
    monkeypatch.chdir(tmp_path)  # the bundle's unix:oob.sock, a path short enough for a socket
    (written,) = install_bundle(bundle(tmp_path, 1), tmp_path / "nodes")
    doc = json.loads(written.read_text())
    doc["stage"] = "awaiting-challenge"
    written.write_text(json.dumps(doc))
    before = written.read_bytes()
    with socket.socket(socket.AF_UNIX) as controller:
        controller.bind("oob.sock")
        controller.listen()
        node = ["node", str(written), "--channel-up", "raw", "--channel-down", "raw"]
        assert main([*node, "--timeout", "1", "--linger", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rn_i" in err and str(written) in err
    assert written.read_bytes() == before
