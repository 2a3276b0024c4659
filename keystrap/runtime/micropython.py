"""The node core running inside MicroPython, driven from this process.

``node micropython_host.mjs serve`` (Node.js, with the WebAssembly port that
``make setup`` installs from package-lock.json) loads the unmodified files of
:mod:`keystrap.nodecore` into MicroPython 1.27 and answers the line protocol of
:mod:`keystrap.nodecore.host_link`. :meth:`MicroPython.core` makes that a
:class:`~keystrap.protocol.node.NodeCore`, so :class:`~keystrap.protocol.Node`
keeps its stages and timers here while every flight 1 and 5, PSK_i and SK_i
is computed in MicroPython; this process only carries bytes and persists the
state MicroPython hands back.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path
from types import TracebackType

from keystrap.nodecore import NodeCoreError
from keystrap.protocol.node import NodeCore, NodeState
from keystrap.wire import COMPACT, CompactFlight4, CompactFlight5, Flight4, Flight5
from keystrap.wire.sizes import KEY_SIZE, RN_SIZE

HOST = Path(__file__).with_name("micropython_host.mjs")
PACKAGE = "@micropython/micropython-webassembly-pyscript"
REPLY_SECONDS = 30.0
"""How long the runtime may take to start or to answer one request (it takes
well under a second). Past it the runtime is killed: the reply is read
blocking, so a runtime that hung held the agent past its --timeout, deaf to
Ctrl-C and SIGTERM."""


class RuntimeUnavailable(Exception):
    """Node.js or the MicroPython package is missing, or the runtime stopped."""


def node_command(*arguments: str) -> list[str]:
    """The command line running the host script with ``arguments``."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeUnavailable("Node.js (node) is not installed: run make setup")
    if not any((p / "node_modules" / PACKAGE).is_dir() for p in HOST.parents):
        raise RuntimeUnavailable(f"{PACKAGE} is not installed: run make setup (npm ci)")
    return [node, str(HOST), *arguments]


def _fields(data: bytes) -> str:
    return data.hex() or "-"


def _bytes(field: str) -> bytes:
    return b"" if field == "-" else bytes.fromhex(field)


class MicroPython:
    """One MicroPython process; use as a context manager, or :meth:`close` it."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(  # noqa: S603 (fixed command, no shell)
            node_command("serve"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        try:
            ready = self._read_line()
        except RuntimeUnavailable:
            self.close()
            raise
        if not ready.startswith("ready "):
            self.close()
            raise RuntimeUnavailable(f"MicroPython did not start: {ready.strip()[:120]}")
        self.version = ready.removeprefix("ready ").strip()
        """For example ``MicroPython v1.27.0``."""

    def _read_line(self) -> str:
        process = self._process
        assert process.stdout is not None and process.stderr is not None
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            process.kill()

        watchdog = threading.Timer(REPLY_SECONDS, expire)
        watchdog.start()
        try:
            line = process.stdout.readline()
        except OSError as exc:
            raise RuntimeUnavailable(f"MicroPython stopped: {exc}") from exc
        finally:
            watchdog.cancel()
        if expired.is_set():
            raise RuntimeUnavailable(f"MicroPython did not answer within {REPLY_SECONDS:g} s")
        if not line:
            detail = process.stderr.read().strip().splitlines()
            raise RuntimeUnavailable("MicroPython stopped" + (f": {detail[-1]}" if detail else ""))
        return line

    def request(self, line: str) -> list[str]:
        """Send one request line, return the reply's words."""
        process = self._process
        assert process.stdin is not None
        try:
            process.stdin.write(line + "\n")
            process.stdin.flush()
        except OSError as exc:
            raise RuntimeUnavailable(f"MicroPython stopped: {exc}") from exc
        reply = self._read_line()
        words = reply.split()
        if not words or words[0] == "error":
            raise RuntimeUnavailable(f"MicroPython answered: {reply.strip()}")
        return words

    def core(self, state: NodeState) -> NodeCore:
        """A core for ``state`` whose computations happen in MicroPython."""
        return MicroPythonCore(self, state)

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for stream in (self._process.stdout, self._process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> MicroPython:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class MicroPythonCore:
    """The :class:`~keystrap.nodecore.MinimalNode` surface, answered by MicroPython."""

    def __init__(self, runtime: MicroPython, state: NodeState) -> None:
        self._runtime = runtime
        self._ids = f"{state.version} {state.node_id.hex()} {state.controller_id.hex()}"
        compact = state.version == COMPACT
        self._flights = (
            (CompactFlight4 if compact else Flight4).SIZE,
            (CompactFlight5 if compact else Flight5).SIZE,
        )
        self.key = state.key
        self.rn_i = state.rn_i or b""
        self.session_key = state.session_key or b""
        self.flight4 = state.challenge or b""
        self.flight5 = state.proof or b""

    def hello(self, rn_i: bytes) -> bytes:
        return self._call("hello", rn_i)

    def answer(self, flight4: bytes) -> bytes:
        return self._call("answer", flight4)

    def confirm(self, flight11: bytes) -> None:
        self._call("confirm", flight11)

    def _call(self, verb: str, argument: bytes) -> bytes:
        state = (self.key, self.rn_i, self.session_key, self.flight4, self.flight5)
        words = self._runtime.request(
            " ".join([verb, self._ids, *map(_fields, state), _fields(argument)])
        )
        if len(words) < 7 or words[0] not in ("ok", "refused"):
            raise RuntimeUnavailable(f"MicroPython answered: {' '.join(words)[:80]}")
        try:
            key, rn_i, session_key, flight4, flight5 = map(_bytes, words[1:6])
            out = b"" if words[0] == "refused" else _bytes(words[6])
        except ValueError:
            raise RuntimeUnavailable("MicroPython answered a field that is not hex") from None
        self._check(key, rn_i, session_key, flight4, flight5)
        self.key, self.rn_i, self.session_key = key, rn_i, session_key
        self.flight4, self.flight5 = flight4, flight5
        if words[0] == "refused":
            raise NodeCoreError(" ".join(words[6:]))
        return out

    def _check(self, key: bytes, rn_i: bytes, session_key: bytes, f4: bytes, f5: bytes) -> None:
        """Take only a state a node file can hold. The agent saves what the runtime
        hands back; a key or flight of the wrong size was written as it was, and
        the node file then failed to load: a node bricked by its own runtime."""
        if (
            len(key) != KEY_SIZE
            or len(rn_i) not in (0, RN_SIZE)
            or len(session_key) not in (0, KEY_SIZE)
            or (len(f4), len(f5)) not in ((0, 0), self._flights)
        ):
            raise RuntimeUnavailable("MicroPython answered a state of the wrong size")
