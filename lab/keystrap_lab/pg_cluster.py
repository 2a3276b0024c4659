"""A private PostgreSQL cluster in a temporary directory, for the tests, the
benchmarks and ``keystrap demo --store postgresql`` (lab tooling, not the product:
an operator's database is set up by its administrator, docs/deployment.md).

``initdb`` and ``pg_ctl`` from Debian's ``postgresql`` package; the server
listens on a Unix socket in the directory only (``listen_addresses=''``), so it
needs no port, no system service and no password (a role that needs one is
added by :meth:`PrivateCluster.password_role`), and disappears with
:meth:`PrivateCluster.stop`. PostgreSQL refuses to run as root: as root, the
cluster runs as ``nobody`` and its directory is handed to that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psycopg
from psycopg import sql

from keystrap.store.errors import StoreError

ROLE = "keystrap"
UNPRIVILEGED = "nobody"


class ClusterError(StoreError):
    """PostgreSQL's programs are missing, or the cluster would not start: a store
    error, so that ``keystrap demo --store postgresql`` reports it in one line."""


def postgres_bin() -> Path:
    """The directory of ``initdb`` and ``pg_ctl``: Debian keeps them out of PATH in
    /usr/lib/postgresql/VERSION/bin; the newest version installed wins."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not versions:
        found = shutil.which("pg_ctl")
        if found is None:
            raise ClusterError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
        return Path(found).parent
    return versions[-1].parent


@dataclass
class PrivateCluster:
    root: Path
    bin: Path
    user: str | None  # run as this user (when we are root), else as ourselves

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{ROLE}@/{database}?host={self.socket_dir}"

    @classmethod
    def create(cls, parent: Path | None = None) -> PrivateCluster:
        """initdb a new cluster (trust authentication: only the socket's owner
        and root can reach it) and start it."""
        user = UNPRIVILEGED if os.geteuid() == 0 else None
        root = Path(tempfile.mkdtemp(prefix="keystrap-pg-", dir=parent))
        cluster = cls(root, postgres_bin(), user)
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        try:
            root.chmod(0o700)
            # --no-sync: the directory is thrown away with the cluster, so initdb
            # need not wait for its files to reach the disk (seconds on a busy one).
            cluster._run(
                "initdb", "-D", str(cluster.data), "-U", ROLE, "--auth=trust", "-E", "UTF8",
                "--no-instructions", "--no-sync",
            )  # fmt: skip
            cluster.start()
        except BaseException:  # a cluster that did not start leaves no directory behind
            cluster.remove()
            raise
        return cluster

    def _run(self, program: str, *args: str) -> str:
        done = subprocess.run(  # noqa: S603 - PostgreSQL's own programs, argument list
            [str(self.bin / program), *args],
            capture_output=True,
            text=True,
            check=False,
            user=self.user,
            cwd=self.root,
        )
        if done.returncode != 0:
            raise ClusterError(f"{program} failed: {(done.stderr or done.stdout).strip()}")
        return done.stdout

    def start(self) -> None:
        options = f"-c listen_addresses='' -k {self.socket_dir} -c max_connections=200"
        self._run(
            "pg_ctl",
            "start",
            "-w",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-o",
            options,
        )

    def stop(self, mode: Literal["fast", "immediate"] = "fast") -> None:
        self._run("pg_ctl", "stop", "-w", "-m", mode, "-D", str(self.data))

    def restart(self) -> None:
        """A fast restart: every connection is cut, as when the database fails over."""
        self.stop()
        self.start()

    def postmaster_pid(self) -> int:
        """The server's main process (its backends are its children)."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def password_role(self, name: str, password: str, database: str) -> str:
        """A role that must give ``password`` (SCRAM) on the socket, every other
        role keeping trust; it owns ``database``. Returns that database's URL
        for the role, password included."""
        with psycopg.connect(self.url(), autocommit=True) as db:
            role = sql.Identifier(name)
            db.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(role, sql.Literal(password))
            )
            db.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), role)
            )
        hba = self.data / "pg_hba.conf"  # the first line that matches decides
        hba.write_text(f"local all {name} scram-sha-256\n{hba.read_text()}")
        self._run("pg_ctl", "reload", "-D", str(self.data))
        without = f"postgresql://{name}@/{database}?host={self.socket_dir}"
        deadline = time.monotonic() + 10
        while True:  # the server rereads pg_hba.conf after pg_ctl returns
            try:
                psycopg.connect(without, connect_timeout=5).close()
            except psycopg.OperationalError:
                break
            if time.monotonic() > deadline:
                raise ClusterError(f"the cluster still lets {name} in without a password")
            time.sleep(0.05)
        return f"postgresql://{name}:{password}@/{database}?host={self.socket_dir}"

    def remove(self) -> None:
        """Stop without the shutdown checkpoint ("immediate"): the directory is
        deleted next, and that checkpoint's writes took tens of seconds once the
        tests had created their databases."""
        with contextlib.suppress(ClusterError, OSError):  # OSError: pg_ctl gone too
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def private_cluster(parent: Path | None = None) -> Iterator[PrivateCluster]:
    cluster = PrivateCluster.create(parent)
    try:
        yield cluster
    finally:
        cluster.remove()
