"""Forged and random requests are refused before any repository access."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

from keystrap.protocol import InMemoryRepository, Server, Status
from keystrap.services.server import LiveControllers
from keystrap.store.sqlite_repository import ControllerInfo, SqliteRepository
from keystrap.wire import Flight1, Flight2, Flight6

from .conftest import CONTROLLER_ID, node_id


class CountingRepository:
    """Counts every call the server makes on its repository."""

    def __init__(self, inner: InMemoryRepository) -> None:
        self.inner = inner
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if callable(attribute):

            def counted(*args: Any, **kwargs: Any) -> Any:
                self.calls += 1
                return attribute(*args, **kwargs)

            return counted
        return attribute


def forged_requests(sk_cs: bytes, count: int) -> list[bytes]:
    now = int(time.time())
    flight1 = Flight1(node_id(1), bytes(16))
    out = []
    for i in range(count):
        kind = i % 5
        if kind == 0:
            out.append(os.urandom(1 + i % 100))  # random bytes
        elif kind == 1:  # well formed, unknown controller
            out.append(
                Flight2(os.urandom(8), i, now, os.urandom(16), flight1).seal(
                    secrets.token_bytes(16)
                )
            )
        elif kind == 2:  # well formed, real controller ID, wrong key
            out.append(
                Flight2(CONTROLLER_ID, i, now, os.urandom(16), flight1).seal(
                    secrets.token_bytes(16)
                )
            )
        elif kind == 3:  # a confirm forged without SK_cs
            fake5 = bytes([0x15]) + i.to_bytes(4, "big") + os.urandom(24)
            out.append(Flight6(CONTROLLER_ID, i, fake5).seal(secrets.token_bytes(16)))
        else:  # correctly sealed but recorded long ago (stale)
            out.append(Flight2(CONTROLLER_ID, i, now - 3600, os.urandom(16), flight1).seal(sk_cs))
    return out


def test_forged_packets_never_touch_the_repository() -> None:
    sk_cs = secrets.token_bytes(16)
    inner = InMemoryRepository()
    inner.enroll(node_id(1), secrets.token_bytes(16))
    repo = CountingRepository(inner)
    server = Server(repo, {CONTROLLER_ID: sk_cs})
    statuses = {server.handle(p, time.time()).status for p in forged_requests(sk_cs, 2000)}
    assert repo.calls == 0
    assert statuses <= {Status.BAD_REQUEST, Status.UNAUTHORIZED, Status.FORBIDDEN}
    assert Status.OK not in statuses


def test_controller_table_is_checked_at_most_once_a_second(tmp_path) -> None:  # type: ignore[no-untyped-def]
    repo = SqliteRepository(tmp_path / "db", secrets.token_bytes(16))
    repo.add_controller(ControllerInfo(CONTROLLER_ID, "c", "h", 1), secrets.token_bytes(16))
    checks = 0
    original = repo.data_version

    def counted() -> int:
        nonlocal checks
        checks += 1
        return original()

    repo.data_version = counted  # type: ignore[method-assign]
    now = [100.0]
    table = LiveControllers(repo, clock=lambda: now[0])
    for _ in range(5000):
        table.get(os.urandom(8))
        now[0] += 0.0001  # 5,000 lookups within half a second
    assert checks == 1  # the load at construction
    now[0] += 0.6
    table.get(os.urandom(8))
    assert checks == 2  # more than a second after it
    assert CONTROLLER_ID in table


def test_controller_table_sees_a_new_controller_and_a_new_key_once_its_interval_passed(
    tmp_path: Path,
) -> None:
    master_key = secrets.token_bytes(16)
    repo = SqliteRepository(tmp_path / "db", master_key)
    repo.add_controller(ControllerInfo(CONTROLLER_ID, "c", "h", 1), b"\x01" * 16)
    now = [100.0]
    table = LiveControllers(repo, interval=0.05, clock=lambda: now[0])
    other = bytes.fromhex("0200000000000c99")
    writer = SqliteRepository(tmp_path / "db", master_key)  # as an admin command would
    writer.add_controller(ControllerInfo(other, "d", "h", 2), b"\x02" * 16)
    writer.rotate_controller_key(CONTROLLER_ID, b"\x03" * 16)
    assert table.get(other) is None  # within the interval: the table as loaded
    now[0] += 0.049
    assert table.get(CONTROLLER_ID) == b"\x01" * 16
    now[0] += 0.002
    assert table.get(other) == b"\x02" * 16
    assert table.get(CONTROLLER_ID) == b"\x03" * 16
    assert table.get(bytes(8), b"none") == b"none"
