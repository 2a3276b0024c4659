"""The attack harness end to end: every scenario against real processes, and the
paper's baselines (issue: prove the security claims)."""

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
