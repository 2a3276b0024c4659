"""The paper's small network: ``keystrap controller --with-server`` is the controller
and the server in one process over the server's store, with real node processes
bootstrapping through it, and with no media library installed (raw medium)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from keystrap.ids import eui64
from keystrap.store.keyfile import write_key_file
from keystrap.store.node_file import load_node_file
from keystrap_lab.processes import (
    Service,
    free_udp_port,
    keystrap_command,
    start_service,
    wait_for_log,
    wait_for_server,
)
from keystrap_lab.site import Site
from tests.bare_install import bare_environment
from tests.services_helpers import assert_all_rekeyed, shared_ik


async def bootstrap_process(path: Path) -> tuple[int, str]:
    """``keystrap node FILE`` as its own process: its status and output."""
    process = await asyncio.create_subprocess_exec(
        *keystrap_command("node", str(path), "--linger", "10", "--timeout", "30"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


def test_controller_with_server_bootstraps_nodes_in_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", bare_environment(tmp_path / "hook")["PYTHONPATH"])
    site = Site(
        tmp_path / "site",
        channels=("raw", "raw"),
        small_network=True,
        revocation_poll=1,
        log_level="debug",
    )

    async def scenario() -> None:
        await site.prepare()
        site.register_controller()
        nodes = site.enrol(3)
        await site.start()
        assert site.server is None and site.controller is not None
        try:
            results = await asyncio.gather(*(bootstrap_process(p) for p in nodes))
            for status, out in results:
                assert status == 0 and ": confirmed in " in out, out
            assert_all_rekeyed(site, nodes, shared_ik(site))
            assert site.node_statuses() == ["active"] * 3
            log = site.controller.log_text()
            assert log.count("activated node=") == 3  # the server's core, in this process
            assert log.count("server confirmed; bootstrap complete") == 3

            # The store is the server's: a separate server on it is refused, and the
            # admin commands act on it as before (a revocation reaches the controller).
            assert site.controller_refuses("nodes") is False
            holder = rf"another server \(pid {site.controller.process.pid}\) is running"
            with pytest.raises(RuntimeError, match=holder):
                site.cli(
                    "server", "--config", str(site.server_config), "--port", str(site.server_port)
                )
            victim = eui64(load_node_file(nodes[0]).state.node_id)
            site.admin("revoke", victim)
            await wait_for_log(site.controller, f"node={victim} revoked by the server", 0, 15)
            assert site.controller_refuses("show", victim)
        finally:
            site.stop()

    asyncio.run(scenario())


def small_network(site: Site, *extra: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``keystrap controller --with-server`` on ``site``'s configuration, to its end."""
    return subprocess.run(
        keystrap_command(
            "controller",
            "--config",
            str(site.controller_config),
            "--with-server",
            "--server-config",
            str(site.server_config),
            *extra,
        ),
        cwd=site.root,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_a_start_that_fails_leaves_no_server_store_behind(tmp_path: Path) -> None:
    """The server's store is opened first, and made if there is none; a new store
    knows no controller, so that start fails. It used to leave the new empty
    store and its master key behind, which the next start took for the site's."""
    site = Site(tmp_path / "site", channels=("raw", "raw"), small_network=True)
    asyncio.run(site.prepare())
    data = site.root / "data"
    write_key_file(data / "controller-sk.key", bytes(16))  # from another site
    before = sorted(data.iterdir())
    result = small_network(site)
    last = result.stderr.splitlines()[-1]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert last.startswith("keystrap controller: error: ") and "not registered" in last
    assert sorted(data.iterdir()) == before
    # The new master key was logged as made: the log says it is gone again.
    said = result.stderr.splitlines()
    made = [i for i, line in enumerate(said) if "created the wrapping file" in line]
    assert len(made) == 1 and "created above is removed again" in said[made[0] + 1], said


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("unregistered id", "controller 02:00:00:00:00:00:00:c1 is not registered"),
        ("another key", "controller-sk.key is not the key the server's store"),
    ],
)
def test_a_controller_its_own_store_would_refuse_does_not_start(
    tmp_path: Path, fault: str, error: str
) -> None:
    """It used to run, every flight 2 and revocation query refused (4.01), with
    no way to put it right but a restart: its key is read once, and no admin
    command registers a key it already holds."""
    site = Site(tmp_path / "site", channels=("raw", "raw"), small_network=True)
    asyncio.run(site.prepare())
    site.register_controller()
    data = site.root / "data"
    extra = []
    if fault == "unregistered id":
        extra = ["--id", "02:00:00:00:00:00:00:c1"]
    else:
        write_key_file(data / "controller-sk.key", bytes(16), force=True)  # rotated, say
    before = sorted(data.iterdir())
    result = small_network(site, *extra, timeout=20)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("keystrap controller: error: ") and error in result.stderr
    assert sorted(data.iterdir()) == before  # no controller state made either


