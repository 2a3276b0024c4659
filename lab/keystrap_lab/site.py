"""A complete deployment in one directory: configuration files, an enrolled order,
and the server and controller as separate processes on 127.0.0.1.

The configuration files are rendered from :mod:`keystrap.config`'s schema, as
``keystrap server --print-config`` renders them (only the options the site
sets: a test may append another), never written by hand.

The demo, the multi-process tests and the benchmarks all use it, so each of them
drives the same commands an operator would type.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from keystrap.cli.main import EXIT_INTERRUPTED
from keystrap.config import (
    DEFAULT_CONTROLLER_ID,
    ControllerConfig,
    ServerConfig,
    render_config,
    unused_in_process,
)
from keystrap.protocol import NodeStage, NodeState
from keystrap.store.atomic import make_private_dirs
from keystrap.store.keyfile import read_key_file
from keystrap.store.node_file import NodeFile, save_node_file
from keystrap.store.open import Repository, open_store
from keystrap_lab.processes import (
    Service,
    free_udp_port,
    keystrap_command,
    start_service,
    wait_for_log,
    wait_for_server,
    wait_for_socket,
)
from keystrap_lab.relay import Hook, UdpRelay, forward_all


@dataclass
class Site:
    root: Path
    window: int = 120
    channels: tuple[str, str] = ("qr", "qr")  # (node -> controller, controller -> node)
    capture: bool = False  # keep every out-of-band signal in root/signals
    profile: str = "paper"  # or "hardened": flight 8, the controller never learns IK
    compact: str = "accept"  # or "refuse": the server's answer to compact-profile orders
    controller_id: str = DEFAULT_CONTROLLER_ID
    revocation_poll: int = 5
    small_network: bool = False  # the controller includes the server (--with-server)
    store: str = ""  # a postgresql:// URL for the server's store; empty: SQLite in data/
    log_level: str = "info"  # "debug" adds the server's line per bootstrap
    server_port: int = field(default_factory=free_udp_port)
    relay: UdpRelay | None = None
    server: Service | None = None
    controller: Service | None = None

    def __post_init__(self) -> None:
        """Commands run in ``root`` (:meth:`cli`) and are given paths under it: a
        relative ``root`` (``keystrap demo --workdir dw``) named ``dw/dw/...`` there."""
        self.root = self.root.absolute()

    @property
    def server_config(self) -> Path:
        return self.root / "server.toml"

    @property
    def controller_config(self) -> Path:
        return self.root / "controller.toml"

    @property
    def oob_socket(self) -> Path:
        return self.root / "data" / "oob.sock"

    @property
    def signals(self) -> Path:
        return self.root / "signals"

    @property
    def database(self) -> Path:
        return self.root / "data" / "sbs.sqlite"

    @property
    def master_key(self) -> Path:
        return self.root / "data" / "sbs-master.key"

    async def prepare(self, relay_hook: Hook | None = None) -> None:
        """Write both configuration files; with ``relay_hook``, route the in-band
        path through a :class:`UdpRelay` that calls it for every datagram."""
        make_private_dirs(self.root / "data")
        server_uri_port = self.server_port
        if relay_hook is not None:
            self.relay = await UdpRelay.start(
                "127.0.0.1", free_udp_port(), ("127.0.0.1", self.server_port), relay_hook
            )
            server_uri_port = self.relay.address[1]
        server = ServerConfig(
            host="127.0.0.1",
            port=self.server_port,
            database=self.store or Path("data/sbs.sqlite"),
            master_key=Path("data/sbs-master.key"),
            window=self.window,
            profile=self.profile,
            compact=self.compact,
            log_level=self.log_level,
        )
        if self.small_network:  # the controller's process: these would be refused
            unused = {name: getattr(ServerConfig(), name) for name in unused_in_process(server)}
            server = dataclasses.replace(server, **unused)
        self.server_config.write_text(render_config(server, full=False))
        controller = ControllerConfig(
            id=self.controller_id,
            server=f"coap://127.0.0.1:{server_uri_port}",
            key_file=Path("data/controller-sk.key"),
            state=Path("data/sbr.sqlite"),
            master_key=Path("data/sbr-master.key"),
            oob=f"unix:{self.oob_socket}",
            channel_from_node=self.channels[0],
            channel_to_node=self.channels[1],
            capture_dir=str(self.signals) if self.capture else "",
            window=self.window,
            revocation_poll=self.revocation_poll,
            log_level=self.log_level,
        )
        self.controller_config.write_text(render_config(controller, full=False))

    @contextlib.contextmanager
    def repository(self) -> Iterator[Repository]:
        """The server's repository, opened as the administrator would."""
        repository = open_store(self.store or self.database, read_key_file(self.master_key))
        try:
            yield repository
        finally:
            repository.close()

    def server_keys(self) -> dict[bytes, bytes]:
        """Each node's current key at the server (for audits such as "no IK left";
        never print them)."""
        with self.repository() as repository:
            return dict(repository.unwrapped_node_keys())

    def pending_candidates(self) -> int:
        """Unfinished bootstraps the server still holds a candidate PSK for."""
        with self.repository() as repository:
            return repository.count_all_pending()

    def node_statuses(self) -> list[str]:
        with self.repository() as repository:
            return [node.status for node in repository.list_nodes()]

    def cli(self, *args: str) -> str:
        """Run a ``keystrap`` command in the site directory; return its output."""
        done = subprocess.run(  # noqa: S603 - our own CLI, argument list
            keystrap_command(*args), cwd=self.root, capture_output=True, text=True, check=False
        )
        if done.returncode in (EXIT_INTERRUPTED, -signal.SIGINT):
            # Ctrl-C reached the command too (it goes to the whole foreground
            # group): the run was interrupted, not failed. A RuntimeError here
            # ended keystrap demo or attack in a traceback.
            raise KeyboardInterrupt
        if done.returncode != 0:
            raise RuntimeError(f"keystrap {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def controller_cli(self, *args: str) -> str:
        """``keystrap controller ACTION ...`` with this site's controller configuration."""
        return self.cli("controller", "--config", str(self.controller_config), *args)

    def controller_refuses(self, *args: str) -> bool:
        """True if ``keystrap controller ACTION ...`` exits with an error."""
        try:
            self.controller_cli(*args)
        except RuntimeError:
            return True
        return False

    def admin(self, *args: str) -> str:
        return self.cli("admin", "--config", str(self.server_config), *args)

    def register_controller(self) -> None:
        self.admin(
            "controller",
            "add",
            self.controller_id,
            "--name",
            "demo",
            "--key-out",
            str(self.root / "data" / "controller-sk.key"),
        )

    def order(
        self,
        count: int,
        installer: str = "acme",
        key_mode: str = "shared",
        name: str = "nodes",
        controller: str | None = None,
        profile: str = "paper",
    ) -> Path:
        """``keystrap admin order create``; returns the installer's bundle.
        ``profile`` is the nodes' wire profile (paper or compact)."""
        bundle = self.root / f"{name}-bundle.json"
        self.admin(
            "order",
            "create",
            "--installer",
            installer,
            "--controller",
            controller or self.controller_id,
            "--count",
            str(count),
            "--oob",
            f"unix:{self.oob_socket}",
            "--out",
            str(bundle),
            "--key-mode",
            key_mode,
            "--profile",
            profile,
        )
        return bundle

    def enrol(
        self,
        count: int,
        installer: str = "acme",
        key_mode: str = "shared",
        name: str = "nodes",
        profile: str = "paper",
    ) -> list[Path]:
        """Order ``count`` nodes and install them; returns the node files."""
        bundle = self.order(count, installer, key_mode, name, profile=profile)
        return self.install(bundle, self.root / name)

    def install(self, bundle: Path, out: Path) -> list[Path]:
        """The installer's step, for devices with this site's out-of-band media."""
        up, down = self.channels
        self.cli(
            "install", str(bundle), "--out", str(out), "--channel-up", up, "--channel-down", down
        )
        return sorted(out.glob("*.json"))

    async def start_server(self) -> Service:
        self.server = start_service(
            "server",
            ["server", "--config", str(self.server_config)],
            self.root,
            self.root / "server.log",
        )
        await wait_for_server("127.0.0.1", self.server_port, self.server)
        return self.server

    async def start_controller(self) -> Service:
        with_server = ["--with-server", "--server-config", str(self.server_config)]
        self.controller = start_service(
            "controller",
            ["controller", "--config", str(self.controller_config)]
            + (with_server if self.small_network else []),
            self.root,
            self.root / "controller.log",
        )
        await wait_for_socket(self.oob_socket, self.controller)
        return self.controller

    async def start_node(self, node_file: Path, port: int, *extra: str) -> Service:
        """``keystrap node FILE --serve PORT``: bootstrap if needed, then serve CoAPS."""
        log = self.root / f"node-{node_file.stem}.log"
        since = log.stat().st_size if log.exists() else 0
        service = start_service(
            "node", ["node", str(node_file), "--serve", str(port), *extra], self.root, log
        )
        await wait_for_log(service, "serving coaps://", since)
        return service

    async def start_keyed_node(self, node_id: bytes, key: bytes, port: int) -> Service:
        """A node that already holds ``key`` as its PSK, serving CoAPS, with no
        bootstrap: for DTLS measurements and for interop tests with a chosen key."""
        path = self.root / f"{node_id.hex()}-keyed.json"
        state = NodeState(node_id, bytes(8), key, NodeStage.KEYED)
        # It never bootstraps: its controller's address need only be a valid one.
        save_node_file(path, NodeFile(state, "127.0.0.1", 5684, "unix:none", confirmed=True))
        return await self.start_node(path, port)

    async def start(self) -> None:
        """The server, then the controller; in a small network, one process for both."""
        if not self.small_network:
            await self.start_server()
        await self.start_controller()

    def stop(self) -> None:
        for service in (self.controller, self.server):
            if service is not None:
                service.stop()
        if self.relay is not None:
            self.relay.close()


__all__ = ["Site", "forward_all"]
