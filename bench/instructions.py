"""SBS instructions per bootstrap, counted by callgrind: the same on any machine.

Why: on a shared VM the CPU clock of the same code moves by a quarter within
the hour (docs/performance.md §3), so a change worth a few per cent cannot be
seen in ``server_scale.py``'s CPU figure, nor in ``server_ab.py``'s side by
side. Valgrind's callgrind counts the instructions the process executes, which
do not depend on the machine's load: two runs of the same code agree to within
a fraction of a per cent, and a change's worth is read off one run before and
one after.

What is counted is the server's work per bootstrap, in this process, as the
SBS assembles it (:func:`keystrap.services.server.server_core`):

- **the loop**: the bootstrap resource on a real UDP socket
  (:class:`keystrap.coap.fast_path.BootstrapPath`: parse, screen, deduplicate,
  hand over; then the answer built, sent and reported, with the metrics and
  the activity log's records);
- **the store**: the store thread's batches (:func:`keystrap.services.server.answer_batch`
  over the real SQLite store, 10^6 nodes enrolled by default, ``synchronous=FULL``),
  and the activity log's writes.

Flights 2 and 6 for fresh nodes come from the controller and node cores and
are not counted. Nor is the kernel: the socket calls, SQLite's reads and writes
and its fsync run in the kernel, which callgrind does not see and
``server_scale.py``'s CPU figure includes.

    python bench/instructions.py [--enrolled 1000000] [--bootstraps 1536] [--batch 256]
        [--keep DIR]

The site is enrolled first, outside valgrind; ``--keep DIR`` keeps it for the
next run (each run enrols a fresh order of nodes next to it). To compare two
checkouts, run each one's copy over the same ``--keep`` site with
``PYTHONPATH=CHECKOUT:CHECKOUT/lab``. Needs valgrind (``make instructions``
installs it). Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from server_scale import post_datagram
from services import interpreter, positive
from store_path import Flights, enrolled_site

from keystrap.coap.fast_path import BootstrapPath
from keystrap.coap.server import BootstrapResource
from keystrap.metrics import Metrics, TimedRepository
from keystrap.protocol import Reply, Server, ServerPolicy, Status
from keystrap.services.server import LiveControllers, answer_batch, observer
from keystrap.store.activity import ActivityLog
from keystrap.store.errors import StoreError
from keystrap.store.keyfile import read_key_file
from keystrap.store.sqlite_repository import SqliteRepository
from keystrap_lab.site import Site

T = TypeVar("T")
FLUSH_EVERY = 1536
"""Requests between two writes of the activity log: the server writes it twice a
second, which flat out (about 3,000 requests a second in ``server_scale.py``) is
about this many."""
SIDES = ("loop", "store")
WHERE = (
    ("the interpreter", re.compile(r"^(python3|libpython)")),
    ("SQLite", re.compile(r"^(libsqlite3|_sqlite3)")),
    ("AES (cryptography, OpenSSL)", re.compile(r"^(_rust\.abi3|libcrypto|libssl)")),
    ("libc (allocation, copies, locks)", re.compile(r"^(libc|libm|ld-linux)[.-]")),
)
"""Where instructions run, by the file name of the code running them."""
_ROW = re.compile(r"^\s*([\d,]+) \([\s\d.]+%\)\s+(?:\*\s+)?(\S.*?) \[(.+)\]\s*$")


class Counted:
    """Runs a function inside libc's ``qsort``, as its comparator through ctypes,
    so that ``valgrind --toggle-collect=qsort_r`` counts exactly that function's
    instructions: callgrind switches counting on and off only at a C function's
    entry and exit, and this one calls back into Python once for two elements
    (a few hundred instructions of its own)."""

    _COMPARE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)

    def __init__(self) -> None:
        self._qsort = ctypes.CDLL(None).qsort
        self._pair = (ctypes.c_int * 2)(1, 2)
        self._work: Callable[[], None] = lambda: None
        self._failure: BaseException | None = None
        self._compare = self._COMPARE(self._call)

    def _call(self, _a: int, _b: int) -> int:
        try:
            self._work()
        except BaseException as exc:  # ctypes would print it and carry on
            self._failure = exc
        return 0

    def run(self, function: Callable[[], T]) -> T:
        result: list[T] = []
        self._work, self._failure = lambda: result.append(function()), None
        self._qsort(self._pair, 2, ctypes.sizeof(ctypes.c_int), self._compare)
        if self._failure is not None:
            raise self._failure
        return result[0]


class _Interface:
    """What :class:`BootstrapPath` takes from aiocoap's UDP interface: its socket,
    and the handlers for what is not a bootstrap request (none arrives here)."""

    def __init__(self, sock: socket.socket) -> None:
        self.transport = self
        self._sock = sock

    def get_extra_info(self, _name: str) -> socket.socket:
        return self._sock

    def datagram_msg_received(self, *_: Any) -> None:
        raise RuntimeError("a datagram the bootstrap path passed on to aiocoap")

    datagram_errqueue_received = error_received = datagram_msg_received


class InProcessServer:
    """The SBS's loop and store-thread work over one site, driven in batches on
    this thread; its answers go out on a real UDP socket to ``controller``."""

    def __init__(self, site: Site, server: socket.socket, controller: socket.socket) -> None:
        self.repository = SqliteRepository(site.database, read_key_file(site.master_key))
        self.activity = ActivityLog(site.database)
        metrics = Metrics("server")
        controllers = LiveControllers(self.repository)
        self.core = Server(TimedRepository(self.repository, metrics), controllers, ServerPolicy())

        self.pending: list[tuple[bytes, float, Callable[[Reply], None]]] = []
        self.unflushed = 0
        self.path = BootstrapPath(
            _Interface(server),
            lambda data: self.core.screen(data, controllers.snapshot()),
            lambda data, now, answered: self.pending.append((data, now, answered)),
            BootstrapResource(_not_taken, observer(metrics, self.activity)).report,
        )
        self.controller = controller

    def receive(self, datagrams: list[bytes]) -> None:
        self.pending.clear()
        address = self.controller.getsockname()
        for data in datagrams:
            self.path.received(data, [], address)

    def store(self) -> list[Reply]:
        replies = answer_batch(self.core, [(data, now) for data, now, _ in self.pending])
        self.unflushed += len(replies)
        if self.unflushed >= FLUSH_EVERY:
            self.activity.flush()
            self.unflushed = 0
        return replies

    def answer(self, replies: list[Reply]) -> None:
        for (_, _, answered), reply in zip(self.pending, replies, strict=True):
            answered(reply)

    def drain(self) -> int:
        """How many answers the controller's socket holds (they are read and dropped)."""
        count = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                self.controller.recv(2048, socket.MSG_DONTWAIT)
                count += 1
        return count


