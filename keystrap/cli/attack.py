"""``keystrap attack``: the attack scenarios and the paper's baselines (lab package)."""

from __future__ import annotations

import argparse
from pathlib import Path

from keystrap.extras import require_lab


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    attack = sub.add_parser(
        "attack",
        help="run the attack scenarios and the paper's baselines (needs keystrap-lab)",
        description="Replays, bit flips, impersonation, a man in the middle, "
        "the installer holding IK_N and a rogue node, against real "
        "processes; and the 2014 draft and Jennings's QR enrolment.",
    )
    attack.add_argument("--workdir", type=Path, help="keep the sites' files here")
    attack.add_argument(
        "--verbose",
        action="store_true",
        help="also log each attacked node's refusals as it happens (the table sums them up)",
    )


def run(args: argparse.Namespace) -> int:
    require_lab("attack")
    import asyncio

    from keystrap.services.logs import setup_logging
    from keystrap_lab.attack.runner import main as attack_main

    setup_logging("warning", "attack")
    if not args.verbose:
        quiet_attacked_nodes()
    return asyncio.run(attack_main(args.workdir))


def quiet_attacked_nodes() -> None:
    """The attacks' node agents run in this process, and each refusal they are
    made to meet is a warning in a node's log; here every one is the outcome the
    table's observed column already reports, not something wrong with the run."""
    import logging

    logging.getLogger("keystrap.node").setLevel(logging.ERROR)
