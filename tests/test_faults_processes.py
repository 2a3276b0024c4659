"""Faults over the real processes: a lossy in-band path, SIGKILL at each in-band step."""

from pathlib import Path

import pytest

from keystrap.wire import FlightType
from keystrap_lab.attack.faults import kill_at, lossy_run
from keystrap_lab.attack.netem import Netem

from .services_helpers import run


def test_lossy_duplicating_reordering_path(tmp_path: Path) -> None:
    """20 % loss both ways, duplicates, reordering and jitter; bench/faults.py sweeps
    0-50 % loss over more nodes."""
    netem = Netem(loss=0.2, duplicate=0.1, reorder=0.1, delay=0.01, jitter=0.01, seed=7)
    result = run(lossy_run(tmp_path, 5, netem))
    assert result.completed == 5 and result.consistent
    assert netem.counts.get("dropped", 0) > 0 and netem.counts.get("duplicated", 0) > 0


@pytest.mark.parametrize(
    ("flight", "victim"),
    [
        (FlightType.F2_REQUEST, "server"),
        (FlightType.F3_GRANT, "controller"),
        (FlightType.F6_CONFIRM, "server"),
        (FlightType.F7_CONFIRMED, "controller"),
    ],
    ids=[
        "server-after-flight-2",
        "controller-after-flight-3",
        "server-after-flight-6",
        "controller-after-flight-7",
    ],
)
def test_sigkill_at_each_in_band_step(tmp_path: Path, flight: FlightType, victim: str) -> None:
    result = run(kill_at(tmp_path, 3, flight, victim))
    assert result.completed == 3 and result.consistent