async def _not_taken(_data: bytes, _now: float) -> Reply:
    raise RuntimeError("aiocoap's path to the core: not taken here")


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    return sock


def counted_run(args: argparse.Namespace) -> None:
    """Under valgrind: the bootstraps, one side (``args.side``) counted; prints
    how many were confirmed and how many answers arrived. The nodes' initial key
    and IDs come on stdin, so the key is never in a file or a command line."""
    site = Site(args.site)
    given = json.loads(sys.stdin.read())
    ids = [bytes.fromhex(text) for text in given["ids"]]
    flights = Flights(site, bytes.fromhex(given["ik"]), ids)
    server = InProcessServer(site, udp_socket(), udp_socket())
    counted, confirmed, answers = Counted(), 0, 0
    for round_ in range(args.bootstraps // args.batch + 1):  # the first one warms up
        counting = counted if round_ else None
        sent = flights.requests(args.batch)
        grants = exchange(server, [post_datagram(f.tid, f.data) for f in sent], args.side, counting)
        confirms = flights.confirms(sent, grants)
        acks = exchange(
            server, [post_datagram(f.tid, f.data) for f in confirms], args.side, counting
        )
        flights.confirmed(confirms, acks)
        arrived = server.drain()
        if round_:
            answers += arrived
            confirmed += sum(a.status is Status.OK for a in acks)
    print(json.dumps({"confirmed": confirmed, "answers": answers}))


def exchange(
    server: InProcessServer, datagrams: list[bytes], side: str, counted: Counted | None
) -> list[Reply]:
    """One batch of requests through the loop, the store, and the loop again,
    ``side``'s part counted."""

    def on(where: str, function: Callable[[], T]) -> T:
        return function() if counted is None or where != side else counted.run(function)

    on("loop", lambda: server.receive(datagrams))
    replies = on("store", server.store)
    on("loop", lambda: server.answer(replies))
    return replies


def by_where(out: Path) -> dict[str, int]:
    """The instructions callgrind counted, by where they ran (:data:`WHERE`)."""
    text = subprocess.run(
        ["callgrind_annotate", "--threshold=100", str(out)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    counts = dict.fromkeys([where for where, _ in WHERE] + ["other"], 0)
    for line in text.splitlines():
        row = _ROW.match(line)
        if row is None or "PROGRAM TOTALS" in line:
            continue
        name = Path(row[3]).name
        where = next((w for w, pattern in WHERE if pattern.search(name)), "other")
        counts[where] += int(row[1].replace(",", ""))
    return counts


def count(args: argparse.Namespace, root: Path, scratch: Path) -> dict[str, Any]:
    """Enrols in ``root`` (outside valgrind), then runs :func:`counted_run` under
    callgrind once per side, each on fresh nodes of its own, its output in
    ``scratch``; the counts per bootstrap."""
    per_run = args.bootstraps + args.batch  # the warm-up round's nodes too
    site, ik, ids = enrolled_site(root, args.enrolled, per_run * len(SIDES))
    counted: dict[str, dict[str, int]] = {}
    done = 0
    for n, side in enumerate(SIDES):
        given = {"ik": ik.hex(), "ids": [i.hex() for i in ids[n * per_run : (n + 1) * per_run]]}
        out = scratch / f"callgrind-{side}.out"
        command = ["valgrind", "--tool=callgrind", "--toggle-collect=qsort_r"]
        command += [f"--callgrind-out-file={out}", sys.executable, __file__, "--counted-run"]
        command += ["--side", side, "--site", str(root), "--bootstraps", str(args.bootstraps)]
        command += ["--batch", str(args.batch)]
        print(f"counting {side} under valgrind (a minute or two)", file=sys.stderr)
        run = subprocess.run(command, input=json.dumps(given), capture_output=True, text=True)
        if run.returncode != 0:
            last = (run.stderr.strip().splitlines() or ["no message"])[-1]
            raise RuntimeError(f"the counted run of {side} failed: {last}")
        result = json.loads(run.stdout.strip().splitlines()[-1])
        done = result["confirmed"]
        if done != args.bootstraps - args.bootstraps % args.batch or result["answers"] != 2 * done:
            raise RuntimeError(f"{side}: {done} bootstraps confirmed, {result['answers']} answers")
        counted[side] = {where: round(n / done) for where, n in by_where(out).items()}
    return {"enrolled": enrolled_count(site), "bootstraps": done, "sides": counted}


def enrolled_count(site: Site) -> int:
    repository = SqliteRepository(site.database, read_key_file(site.master_key))
    try:
        return repository.count_rows("nodes")
    finally:
        repository.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enrolled", type=positive, default=1_000_000)
    parser.add_argument("--bootstraps", type=positive, default=1536, help="counted bootstraps")
    parser.add_argument("--batch", type=positive, default=256, help="flights per store batch")
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the enrolled site here")
    parser.add_argument("--counted-run", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--site", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.counted_run:
        counted_run(args)
        return
    missing = [tool for tool in ("valgrind", "callgrind_annotate") if shutil.which(tool) is None]
    if missing:
        install = "`make instructions` installs it (Debian: apt-get install valgrind)"
        parser.exit(2, f"{missing[0]} not found: {install}\n")
    if args.batch > args.bootstraps:
        parser.error(f"--batch {args.batch} is more than --bootstraps {args.bootstraps}")
    if args.keep is not None and args.keep.exists() and not args.keep.is_dir():
        parser.error(f"--keep {args.keep}: not a directory")
    with contextlib.ExitStack() as held:
        scratch = Path(held.enter_context(tempfile.TemporaryDirectory(prefix="keystrap-count-")))
        root = scratch / "site" if args.keep is None else args.keep
        try:
            root.mkdir(parents=True, exist_ok=True)
            figures = count(args, root, scratch)
        except (OSError, RuntimeError, StoreError, subprocess.CalledProcessError) as exc:
            last = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]  # the site's CLI
            parser.exit(2, f"{root}: {last}\n")
    sides = figures["sides"]
    print(
        f"instructions per bootstrap ({figures['enrolled']:,} nodes enrolled; "
        f"{figures['bootstraps']} bootstraps counted, in batches of {args.batch})"
    )
    print(f"{'':<34} {'the loop':>10} {'the store':>10} {'both':>10}")
    all_ = sum(sum(side.values()) for side in sides.values())
    for where in sides["loop"]:
        loop, store = sides["loop"][where], sides["store"][where]
        share = f"{(loop + store) / max(all_, 1):>6.1%}"
        print(f"{where:<34} {loop:>10,} {store:>10,} {loop + store:>10,} {share}")
    totals = {side: sum(counts.values()) for side, counts in sides.items()}
    print(f"{'all':<34} {totals['loop']:>10,} {totals['store']:>10,} {all_:>10,}")
    print(
        json.dumps(
            {
                "bench": "instructions",
                "interpreter": interpreter(),
                "batch": args.batch,
                **figures,
                "totals": totals,
            }
        )
    )


if __name__ == "__main__":
    main()
