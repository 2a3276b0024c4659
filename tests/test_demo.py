"""``make demo`` runs ``keystrap demo``: it must succeed, and say so, end to end."""

from __future__ import annotations

import subprocess

from keystrap_lab.processes import keystrap_command


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
