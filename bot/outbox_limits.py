"""Per-destination rate limits and text coalescing for the delivery worker.

The far sides drop what exceeds their limits without a word (WeCom: 30 app
messages a minute and 1,000 an hour per member per app; group robots 20 a
minute), so the worker never sends past them: a row that would exceed any window
waits, untouched, until that window has room. The counts come from the database
(`outbox.sends` of the rows sent, read once a round) plus the round's own sends,
so they hold across replicas; the claim lets one worker at a time send to a
rate-limited destination, so no two check the same count at once.

Where a destination allows it, consecutive plain texts waiting for it go out as
one message (within the platform's text size), spending one message of the limit
for all of them. A text is moved ahead only past rows of other cases: one case's
rows still reach the destination in the order written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from storage import outbox as repo
from storage.db import Database
from storage.models import OutboxMessage

TEXT_KIND = "text.send"
TEXT_KEYS = frozenset({"text", "alert"})  # a text row with anything else is sent alone
JOINER = "\n\n"


def one_each(msg: OutboxMessage) -> int:
    """Every row is one message (the default cost)."""
    return 1


@dataclass(frozen=True)
class Window:
    """At most `limit` messages in any `seconds`-long span."""

    limit: int
    seconds: int

    @property
    def span(self) -> timedelta:
        return timedelta(seconds=self.seconds)


@dataclass(frozen=True)
class RateLimit:
    """What one destination under a prefix may receive: every window holds at once.

    `cost(msg)` is how many far-side messages `msg` takes (0: not a message, e.g. a
    card update, never limited). `text_bytes` > 0 coalesces waiting plain texts up
    to that many UTF-8 bytes per message.
    """

    windows: tuple[Window, ...]
    cost: Callable[[OutboxMessage], int] = field(default=one_each)
    text_bytes: int = 0


def _mergeable(msg: OutboxMessage) -> bool:
    return msg.kind == TEXT_KIND and set(msg.payload) <= TEXT_KEYS and "text" in msg.payload


def _joined(msgs: Sequence[OutboxMessage]) -> str:
    return JOINER.join(str(m.payload["text"]) for m in msgs)


def plan(msgs: Sequence[OutboxMessage], text_bytes: int) -> list[list[OutboxMessage]]:
    """One destination's rows (in id order) as the sends to make, in order.

    Each send is one row, or plain texts coalesced into the first of them. A text
    joins the open run only if it fits, no row of its case was passed on the way
    (that row would then arrive after it), and it is a retry exactly when the run's
    head is: retried texts coalesce as they did the first time, so the far side's
    duplicate check (bot/platforms/wecom.py send_text) sees the same message again,
    and a fresh text never hides in one it would drop as a copy.
    """
    sends: list[list[OutboxMessage]] = []
    run: list[OutboxMessage] | None = None
    passed: set[str | None] = set()  # cases with a row between the run's head and here
    for msg in msgs:
        if (
            text_bytes > 0
            and run is not None
            and _mergeable(msg)
            and msg.case_id not in passed
            and bool(msg.attempts) == bool(run[0].attempts)
            and len(_joined([*run, msg]).encode()) <= text_bytes
        ):
            run.append(msg)
            continue
        send = [msg]
        sends.append(send)
        if text_bytes > 0 and _mergeable(msg):
            run, passed = send, set()
        elif run is not None:
            passed.add(msg.case_id)
    return sends


def merged(send: Sequence[OutboxMessage]) -> OutboxMessage:
    """The row the performer sees: the head itself, or a detached copy of the head
    carrying every text of the send."""
    head = send[0]
    if len(send) == 1:
        return head
    return OutboxMessage(
        id=head.id,
        kind=head.kind,
        destination=head.destination,
        case_id=head.case_id,
        payload={"text": _joined(send)},
        status=head.status,
        attempts=head.attempts,
        next_at=head.next_at,
        locked_until=head.locked_until,
        last_error=head.last_error,
        created_at=head.created_at,
        failing_since=head.failing_since,
    )


def reopens_at(
    log: Sequence[tuple[datetime, int]], cost: int, windows: Sequence[Window], now: datetime
) -> datetime | None:
    """None if `cost` more messages fit every window now; else when they all will.

    `log` is (sent_at, sends) to the destination, oldest first, covering the longest
    window. A cost above a window's limit waits for that window to be empty (the
    platform then cuts nothing it would not cut anyway).
    """
    later: datetime | None = None
    for window in windows:
        since = now - window.span
        recent = [(at, n) for at, n in log if at > since and n > 0]
        excess = sum(n for _, n in recent) + min(cost, window.limit) - window.limit
        if excess <= 0:
            continue
        freed = 0
        for at, sends in recent:
            freed += sends
            if freed >= excess:  # the window is strict: at + span no longer counts
                reopen = at + window.span
                later = reopen if later is None else max(later, reopen)
                break
    return later


class SendLog:
    """What one rate-limited destination received lately, for one round.

    Read once, at the round's first send that costs something, then kept up to
    date in memory with the round's own sends, which are not written until the
    round ends. The claim lets one worker at a time send to the destination, so
    nothing else adds to it meanwhile.

    A send that does not fit is given the slot it will fit in, and that slot is
    reserved here (`reserve`), so the rows queued behind it wait for the slots after
    it: each becomes due when it can go, not all at the first reopening (where one
    would go and the rest be claimed and deferred again, round after round).
    """

    def __init__(self, destination: str, limit: RateLimit) -> None:
        self.destination = destination
        self.limit = limit
        self._log: list[tuple[datetime, int]] | None = None
        self.held: set[str] = set()  # kinds of this round's sends that did not fit

    async def reopens_at(self, db: Database, cost: int, now: datetime) -> datetime | None:
        """As `reopens_at`, over what the destination received (see the class)."""
        if self._log is None:
            since = now - max(w.span for w in self.limit.windows)
            async with db.read() as session:
                self._log = await repo.sends_log(session, self.destination, since)
        return reopens_at(self._log, cost, self.limit.windows, now)

    def add(self, at: datetime, sends: int) -> None:
        """Count a send made this round."""
        if self._log is not None and sends > 0:
            self._log.append((at, sends))

    async def reserve(
        self, db: Database, msg: OutboxMessage, cost: int, now: datetime
    ) -> datetime | None:
        """None if `msg` (`cost` messages) fits now, and nothing is reserved; else the
        slot it fits in, held for it, so a later call answers the slot after."""
        at = await self.reopens_at(db, cost, now)
        if at is not None:
            self.held.add(msg.kind)
            self.add(at, cost)
        return at

    async def next_slot(self, db: Database, now: datetime) -> datetime | None:
        """When one more message fits, after the slots reserved this round."""
        return await self.reopens_at(db, 1, now)
