from pathlib import Path

import pytest

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


def test_print_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["controller", "--print-config", "--id", "02:00:00:00:00:00:00:05"]) == 0
    out = capsys.readouterr().out
    assert 'id = "02:00:00:00:00:00:00:05"' in out and "# " in out
