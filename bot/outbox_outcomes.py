"""Recording what became of a delivery: sent, retried later, or dead-lettered.

Every outcome is fenced on the lease its rows were claimed with (storage/outbox.py)
and written together with its hook (`on_done`, `on_dead`), so a crash keeps both
or neither. A send may be several coalesced rows: they share one transaction, and
only the first spends the rate limit's messages.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.outbox_retry import RetrySchedule
from storage import outbox as repo
from storage.db import Database, is_retryable
from storage.models import OutboxMessage

if TYPE_CHECKING:
    from bot.metrics import Metrics
    from bot.settings import OutboxSettings

log = logging.getLogger("bot.outbox")

HOOK_TRIES = 3  # a hook's transaction aborted by a deadlock is run again this often

DoneHook = Callable[[AsyncSession, OutboxMessage, dict[str, Any]], Awaitable[None]]
DeadHook = Callable[[AsyncSession, OutboxMessage], Awaitable[None]]
Mark = Callable[[AsyncSession, OutboxMessage], Awaitable[bool]]
Hook = Callable[[AsyncSession, OutboxMessage], Awaitable[None]]


def ids_of(msgs: Sequence[OutboxMessage]) -> str:
    return ",".join(str(m.id) for m in msgs)


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
    ) -> None:
        self.db = db
        self.settings = settings
        self.schedule = schedule
        self.clock = clock
        self.metrics = metrics
        self.on_done = on_done
        self.on_dead = on_dead

    async def sent(self, send: list[OutboxMessage], result: dict[str, Any], cost: int) -> None:
        now = self.clock()
        shares = {m.id: cost if i == 0 else 0 for i, m in enumerate(send)}

        async def mark(session: AsyncSession, msg: OutboxMessage) -> bool:
            return await repo.mark_sent(session, msg, now=now, sends=shares[msg.id])

        recorded = await self._record(
            send,
            mark,
            self._done_hook(result),
            "on_done",
            lambda m: {
                "status": repo.SENT,
                "sent_at": repo.naive(now),
                "sends": shares[m.id],
                "attempts": m.attempts + 1,
            },
        )
        for msg in send:
            if msg not in recorded:
                log.warning(
                    "outbox %s (case %s): lease lost before marking sent", msg.id, msg.case_id
                )
            self._tally(msg, "sent")

    def _done_hook(self, result: dict[str, Any]) -> Hook | None:
        on_done = self.on_done
        if on_done is None:
            return None

        async def hook(session: AsyncSession, msg: OutboxMessage) -> None:
            await on_done(session, msg, result)

        return hook

    async def _record(
        self,
        msgs: list[OutboxMessage],
        mark: Mark,
        hook: Hook | None,
        name: str,
        values: Callable[[OutboxMessage], dict[str, Any]],
    ) -> list[OutboxMessage]:
        """Mark the rows and run the hook on each in one transaction; returns the rows
        recorded (a row whose lease was lost is left to its new holder).

        The hook sees each row with its recorded `values`. A transaction PostgreSQL
        aborts to break a deadlock is run again; a hook that raises otherwise is
        rolled back and logged, and the outcomes are recorded alone: a broken hook
        must not make the rows be performed again.
        """
        recorded = {m.id: values(m) for m in msgs}

        def apply(done: list[OutboxMessage]) -> list[OutboxMessage]:
            for msg in done:
                for attr, value in recorded[msg.id].items():
                    setattr(msg, attr, value)
            return done

        for attempt in range(1, HOOK_TRIES + 1):
            if hook is None:
                break
            try:
                async with self.db.transaction() as session:
                    done = apply([m for m in msgs if await mark(session, m)])
                    for msg in done:
                        await hook(session, msg)
                return done
            except Exception as exc:
                if is_retryable(exc) and attempt < HOOK_TRIES:
                    continue  # a deadlock victim: the same again on fresh data
                log.exception(
                    "outbox %s (case %s): %s failed", ids_of(msgs), msgs[0].case_id, name
                )
                break
        async with self.db.transaction() as session:
            done = [m for m in msgs if await mark(session, m)]
        return apply(done)

    async def retry(self, send: list[OutboxMessage], error: str) -> None:
        """Come back later on the schedule, or dead-letter what has failed too long."""
        now = repo.naive(self.clock())
        plans = {
            m.id: self.schedule.after_failure(now, m.attempts + 1, m.failing_since) for m in send
        }
        expired = [m for m in send if plans[m.id].at is None]
        if expired:
            hours = self.settings.give_up_after_hours
            await self.dead(expired, f"{error} (gave up: still failing after {hours:g} h)")
        retrying = [m for m in send if m not in expired]
        if not retrying:
            return
        async with self.db.transaction() as session:
            recorded = [
                m
                for m in retrying
                if await repo.mark_retry(
                    session,
                    m,
                    next_at=plans[m.id].at or now,
                    error=error,
                    failing_since=plans[m.id].failing_since,
                )
            ]
        for msg in retrying:
            if msg not in recorded:
                log.warning("outbox %s (case %s): lease lost before retry", msg.id, msg.case_id)
                continue
            log.warning(
                "outbox %s (%s to %s, case %s): attempt %d failed, retry at %s: %s",
                msg.id,
                msg.kind,
                msg.destination,
                msg.case_id,
                msg.attempts + 1,
                plans[msg.id].at,
                error,
            )
            self._tally(msg, "retry")

    async def dead(self, msgs: list[OutboxMessage], error: str) -> None:
        async def mark(session: AsyncSession, msg: OutboxMessage) -> bool:
            return await repo.mark_dead(session, msg, error=error)

        recorded = await self._record(
            msgs,
            mark,
            self.on_dead,
            "on_dead",
            lambda m: {"status": repo.DEAD, "last_error": error, "attempts": m.attempts + 1},
        )
        for msg in msgs:
            if msg not in recorded:
                log.warning("outbox %s (case %s): lease lost before dead", msg.id, msg.case_id)
                continue
            log.error(
                "outbox %s (%s to %s, case %s) dead after %d attempts: %s",
                msg.id,
                msg.kind,
                msg.destination,
                msg.case_id,
                msg.attempts,
                error,
            )
            self._tally(msg, "dead")

    def _tally(self, msg: OutboxMessage, result: str) -> None:
        if self.metrics:
            self.metrics.deliveries.labels(kind=msg.kind, result=result).inc()
            if result != "sent":
                self.metrics.delivery_failures.labels(kind=msg.kind).inc()
