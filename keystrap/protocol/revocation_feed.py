"""The controller's side of the revocation feed (flights 9 and 10), sans I/O.

One poll is a conversation of pages: the feed makes a query after its cursor
with a fresh challenge, checks the answer against that challenge (so an old,
shorter list cannot be replayed), and says which nodes to drop and whether to
ask for another page. The service only moves the bytes, drops the nodes,
stores :attr:`RevocationFeed.cursor` after the nodes are dropped, and asks
again while :attr:`Page.more` says so.
"""

from __future__ import annotations

from itertools import pairwise

from keystrap.protocol.keys import RandomSource
from keystrap.protocol.replies import Reply, Status
from keystrap.wire import DecodeError, Flight9, Flight10
from keystrap.wire.frozen import frozen
from keystrap.wire.revocation import CHALLENGE_SIZE, MAX_ENTRIES

MAX_CURSOR = 2**32 - 1  # flight 9 carries the cursor in 4 bytes


@frozen
class Page:
    revoked: tuple[bytes, ...]  # ID_i of nodes to drop, in the server's order
    cursor: int  # to be stored once they are dropped
    more: bool  # a full page, or a rewind: ask again at once
    # The cursor the server sent back from: its store numbers fewer revocations
    # than this controller has applied (restored from a backup, or another store).
    rewound_from: int | None = None


@frozen
class FeedRefused:
    """The page was refused or did not authenticate; the cursor stays."""

    reason: str


class RevocationFeed:
    def __init__(self, controller_id: bytes, sk_cs: bytes, cursor: int, rng: RandomSource) -> None:
        """``cursor``: the last revocation sequence number already applied (stored)."""
        self.cursor = cursor
        self._controller_id = controller_id
        self._sk_cs = sk_cs
        self._rng = rng
        self._challenge: bytes | None = None

    def query(self) -> bytes:
        """Flight 9 asking for the revocations after the cursor."""
        query = Flight9(self._controller_id, self.cursor, self._rng(CHALLENGE_SIZE))
        self._challenge = query.challenge
        return query.seal(self._sk_cs)

    def receive(self, reply: Reply) -> Page | FeedRefused:
        """The server's answer to the last :meth:`query` (answered once only)."""
        challenge, self._challenge = self._challenge, None
        if challenge is None:
            return FeedRefused("an answer to no query")
        if reply.status is not Status.OK:
            return FeedRefused(f"refused: {reply.status.value} {reply.reason}")
        try:
            answer = Flight10.open(
                reply.payload, self._sk_cs, controller_id=self._controller_id, challenge=challenge
            )
        except DecodeError as exc:
            return FeedRefused(f"answer rejected ({exc})")
        if not _in_order(self.cursor, answer):
            return FeedRefused(
                "answer out of order (entries not ascending past the cursor to next)"
            )
        asked, self.cursor = self.cursor, answer.next_after
        revoked = tuple(node_id for _, node_id in answer.entries)
        rewound = asked if answer.next_after < asked else None
        more = len(answer.entries) >= MAX_ENTRIES or rewound is not None
        return Page(revoked, answer.next_after, more, rewound)


def _in_order(cursor: int, answer: Flight10) -> bool:
    """Entries numbered upwards from past ``cursor`` and ``next`` their last, or,
    with none, ``next`` at or before ``cursor`` (a restored server's rewind).
    Authenticated is not enough: a ``next`` beyond the entries would move the
    cursor past revocations never applied, and nothing would fetch them again."""
    if not answer.entries:
        return answer.next_after <= cursor
    numbers = [cursor, *(seq for seq, _ in answer.entries)]
    ascending = all(a < b for a, b in pairwise(numbers))
    return ascending and answer.next_after == numbers[-1]
