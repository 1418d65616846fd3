"""Recording what became of a round's deliveries: sent, retried later, dead-lettered
or put back untouched.

A round notes each outcome in a `Ledger` while it delivers and writes them all at
its end in ONE transaction (storage/outbox.py `record`): the rows' marks, then
each `on_done` / `on_dead` hook in its own SAVEPOINT, so a crash keeps a row's
mark and its hook together or neither, and a hook that raises is rolled back
alone without undoing the others. Every mark is fenced on the row's lease. A send
may be several coalesced rows: only the first spends the rate limit's messages.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy.ext.asyncio import AsyncSession

from bot.outbox_retry import RetrySchedule
from storage import outbox as repo
from storage.db import Database, allow_savepoints, is_retryable
from storage.models import OutboxMessage

if TYPE_CHECKING:
    from bot.metrics import Metrics
    from bot.settings import OutboxSettings

log = logging.getLogger("bot.outbox")

# Hooks flushed together in one savepoint. A flush is one step of the event loop
# until its first statement: a backlog's round of hundreds of confirmed refunds
# flushed at once held the loop (on SQLite the writer runs on it) for 20-40 ms.
HOOK_CHUNK = 32
HOOK_TRIES = 3  # a hook (or the round's write) aborted by a deadlock is run again this often

DoneHook = Callable[[AsyncSession, OutboxMessage, dict[str, Any]], Awaitable[None]]
DeadHook = Callable[[AsyncSession, OutboxMessage], Awaitable[None]]
Hook = Callable[[AsyncSession, OutboxMessage], Awaitable[None]]
# Before a chunk of a round's `on_done` hooks runs: one read of what they will look up,
# given each of the chunk's sent rows with its result; what it returns is kept
# referenced until they ran, so the rows it loaded stay in the session's identity map
# (which holds them weakly).
PreloadHook = Callable[
    [AsyncSession, Sequence[tuple[OutboxMessage, dict[str, Any]]]], Awaitable[Sequence[Any]]
]


def ids_of(msgs: Sequence[OutboxMessage]) -> str:
    return ",".join(str(m.id) for m in msgs)


@dataclass
class Entry:
    """One row's outcome: the write, what the hook sees, and the report after commit."""

    msg: OutboxMessage
    outcome: repo.Outcome
    seen: dict[str, Any]  # the row's attributes as recorded, set before its hook runs
    hook: Hook | None
    hook_name: str
    report: Callable[[OutboxMessage], None] | None  # log and tally, once recorded
    result: dict[str, Any] | None = None  # a sent row's performer result (for `preload`)


@dataclass
class Ledger:
    """A round's outcomes, in the order they happened; written by `Outcomes.record`."""

    entries: list[Entry] = field(default_factory=list)
    holds: list[repo.Hold] = field(default_factory=list)  # queues behind a rate limit


