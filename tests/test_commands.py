"""The command table and the flags generated from the configuration schema."""

from __future__ import annotations

import argparse
import tomllib
from dataclasses import fields, replace
from pathlib import Path

import pytest

from keystrap.cli.commands import COMMANDS
from keystrap.cli.main import build_parser, main
from keystrap.config import (
    CHOICES,
    ControllerConfig,
    ServerConfig,
    in_process_server,
    load_config,
)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def test_every_command_of_the_table_is_a_subcommand_and_nothing_else() -> None:
    assert set(subcommands(build_parser())) == set(COMMANDS)


@pytest.mark.parametrize(
    ("command", "schema"), [("server", ServerConfig), ("controller", ControllerConfig)]
)
def test_every_option_of_the_schema_is_a_flag(
    command: str, schema: type[ServerConfig] | type[ControllerConfig]
) -> None:
    defaults = schema()
    for option in fields(schema):
        default = getattr(defaults, option.name)
        value = CHOICES[option.name][-1] if option.name in CHOICES else str(default) or "x"
        flag = "--" + option.name.replace("_", "-")
        args = build_parser().parse_args([command, flag, value])
        assert getattr(args, option.name) is not None, flag
        assert str(getattr(args, option.name)) == value


def test_flags_override_the_file_and_only_the_flags_typed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "server.toml"
    config.write_text('[server]\nmax_pending = 5\nwindow = 30\nprofile = "hardened"\n')
    assert main(["server", "--config", str(config), "--window", "60", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "max_pending = 5\n" in out
    assert "window = 60\n" in out
    assert 'profile = "hardened"\n' in out


def test_a_flag_outside_its_choices_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["controller", "--channel-to-node", "smoke", "--print-config"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "--channel-to-node" in err[0]


def test_with_server_takes_no_action_and_server_config_needs_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["controller", "--with-server", "nodes"]) == 2
    assert main(["controller", "--server-config", "server.toml"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "keystrap controller: error: --with-server runs the service; it takes no nodes",
        "keystrap controller: error: --server-config needs --with-server",
    ]


@pytest.mark.parametrize(
    "rest", [["nodes"], ["show", "02:00:00:00:00:00:00:01"], ["--print-config"]]
)
def test_server_config_needs_with_server_whatever_else_is_asked(
    rest: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """It was checked only when the service was to run: with an action or
    --print-config, the server's file was taken and never read."""
    monkeypatch.chdir(tmp_path)
    assert main(["controller", "--server-config", "server.toml", *rest]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["keystrap controller: error: --server-config needs --with-server"]


@pytest.mark.parametrize(
    ("flag", "value"), [("--server", "coap://192.0.2.1:5683"), ("--coap-endpoints", "8")]
)
def test_with_server_refuses_the_flags_of_a_separate_server(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """They were taken and ignored: the server is the controller's own process."""
    assert main(["controller", "--with-server", flag, value, "--print-config"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"keystrap controller: error: --with-server: the server is this process; it takes no {flag}"
    ]


@pytest.mark.parametrize(
    ("database", "port_shown"),
    [("data/sbs.sqlite", False), ("postgresql://keystrap:s3cret@db.example/sbs", True)],
)
def test_print_config_with_server_checks_and_shows_the_server_file(
    database: str,
    port_shown: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Only the controller's table was printed: the server's file was neither
    read nor shown, so a bad one passed and its options could not be seen."""
    monkeypatch.chdir(tmp_path)
    port = "port = 5700\n" if port_shown else ""
    Path("server.toml").write_text(f'[server]\ndatabase = "{database}"\nmax_pending = 5\n{port}')
    Path("controller.toml").write_text("[controller]\nwindow = 30\n")
    given = ["controller", "--config", "controller.toml", "--with-server"]
    assert main([*given, "--server-config", "server.toml", "--print-config"]) == 0
    out = capsys.readouterr().out
    doc = tomllib.loads(out)
    assert doc["controller"]["window"] == 30 and doc["server"]["max_pending"] == 5
    assert ("port" in doc["server"]) is port_shown and "host" not in doc["server"]
    assert "s3cret" not in out
    # Each table alone is what its file holds: the start takes it as it is.
    Path("server-shown.toml").write_text(out[out.index("[server]") :])
    Path("controller-shown.toml").write_text(out[: out.index("[server]")])
    shown, original = (
        in_process_server(Path("server-shown.toml")),
        in_process_server(Path("server.toml")),
    )
    if port_shown:  # PostgreSQL: the URL is shown without its password
        assert isinstance(shown.database, str) and "***" in shown.database
        shown = replace(shown, database=original.database)
    assert shown == original
    assert load_config(ControllerConfig, Path("controller-shown.toml"), {}) == load_config(
        ControllerConfig, Path("controller.toml"), {}
    )

    Path("bad.toml").write_text("[server]\nwindow = 0\n")
    assert main([*given, "--server-config", "bad.toml", "--print-config"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["keystrap controller: error: [server] window must be from 1 to 86400, got 0"]
