"""A node's bootstrap attempts, each told in plain words.

The server sees two of the flights itself (2: the controller asks for the
node's key; 6: the controller passes on the node's proof) and infers the rest:
a bootstrap it granted that no flight 6 followed within the window means the
node never proved it holds the new key, which nearly always means flight 4 did
not authenticate at the node.
"""

from __future__ import annotations

from dataclasses import dataclass

from keystrap.store import activity

PLAIN: dict[str, str] = {
    "unknown node": "the server has no such node: it was never enrolled, or its order was removed",
    "node revoked": "the node is revoked; re-enrol it to let it bootstrap again",
    "too many unfinished bootstraps": "the node started too many bootstraps that never "
    "finished; the server refuses more until one completes",
    "another bootstrap of this node completed": "another attempt of this node completed "
    "first; this one was superseded",
    "node proof (flight 5) failed": "the node's proof (flight 5) did not authenticate: "
    "the node derived another key than the server",
    "node proof carries another RN_c": "the node's proof (flight 5) answered another "
    "challenge: a replayed or mixed-up flight",
}
STALLED = (
    "no proof from the node within {window} s: flight 4 most likely failed authentication "
    "at the node, i.e. the node's initial key does not match the order"
)
FLIGHT = {2: "flight 2 (key request)", 6: "flight 6 (confirmation)"}


def plain(flight: int, cause: str) -> str:
    return f"{FLIGHT.get(flight, f'flight {flight}')} refused: {PLAIN.get(cause, cause)}"


@dataclass
class Attempt:
    controller_id: bytes
    tid: int
    started: float
    steps: list[str]
    outcome: str  # confirmed, failed, superseded, in progress
    cause: str = ""


def attempts(
    log: list[tuple[float, bytes, int, int, str, str]],
    granted: list[tuple[bytes, int, str, int]],
    now: float,
    window: int,
) -> list[Attempt]:
    """``log``: ``(at, controller_id, tid, flight, outcome, cause)`` rows of the
    bootstrap log; ``granted``: ``(controller_id, tid, status, created)`` of the
    server's transactions. Newest attempt first."""
    found: dict[tuple[bytes, int], Attempt] = {}
    for controller_id, tid, status, created in granted:
        attempt = Attempt(controller_id, tid, float(created), [], "in progress")
        if status in ("confirmed", "superseded"):
            attempt.outcome = status
        elif status == "pending" and created < now - window:
            attempt.outcome, attempt.cause = "failed", STALLED.format(window=window)
        found[(controller_id, tid)] = attempt
    for at, controller_id, tid, flight, outcome, cause in log:
        attempt = found.setdefault(
            (controller_id, tid), Attempt(controller_id, tid, at, [], "in progress")
        )
        if outcome == activity.REFUSED:
            attempt.outcome, attempt.cause = "failed", plain(flight, cause)
        elif outcome == activity.GRANTED:
            attempt.steps.append("flight 2 accepted: the server granted the node's key (flight 3)")
        else:
            attempt.steps.append("flight 6 accepted: the node proved its new key; confirmed")
            attempt.outcome, attempt.cause = "confirmed", ""
    return sorted(found.values(), key=lambda a: a.started, reverse=True)