class Outcomes:
    """The worker's half that writes: one instance per worker."""

    def __init__(
        self,
        db: Database,
        settings: OutboxSettings,
        schedule: RetrySchedule,
        clock: Callable[[], datetime],
        metrics: Metrics | None,
        on_done: DoneHook | None,
        on_dead: DeadHook | None,
        preload: PreloadHook | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.schedule = schedule
        self.clock = clock
        self.metrics = metrics
        self.on_done = on_done
        self.on_dead = on_dead
        self.preload = preload

    def sent(
        self, ledger: Ledger, send: list[OutboxMessage], result: dict[str, Any], cost: int
    ) -> datetime:
        """Note a send that went out; returns its `sent_at` (naive UTC)."""
        now = repo.naive(self.clock())
        on_done = self.on_done
        hook: Hook | None = None
        if on_done is not None:

            async def hook(session: AsyncSession, msg: OutboxMessage) -> None:
                await on_done(session, msg, result)

        for i, msg in enumerate(send):
            sends = cost if i == 0 else 0
            values = {"sent_at": now, "sends": sends}
            seen = {"status": repo.SENT, **values, "attempts": msg.attempts + 1}
            report = self._sent_report
            self._add(ledger, msg, repo.SENT, values, seen, hook, "on_done", report, result)
        return now

    def retry(self, ledger: Ledger, send: list[OutboxMessage], error: str) -> None:
        """Come back later on the schedule, or dead-letter what has failed too long."""
        now = repo.naive(self.clock())
        for msg in send:
            plan = self.schedule.after_failure(now, msg.attempts + 1, msg.failing_since)
            if plan.at is None:
                hours = self.settings.give_up_after_hours
                self.dead(ledger, [msg], f"{error} (gave up: still failing after {hours:g} h)")
                continue
            values = {"next_at": plan.at, "last_error": error, "failing_since": plan.failing_since}

            def report(m: OutboxMessage, at: datetime = plan.at) -> None:
                log.warning(
                    "outbox %s (%s to %s, case %s): attempt %d failed, retry at %s: %s",
                    m.id, m.kind, m.destination, m.case_id, m.attempts + 1, at, error,
                )  # fmt: skip
                self._tally(m, "retry")

            self._add(ledger, msg, repo.RETRY, values, {}, None, "", report)

    def dead(self, ledger: Ledger, msgs: list[OutboxMessage], error: str) -> None:
        seen_error = error[: repo.ERROR_MAX_CHARS]
        for msg in msgs:
            seen = {"status": repo.DEAD, "last_error": seen_error, "attempts": msg.attempts + 1}
            values = {"last_error": error}
            self._add(ledger, msg, repo.DEAD, values, seen, self.on_dead, "on_dead", self._dead)

    def defer(self, ledger: Ledger, msgs: Sequence[OutboxMessage], next_at: datetime) -> None:
        """Put rows back untouched until `next_at`: no attempt is burned."""
        for msg in msgs:
            self._add(ledger, msg, repo.DEFER, {"next_at": next_at}, {}, None, "", None)

    def hold(self, ledger: Ledger, hold: repo.Hold) -> None:
        """Hold a rate-limited destination's unclaimed due rows until a slot frees."""
        ledger.holds.append(hold)

    def _add(
        self,
        ledger: Ledger,
        msg: OutboxMessage,
        kind: str,
        values: dict[str, Any],
        seen: dict[str, Any],
        hook: Hook | None,
        hook_name: str,
        report: Callable[[OutboxMessage], None] | None,
        result: dict[str, Any] | None = None,
    ) -> None:
        if msg.locked_until is None:
            raise ValueError(f"outbox {msg.id}: only a claimed row has an outcome")
        outcome = repo.Outcome(msg.id, msg.locked_until, kind, values)
        ledger.entries.append(Entry(msg, outcome, seen, hook, hook_name, report, result))

    async def record(self, ledger: Ledger) -> None:
        """Write the ledger in one transaction; report each row once it is recorded.

        A row whose lease was lost is left to its new holder (logged). A transaction
        PostgreSQL aborts to break a deadlock is run again on fresh data; any other
        failure propagates, the leases expire and the rows are performed again.
        """
        entries = ledger.entries
        if not entries:
            return
        for attempt in range(1, HOOK_TRIES + 1):
            try:
                written = await self._write(entries, ledger.holds)
                break
            except Exception as exc:
                if not (is_retryable(exc) and attempt < HOOK_TRIES):
                    raise
        for entry in entries:
            msg = entry.msg
            if msg.id not in written:
                what = entry.outcome.kind
                log.warning("outbox %s (case %s): lease lost before %s", msg.id, msg.case_id, what)
            elif entry.report is not None:
                entry.report(msg)

    async def _write(self, entries: list[Entry], holds: list[repo.Hold]) -> set[int]:
        async with self.db.transaction(repo.OUTBOX_LANE) as session:
            await allow_savepoints(session)
            await repo.hold(session, holds, self.clock())  # before the leases are released
            written = await repo.record(session, self.db, [e.outcome for e in entries])
            hooked = []
            for entry in entries:
                if entry.msg.id not in written:
                    continue
                for attr, value in entry.seen.items():
                    setattr(entry.msg, attr, value)
                if entry.hook is not None:
                    hooked.append(entry)
            await self._run_hooks(session, hooked)
        return written

    async def _run_hooks(self, session: AsyncSession, entries: list[Entry]) -> None:
        """The round's hooks, HOOK_CHUNK at a time, each chunk in one savepoint. In
        case order (one case's in the order they happened), so the cases the chunks
        lock are locked in ascending order across the round, as when one statement
        locked them all."""
        entries = sorted(entries, key=lambda e: e.msg.case_id or "")
        for start in range(0, len(entries), HOOK_CHUNK):
            await self._run_chunk(session, entries[start : start + HOOK_CHUNK])

    async def _run_chunk(self, session: AsyncSession, entries: list[Entry]) -> None:
        """Hooks together in one savepoint, so their writes flush as one (a card
        handle each: one executemany, not a savepoint and an UPDATE per row), after
        `preload` read what they look up in one statement, not one each. If any
        raises, that savepoint rolls back, and each runs again in its own."""
        if len(entries) > 1:
            try:
                async with session.begin_nested():
                    sent = [(e.msg, e.result) for e in entries if e.result is not None]
                    held = await self.preload(session, sent) if self.preload and sent else ()
                    for entry in entries:
                        await cast(Hook, entry.hook)(session, entry.msg)
                del held  # the hooks ran: the preloaded rows may go
                return
            except Exception as exc:  # noqa: BLE001 - found and logged one by one below
                log.info("outbox: a hook of the round failed (%r); each alone", exc)
        for entry in entries:
            await self._run_hook(session, entry, cast(Hook, entry.hook))

    async def _run_hook(self, session: AsyncSession, entry: Entry, hook: Hook) -> None:
        """The hook in its own savepoint: if it raises, its writes roll back and the
        row's outcome stands (a broken hook must not make the row be performed again)."""
        msg = entry.msg
        for attempt in range(1, HOOK_TRIES + 1):
            try:
                async with session.begin_nested():
                    await hook(session, msg)
                return
            except Exception as exc:
                if is_retryable(exc) and attempt < HOOK_TRIES:
                    continue  # a deadlock victim: the same again
                log.exception(
                    "outbox %s (case %s): %s failed", msg.id, msg.case_id, entry.hook_name
                )
                return

    def _sent_report(self, msg: OutboxMessage) -> None:
        self._tally(msg, "sent")

    def _dead(self, msg: OutboxMessage) -> None:
        log.error(
            "outbox %s (%s to %s, case %s) dead after %d attempts: %s",
            msg.id, msg.kind, msg.destination, msg.case_id, msg.attempts, msg.last_error,
        )  # fmt: skip
        self._tally(msg, "dead")

    def _tally(self, msg: OutboxMessage, result: str) -> None:
        if self.metrics:
            self.metrics.deliveries.labels(kind=msg.kind, result=result).inc()
            if result != "sent":
                self.metrics.delivery_failures.labels(kind=msg.kind).inc()
