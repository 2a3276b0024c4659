"""Start, wait for and stop keystrap service processes (used by the demo, the
multi-process tests and the benchmarks)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiocoap

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
SERVICE_PORTS_FROM = 20000


def _ephemeral_floor() -> int:
    try:
        return int(EPHEMERAL_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_udp_port() -> int:
    """A free UDP port on loopback for a service, chosen *below* the kernel's
    ephemeral range.

    A port the kernel handed out (bind to 0) lies inside that range, so once a
    service using it is killed, any client socket opened meanwhile may be given
    it, and the restarted service then fails with EADDRINUSE. Real deployments
    avoid this by serving on 5683/5684; tests and benchmarks need many ports, so
    they draw random ones from the range below and check each is free.
    """
    floor = _ephemeral_floor()
    for _ in range(200):
        port = SERVICE_PORTS_FROM + secrets.randbelow(max(floor - SERVICE_PORTS_FROM, 1))
        if _udp_port_free(port):
            return port
    raise OSError(f"no free UDP port between {SERVICE_PORTS_FROM} and {floor}")


def _udp_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def keystrap_command(*args: str) -> list[str]:
    """Run the CLI with this interpreter, so the same environment is used."""
    return [sys.executable, "-m", "keystrap.cli.main", *args]


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as in a crash or power cut."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_service(name: str, args: list[str], cwd: Path, log: Path) -> Service:
    handle = open(log, "ab")  # noqa: SIM115 - the child owns it for its lifetime
    try:
        process = subprocess.Popen(  # noqa: S603 - our own CLI, argument list
            keystrap_command(*args),
            cwd=cwd,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    finally:
        handle.close()
    return Service(name, process, log)


async def wait_for_server(host: str, port: int, service: Service, timeout: float = 20.0) -> None:
    """Poll ``GET /health`` until the server answers."""
    context = await aiocoap.Context.create_client_context()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                raise RuntimeError(f"{service.name} exited early:\n{service.log_text()}")
            request = aiocoap.Message(code=aiocoap.GET, uri=f"coap://{host}:{port}/health")
            with contextlib.suppress(aiocoap.error.Error, TimeoutError):
                response = await asyncio.wait_for(context.request(request).response, 0.5)
                if response.code.is_successful():
                    return
            await asyncio.sleep(0.1)
    finally:
        await context.shutdown()
    raise RuntimeError(f"{service.name} did not answer within {timeout} s:\n{service.log_text()}")


async def wait_for_socket(path: Path, service: Service, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(f"{service.name} exited early:\n{service.log_text()}")
        if path.exists():
            try:
                _, writer = await asyncio.open_unix_connection(str(path))
            except OSError:
                pass
            else:
                writer.close()
                return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{service.name} did not open {path} within {timeout} s")


async def wait_for_log(service: Service, text: str, since: int = 0, timeout: float = 30.0) -> None:
    """Wait until the service has written ``text`` to its log after byte ``since``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text.encode() in service.log.read_bytes()[since:]:
            return
        if service.process.poll() is not None:
            raise RuntimeError(f"{service.name} exited early:\n{service.log_text()}")
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{service.name} did not log {text!r} within {timeout} s")