def test_the_controller_state_may_not_be_the_server_store(tmp_path: Path) -> None:
    """Both took their lock on the one file: the second lock, the controller's,
    was refused as "another controller (pid N)", N being this very process."""
    site = Site(tmp_path / "site", channels=("raw", "raw"), small_network=True)
    asyncio.run(site.prepare())
    site.register_controller()
    result = small_network(site, "--state", "data/./sbs.sqlite")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(
        "keystrap controller: error: the controller's state data/sbs.sqlite is the server's store"
    ), result.stderr


@pytest.mark.parametrize(
    ("server", "controller"),
    [("127.0.0.1:PORT", "PORT"), ("0.0.0.0:PORT", "127.0.0.1:PORT"), ("[::1]:PORT", "[::]:PORT")],
)
def test_one_metrics_address_for_both_roles_is_refused_by_name(
    tmp_path: Path, server: str, controller: str
) -> None:
    """This process serves both roles' metrics: one address in both settings
    failed the start with "address already in use", as if another process held
    it. Now one line names both settings, before a store is made."""
    site = Site(tmp_path / "site", channels=("raw", "raw"), small_network=True)
    asyncio.run(site.prepare())
    site.register_controller()
    port = str(free_udp_port())
    settings = site.server_config.read_text()
    site.server_config.write_text(
        settings.replace("[server]\n", f'[server]\nmetrics = "{server.replace("PORT", port)}"\n')
    )
    before = sorted((site.root / "data").iterdir())
    result = small_network(site, "--metrics", controller.replace("PORT", port), timeout=20)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(
        f"keystrap controller: error: metrics: the controller's {controller.replace('PORT', port)} "
        f"and the server's {server.replace('PORT', port)} are one address"
    ), result.stderr
    assert "metrics in [controller] or --metrics; metrics in --server-config" in result.stderr
    assert sorted((site.root / "data").iterdir()) == before


def test_a_failed_start_keeps_the_master_key_of_a_postgresql_store(
    tmp_path: Path, pg_url: str
) -> None:
    """A start on a new PostgreSQL store fails (it knows no controller yet), but
    the database keeps the check of the master key made in it. The master key
    was taken back all the same: every later command then found "a stored key
    does not unwrap -- wrong master key file?", the site lost before it began."""
    site = Site(tmp_path / "site", channels=("raw", "raw"), store=pg_url)
    asyncio.run(site.prepare())
    result = small_network(site)
    assert result.returncode == 2 and "not registered" in result.stderr, result.stderr
    assert "created the wrapping file" in result.stderr  # and kept: not said to be gone
    assert "removed again" not in result.stderr, result.stderr
    site.register_controller()  # the administrator's next step, on that store
    site.enrol(1)


def test_server_options_that_mean_nothing_in_process_are_refused(tmp_path: Path) -> None:
    """The server binds no address in the controller's process, and the process
    logs at the controller's level: these options of the server's file were
    taken and silently ignored."""
    site = Site(tmp_path / "site", channels=("raw", "raw"), small_network=True)
    asyncio.run(site.prepare())
    site.register_controller()
    site.server_config.write_text(
        '[server]\ndatabase = "data/sbs.sqlite"\nmaster_key = "data/sbs-master.key"\n'
        'host = "0.0.0.0"\nport = 5999\nlog_level = "debug"\n'
    )
    data = site.root / "data"
    before = sorted(data.iterdir())
    result = small_network(site, timeout=20)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(
        f"keystrap controller: error: {site.server_config}: [server] host, port, log_level: "
        "no meaning with --with-server"
    ), result.stderr
    assert sorted(data.iterdir()) == before


def test_on_postgresql_a_separate_server_runs_alongside_unless_on_the_same_port(
    tmp_path: Path, pg_url: str
) -> None:
    """What the README says of a separate server on the small network's store: on
    PostgreSQL, servers share one database by design; only one on the port the
    small network's file names (the same local file) is refused."""
    site = Site(tmp_path / "site", channels=("raw", "raw"), small_network=True, store=pg_url)

    async def scenario() -> None:
        await site.prepare()
        site.register_controller()
        nodes = site.enrol(2)
        await site.start()
        assert site.controller is not None
        other: Service | None = None
        try:
            holder = rf"another server \(pid {site.controller.process.pid}\) is running"
            with pytest.raises(RuntimeError, match=holder):
                site.cli("server", "--config", str(site.server_config))
            port = free_udp_port()
            other = start_service(
                "server",
                ["server", "--config", str(site.server_config), "--port", str(port)],
                site.root,
                site.root / "other.log",
            )
            await wait_for_server("127.0.0.1", port, other)
            results = await asyncio.gather(*(bootstrap_process(p) for p in nodes))
            for status, out in results:
                assert status == 0 and ": confirmed in " in out, out
            assert site.node_statuses() == ["active"] * 2
        finally:
            if other is not None:
                other.stop()
            site.stop()

    asyncio.run(scenario())
