"""``make demo`` runs ``keystrap demo``: it must succeed, and say so, end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from keystrap.cli.main import main
from keystrap_lab.processes import keystrap_command
from keystrap_lab.site import Site


def test_demo_bootstraps_configures_reinstalls_and_revokes() -> None:
    done = subprocess.run(
        keystrap_command("demo", "--nodes", "3"),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "3/3 bootstrapped" in out
    assert "0 of 3 node keys equal IK_N" in out
    assert "with PSK_i reads it back: same" in out
    assert "the same client with IK_N: no data" in out
    assert "re-installed: a new PSK; old PSK gets no data" in out
    assert "controller dropped its PSK, refuses it" in out
    assert out.rstrip().splitlines()[-1].startswith("demo succeeded")


def test_the_small_network_demo_runs_in_a_workdir_named_relatively(tmp_path: Path) -> None:
    """It ended in a traceback at its first step: the commands it runs in the
    work directory were given paths relative to the directory it was started in."""
    done = subprocess.run(
        keystrap_command(
            "demo", "--small-network", "--nodes", "1", "--channel", "raw", "--workdir", "kept"
        ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout + done.stderr
    assert done.stdout.rstrip().splitlines()[-1].startswith("demo succeeded")
    assert (tmp_path / "kept" / "data" / "sbs.sqlite").exists()


@pytest.mark.parametrize(
    "flag", [["--workdir", "kept"], ["--store", "sqlite"], ["--small-network"], ["--channel", "qr"]]
)
def test_the_in_process_demo_refuses_the_live_demos_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: list[str]
) -> None:
    """It has no files, store, processes or medium: a flag for them would be ignored,
    so it is refused by name -- even one that repeats the default."""
    argv = [str(tmp_path / a) if a == "kept" else a for a in flag]
    assert main(["demo", "--in-process", "--nodes", "1", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert f"takes no {flag[0]}" in captured.err
    assert not (tmp_path / "kept").exists()


def test_the_in_process_demo_runs_with_nodes_alone() -> None:
    alone = keystrap_command("demo", "--in-process", "--nodes", "2")
    done = subprocess.run(alone, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "demo result: all nodes bootstrapped" in done.stdout


@pytest.mark.parametrize("status", ["SystemExit(130)", "KeyboardInterrupt"])
def test_a_command_interrupted_by_ctrl_c_interrupts_the_lab(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: str
) -> None:
    """Ctrl-C reaches the lab's keystrap subprocesses too; the one it stopped is an
    interruption (demo and attack then exit 130), not a failure with a traceback."""
    monkeypatch.setattr(
        "keystrap_lab.site.keystrap_command",
        lambda *_args: [sys.executable, "-c", f"raise {status}"],
    )
    with pytest.raises(KeyboardInterrupt):
        Site(tmp_path).cli("install", "bundle.json")
