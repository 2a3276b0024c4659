"""One instance per data directory and per port, on real processes (issue #11, item 2)."""

from __future__ import annotations

import secrets
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from keystrap.store.keyfile import write_key_file
from keystrap_lab.processes import (
    Service,
    free_udp_port,
    keystrap_command,
    start_service,
    wait_for_server,
    wait_for_socket,
)

from .services_helpers import run


def server_args(data: Path, port: int) -> list[str]:
    return [
        "server",
        "--port",
        str(port),
        "--database",
        str(data / "sbs.sqlite"),
        "--master-key",
        str(data / "sbs-master.key"),
    ]


def controller_args(data: Path, state: Path, server_port: int) -> list[str]:
    return [
        "controller",
        "--server",
        f"coap://127.0.0.1:{server_port}",
        "--key-file",
        str(data / "sk.key"),
        "--state",
        str(state),
        "--master-key",
        str(data / "sbr-master.key"),
        "--oob",
        f"unix:{data / 'oob.sock'}",
    ]


def second(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        keystrap_command(*args), cwd=cwd, capture_output=True, text=True, timeout=60
    )


@contextmanager
def running_server(tmp_path: Path, data: Path, port: int) -> Iterator[Service]:
    service = start_service("server", server_args(data, port), tmp_path, tmp_path / "s1.log")
    try:
        run(wait_for_server("127.0.0.1", port, service))
        yield service
    finally:
        service.stop()


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_two_servers_on_one_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_server(tmp_path, data, free_udp_port()) as first:
        before = snapshot(data)
        result = second(server_args(data, free_udp_port()), tmp_path)
        assert first.process.poll() is None
        assert snapshot(data) == before
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert f"another server (pid {first.process.pid}) is running on" in result.stderr


def test_a_second_name_for_the_store_finds_the_same_lock(tmp_path: Path) -> None:
    """A symbolic link to the store, or to its directory, is the same store."""
    data = tmp_path / "data"
    with running_server(tmp_path, data, free_udp_port()) as first:
        (tmp_path / "linked.sqlite").symlink_to(data / "sbs.sqlite")
        (tmp_path / "linked-dir").symlink_to(data, target_is_directory=True)
        results = []
        for database in (tmp_path / "linked.sqlite", tmp_path / "linked-dir" / "sbs.sqlite"):
            args = server_args(data, free_udp_port())
            args[args.index("--database") + 1] = str(database)
            results.append(second(args, tmp_path))
        assert first.process.poll() is None
    for result in results:
        assert result.returncode == 2
        assert f"another server (pid {first.process.pid}) is running on" in result.stderr


def test_two_servers_on_one_port(tmp_path: Path) -> None:
    port = free_udp_port()
    with running_server(tmp_path, tmp_path / "a", port) as first:
        result = second(server_args(tmp_path / "b", port), tmp_path)
        assert first.process.poll() is None
    assert result.returncode == 2
    assert (
        result.stderr
        == f"keystrap server: error: UDP port {port} on 127.0.0.1 is in use by another process\n"
    )
    assert not (tmp_path / "b").exists()  # refused before anything was written


def test_a_metrics_address_in_use_stops_the_server_before_its_store_is_made(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        metrics = taken.getsockname()[1]
        args = [*server_args(data, free_udp_port()), "--metrics", f"127.0.0.1:{metrics}"]
        result = second(args, tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert f"metrics address 127.0.0.1:{metrics}:" in result.stderr
    assert not (data / "sbs.sqlite").exists() and not (data / "sbs-master.key").exists()


def test_a_controller_that_cannot_take_its_endpoints_makes_no_state(tmp_path: Path) -> None:
    """An out-of-band path that is not a socket, or a metrics address in use, stops
    the start before the controller's state or master key is made."""
    data = tmp_path / "data"
    data.mkdir()
    write_key_file(data / "sk.key", secrets.token_bytes(16))
    args = controller_args(data, data / "sbr.sqlite", free_udp_port())
    (data / "oob.sock").write_text("an operator's file")
    refused = [second(args, tmp_path)]
    (data / "oob.sock").unlink()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        refused.append(
            second([*args, "--metrics", f"127.0.0.1:{taken.getsockname()[1]}"], tmp_path)
        )
    for result in refused:
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert not (data / "sbr.sqlite").exists() and not (data / "sbr-master.key").exists()
    assert not (data / "oob.sock").exists()  # the socket the second start made is gone


def test_two_controllers_on_one_state(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_key_file(data / "sk.key", secrets.token_bytes(16))
    state = data / "sbr.sqlite"
    args = controller_args(data, state, free_udp_port())
    first = start_service("controller", args, tmp_path, tmp_path / "c1.log")
    try:
        run(wait_for_socket(data / "oob.sock", first))
        other = tmp_path / "other"
        other.mkdir()
        write_key_file(other / "sk.key", secrets.token_bytes(16))
        result = second([*controller_args(other, state, free_udp_port())], tmp_path)
        assert first.process.poll() is None
    finally:
        first.stop()
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert f"another controller (pid {first.process.pid}) is running on {state}" in result.stderr
    assert not (other / "oob.sock").exists() and not (other / "sbr-master.key").exists()
