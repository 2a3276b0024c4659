"""The attack harness end to end: every scenario against real processes, and the
paper's baselines (issue: prove the security claims)."""

import subprocess
import sys
from pathlib import Path

import pytest

from keystrap_lab.attack.baselines import baseline_rows
from keystrap_lab.attack.report import FALLS, HOLDS, RESIDUAL, render
from keystrap_lab.attack.runner import run_all, verdict_ok
from keystrap_lab.attack.scenarios import SCHEME

from .services_helpers import run


def test_every_scenario_holds_and_the_baselines_fall(tmp_path: Path) -> None:
    rows = run(run_all(tmp_path))
    report = render(rows)
    ours = [r for r in rows if r.scheme == SCHEME]
    assert len(ours) == 12, report
    assert all(r.verdict in (HOLDS, RESIDUAL) for r in ours), report
    # The two residual risks are the paper's defaults, and each has a closing row.
    residual = [r.attack for r in ours if r.verdict == RESIDUAL]
    assert len(residual) <= 2, report
    assert any("diversified" in r.attack and r.verdict == HOLDS for r in ours), report
    assert any("hardened" in r.attack and r.verdict == HOLDS for r in ours), report
    assert verdict_ok(rows)


@pytest.mark.parametrize("scheme", ["Kang 2014", "Jennings"])
def test_baselines_fall_to_the_installer(scheme: str) -> None:
    rows = [r for r in baseline_rows() if r.scheme.startswith(scheme)]
    installer = [r for r in rows if "installer" in r.attack]
    assert installer and all(r.verdict == FALLS for r in installer)
    assert all(r.verdict == HOLDS for r in rows if "installer" not in r.attack)


def attack_command(workdir: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "keystrap", "attack", "--workdir", str(workdir), *flags],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_the_command_keeps_the_expected_refusals_out_of_stderr(tmp_path: Path) -> None:
    """Each attacked node logged every refusal it met as a warning: dozens of lines
    on stderr before a table that exits 0. They show only with --verbose, and the
    table is the same either way."""
    quiet = attack_command(tmp_path / "quiet")
    assert "WARNING" not in quiet.stderr, quiet.stderr
    table = quiet.stdout.splitlines()
    assert table[0].split() == ["scheme", "attack", "verdict", "expected", "->", "observed"]
    assert sum(line.startswith(f"{SCHEME} ") for line in table) == 12, quiet.stdout
    assert table[-1].startswith("keystrap: "), quiet.stdout
    verbose = attack_command(tmp_path / "verbose", "--verbose")
    assert "the controller says: controller refused (unverified)" in verbose.stderr
    assert verbose.stdout == quiet.stdout
