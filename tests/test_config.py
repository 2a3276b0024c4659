import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keystrap.cli.main import main
from keystrap.config import ConfigError, ControllerConfig, ServerConfig, load_config, render_config


def test_defaults_work_without_a_file() -> None:
    config = load_config(ServerConfig, None, {})
    assert config.port == 5683 and config.window == 120


def test_file_values_paths_relative_to_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text('[server]\nport = 6000\ndatabase = "db/x.sqlite"\n')
    config = load_config(ServerConfig, path, {"window": 30, "host": None})
    assert config.port == 6000 and config.window == 30
    assert config.database == tmp_path / "db" / "x.sqlite"


def test_flags_not_given_leave_file_paths_relative_to_the_file(tmp_path: Path) -> None:
    """The CLI passes every option, None where no flag was typed."""
    path = tmp_path / "server.toml"
    path.write_text('[server]\ndatabase = "db/x.sqlite"\n')
    config = load_config(ServerConfig, path, {"database": None, "master_key": None})
    assert config.database == tmp_path / "db" / "x.sqlite"
    typed = load_config(ServerConfig, path, {"database": "other.sqlite"})
    assert typed.database == Path("other.sqlite")  # a typed flag is relative to where one is


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nprot = 1\n", "unknown option"),
        ("[sever]\n", "unknown section"),
        ('[server]\nport = "x"\n', "integer"),
        ("[server\n", "server.toml"),
        ("[server]\ndatabase = 5\n", "must be a path"),
        ("server = 3\n", "must be a table"),
    ],
)
def test_bad_files_are_refused_clearly(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "server.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(ServerConfig, path, {})


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://[", "Invalid IPv6 URL"),
        ("postgresql://k:s3cret@db:99999/sbs", "Port out of range"),
        ("postgres://k:s3cret@db:0/sbs", "port 0"),
    ],
)
def test_a_postgres_url_that_cannot_be_parsed_is_refused_without_its_password(
    url: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match="database: not a valid PostgreSQL URL") as refused:
        load_config(ServerConfig, None, {"database": url})
    assert problem in str(refused.value) and "s3cret" not in str(refused.value)
    good = "postgresql://k:s3cret@[::1]:5432/sbs?sslmode=require"
    assert load_config(ServerConfig, None, {"database": good}).database == good


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_bytes(b'[server]\nhost = "\xff"\n')
    with pytest.raises(ConfigError):
        load_config(ServerConfig, path, {})


def test_render_round_trips(tmp_path: Path) -> None:
    config = load_config(ControllerConfig, None, {"id": "02:00:00:00:00:00:00:09"})
    path = tmp_path / "c.toml"
    path.write_text(render_config(config))
    again = load_config(ControllerConfig, path, {})
    assert again.id == config.id and again.window == config.window


def test_cli_reports_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "server.toml"
    path.write_text("[server]\nbogus = 1\n")
    assert main(["server", "--config", str(path)]) == 2
    assert "unknown option" in capsys.readouterr().err


@pytest.mark.parametrize("flag", [["--host", "10.0.0.5"], ["--port=6000"]])
def test_a_controller_refuses_host_and_port_with_where_the_nid_is_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: list[str]
) -> None:
    """They were said to be announced to the nodes, but a controller listens on
    nothing and the nodes' NID comes from the registration: taking them would be
    ignoring them."""
    assert main(["controller", *flag, "--print-config"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert flag[0].split("=")[0] in captured.err
    assert "keystrap admin controller add --host --port" in captured.err
    path = tmp_path / "c.toml"
    path.write_text("[controller]\nport = 5684\n")
    with pytest.raises(ConfigError, match=r"\[controller\] port: .*admin controller add"):
        load_config(ControllerConfig, path, {})
    with pytest.raises(SystemExit):
        main(["controller", "--help"])
    shown = capsys.readouterr().out
    assert "--port" not in shown and "announce" not in shown


def test_print_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["controller", "--print-config", "--id", "02:00:00:00:00:00:00:05"]) == 0
    out = capsys.readouterr().out
    assert 'id = "02:00:00:00:00:00:00:05"' in out and "# " in out


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_config_and_node_files_raise_only_their_errors(tmp_path: Path, data: bytes) -> None:
    """Any bytes as a configuration file, a node state file or a bundle."""
    from keystrap.enrolment import install_bundle
    from keystrap.store.errors import StoreError
    from keystrap.store.node_file import load_node_file

    path = tmp_path / "input"
    path.write_bytes(data)
    with contextlib.suppress(ConfigError):
        load_config(ServerConfig, path, {})
    with contextlib.suppress(ConfigError):
        load_config(ControllerConfig, path, {})
    with contextlib.suppress(StoreError):
        load_node_file(path)
    with contextlib.suppress(StoreError):
        install_bundle(path, tmp_path / "out")


@given(
    values=st.dictionaries(
        st.sampled_from(["host", "port", "window", "database", "profile", "log_level"]),
        st.one_of(
            st.integers(),
            st.text(max_size=10),
            st.booleans(),
            st.floats(),
            st.lists(st.integers(), max_size=2),
        ),
    )
)
def test_typed_values_are_checked(values: dict[str, object]) -> None:
    with contextlib.suppress(ConfigError):
        load_config(ServerConfig, None, values)


def test_a_config_file_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    """Windows editors often save UTF-8 with a BOM; it was "Invalid statement"."""
    path = tmp_path / "server.toml"
    path.write_bytes("\ufeff[server]\nport = 5699\n".encode())
    assert load_config(ServerConfig, path, {}).port == 5699
