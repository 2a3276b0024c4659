"""A bare ``pip install keystrap`` runs the server, the controller and the node
without any media library, and asking for a medium it lacks is one line naming
the extra that brings it (exit 2)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from keystrap.cli.main import main
from keystrap.extras import MEDIA_EXTRAS, MissingExtra, require_medium
from tests.bare_install import MEDIA_LIBRARIES, bare_environment

ENTRY_POINTS = (
    "keystrap.cli.main",
    "keystrap.services.server",
    "keystrap.services.controller",
    "keystrap.services.node_agent",
    "keystrap.services.small_network",
)


def bare_python(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env=bare_environment(tmp_path / "hook"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_hook_blocks_each_media_library(tmp_path: Path) -> None:
    """Without this, the tests below would pass on a machine that merely never
    imported a media library."""
    code = "\n".join(
        f"try:\n    import {name}\nexcept ModuleNotFoundError:\n    print({name!r})"
        for name in MEDIA_LIBRARIES
    )
    done = bare_python(tmp_path, code)
    assert done.stdout.split() == list(MEDIA_LIBRARIES), done.stderr


def test_entry_points_import_and_run_without_media_libraries(tmp_path: Path) -> None:
    code = f"""
import importlib, sys
for name in {ENTRY_POINTS!r}:
    importlib.import_module(name)
from keystrap.cli.main import main
assert main(["server", "--print-config"]) == 0
assert main(["controller", "--channel-to-node", "raw", "--print-config"]) == 0
from keystrap.oob.medium import get_medium
assert get_medium("raw").name == "raw"
print("loaded:", sorted(set(sys.modules) & set({MEDIA_LIBRARIES!r})))
"""
    done = bare_python(tmp_path, code)
    assert done.returncode == 0, done.stderr
    assert "loaded: []" in done.stdout


def test_a_missing_medium_is_one_line_naming_its_extra(tmp_path: Path) -> None:
    cases = {
        "audio": ["oob", "encode", "--channel", "audio", "--hex", "00"],
        "qr": ["controller", "--state", "sbr.sqlite", "--key-file", "sk.key"],
        "light": ["demo", "--channel", "light", "--nodes", "1"],
    }
    for extra, argv in cases.items():
        code = f"import sys\nfrom keystrap.cli.main import main\nsys.exit(main({argv!r}))"
        done = bare_python(tmp_path, code)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.splitlines()
        assert len(lines) == 1, done.stderr
        assert f"the {extra} medium needs" in lines[0]
        assert f"pip install 'keystrap[{extra}]'" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hook"]  # nothing was created


def test_demo_and_attack_without_the_lab_name_it(tmp_path: Path) -> None:
    for command in ("demo", "attack"):
        code = (
            "import sys\nsys.modules['keystrap_lab'] = None  # not installed\n"
            f"from keystrap.cli.main import main\nsys.exit(main([{command!r}]))"
        )
        done = bare_python(tmp_path, code)
        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines() == [
            f"keystrap {command}: error: keystrap {command} needs the lab package "
            "(keystrap-lab): pip install ./lab in keystrap's repository, as make setup does"
        ]


def declared_extras() -> set[str]:
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    return set(pyproject["project"]["optional-dependencies"])


def test_every_missing_library_names_a_declared_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One way to install what is missing, the extra's, whichever command found it
    missing: a bare ``pip install nfcpy`` would skip the bounds the extra sets."""
    extras = declared_extras()
    cases = {
        "nfc": ["oob", "decode", "--channel", "nfc", "--tag"],
        "sounddevice": ["oob", "decode", "--channel", "audio", "--record", "1"],
        "uvicorn": ["console", "--database", "absent.sqlite"],
    }
    for library, argv in cases.items():
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, library, None)  # import fails, as when absent
            assert main(argv) == 2
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1, lines
        named = re.search(r"pip install 'keystrap\[([a-z]+)\]'$", lines[0])
        assert named is not None, lines[0]
        assert named[1] in extras, lines[0]
    for medium, libraries in MEDIA_EXTRAS.items():
        for library in libraries:
            with monkeypatch.context() as patch:
                patch.setitem(sys.modules, library, None)
                with pytest.raises(MissingExtra) as info:
                    require_medium(medium)
            assert str(info.value).endswith(f"pip install 'keystrap[{medium}]'")
            assert medium in extras
