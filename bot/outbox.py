"""The delivery worker: performs outbox rows through the platform and channel clients.

Handlers only write rows (storage/outbox.py); this worker claims due rows under a
lease, calls the performer registered for the row's kind and records the outcome:
sent, retried with exponential backoff and full jitter, or dead-lettered with an
alert. Delivery is at-least-once (DESIGN.md §6): a crash between performing and
recording leaves the lease to expire and the row is performed again, so performers
pass the far side's idempotency key where the API has one (the channel refund id).

Rows of one destination run in claim order, one at a time, so a card is sent
before its update and the per-robot rate limit (WeCom group robots: 20/min) is
checked against what was just sent; different destinations run concurrently.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from storage import outbox as repo
from storage.db import Database, is_retryable
from storage.models import OutboxMessage

if TYPE_CHECKING:
    from bot.metrics import Metrics
    from bot.settings import OutboxSettings

log = logging.getLogger(__name__)

RATE_WINDOW = timedelta(seconds=60)
HOOK_TRIES = 3  # a hook's transaction aborted by a deadlock is run again this often


class RetryableError(Exception):
    """A transient fault: network, 5xx, rate limited by the far side, token refresh failed."""


class PermanentError(Exception):
    """The far side will never accept it: 4xx validation, unknown user. Dead-letters at once."""


Performer = Callable[[OutboxMessage], Awaitable[dict[str, Any] | None]]
DoneHook = Callable[[AsyncSession, OutboxMessage, dict[str, Any]], Awaitable[None]]
DeadHook = Callable[[AsyncSession, OutboxMessage], Awaitable[None]]
Step = Callable[[AsyncSession], Awaitable[Any]]


def utcnow() -> datetime:
    return datetime.now(UTC)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class OutboxWorker:
    """Claims due outbox rows and performs them; `run_once` is what the clock ticks.

    `performers` maps a row kind to an async callable; it returns optional result
    info (e.g. the platform's card handle) handed to `on_done`.
    `on_done(session, msg, result)` and `on_dead(session, msg)` run in the transaction
    that marks the row sent or dead, so a crash keeps both or neither (the row is then
    performed again): a confirmed refund cannot be marked sent without the case
    learning it, nor a dead letter buried without its alert. They run only when this
    worker still holds the lease, so once per recorded outcome. If a hook raises, its
    writes roll back, the outcome is recorded alone and the error is logged. `on_dead`
    must not alert about a dead alert, or a broken alert channel dead-letters forever.
    `rate_limits` maps a destination prefix (e.g.
    `"wecom-robot:"`) to sends per minute per destination; the longest matching
    prefix wins and destinations matching none are unlimited.
    """

    def __init__(
        self,
        db: Database,
        settings: OutboxSettings,
        performers: dict[str, Performer],
        *,
        clock: Callable[[], datetime] = utcnow,
        metrics: Metrics | None = None,
        on_done: DoneHook | None = None,
        on_dead: DeadHook | None = None,
        rate_limits: dict[str, int] | None = None,
        rng: random.Random | None = None,
        concurrency: int = 8,
    ) -> None:
        self.db = db
        self.settings = settings
        self.performers = dict(performers)
        self.clock = clock
        self.metrics = metrics
        self.on_done = on_done
        self.on_dead = on_dead
        self._limits = sorted((rate_limits or {}).items(), key=lambda kv: -len(kv[0]))
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._slots = asyncio.Semaphore(concurrency)

    async def run_once(self) -> int:
        """Claim one batch and handle it; returns how many rows were performed."""
        _, performed = await self._round()
        return performed

    async def drain(self, max_rounds: int = 100) -> None:
        """Run rounds until nothing is due (tests, and the flush at shutdown).

        Rows backing off or deferred by the rate limit are not due, so this never
        waits for them.
        """
        for _ in range(max_rounds):
            claimed, _ = await self._round()
            if not claimed:
                return
        log.warning("outbox drain stopped after %d rounds with rows still due", max_rounds)

    def backoff(self, attempts: int) -> timedelta:
        """Full jitter: uniform in [0, min(max_delay, base * 2**attempts)) seconds."""
        s = self.settings
        cap = min(s.max_delay_seconds, s.base_delay_seconds * 2 ** min(attempts, 62))
        return timedelta(seconds=cap * self._rng.random())

    def limit_for(self, destination: str) -> int | None:
        """Sends per minute allowed to `destination` (longest matching prefix), or None."""
        for prefix, per_minute in self._limits:
            if destination.startswith(prefix):
                return per_minute
        return None

    async def _round(self) -> tuple[int, int]:
        s = self.settings
        batch = await repo.claim_due(self.db, self.clock(), s.batch, s.lease_seconds)
        groups: dict[str, list[OutboxMessage]] = {}
        for msg in batch:
            groups.setdefault(msg.destination, []).append(msg)
        counts = await asyncio.gather(*(self._run_group(g) for g in groups.values()))
        return len(batch), sum(counts)

    async def _run_group(self, msgs: list[OutboxMessage]) -> int:
        """One destination's rows, in the order written; a case whose earlier row did
        not go out holds its later rows back (they go back to the queue untouched)."""
        performed = 0
        held: set[str] = set()
        async with self._slots:
            for msg in sorted(msgs, key=lambda m: m.id):
                if msg.case_id is not None and msg.case_id in held:
                    async with self.db.transaction() as session:
                        await repo.defer(session, msg, next_at=self.clock())
                    continue
                sent = False
                try:
                    done, sent = await self._handle(msg)
                    performed += done
                except Exception:
                    # Recording the outcome failed (database down?): the lease expires
                    # and the row is performed again.
                    log.exception("outbox %s (case %s): handling failed", msg.id, msg.case_id)
                if not sent and msg.case_id is not None:
                    held.add(msg.case_id)
        return performed

    async def _handle(self, msg: OutboxMessage) -> tuple[int, bool]:
        """(performed, sent) for one row."""
        performer = self.performers.get(msg.kind)
        if performer is None:
            await self._dead(msg, f"no performer for kind {msg.kind!r}")
            return 0, False
        if await self._rate_limited(msg):
            return 0, False
        # A performer must finish well inside the lease, or another replica re-claims
        # the row while it is still in flight. Rows queued behind slow ones in this
        # batch go back if their lease is too short to start them safely.
        budget = self.settings.lease_seconds / 2
        if (
            msg.locked_until is not None
            and repo.naive(self.clock()) + timedelta(seconds=budget) > msg.locked_until
        ):
            async with self.db.transaction() as session:
                await repo.defer(session, msg, next_at=self.clock())
            return 0, False
        try:
            async with asyncio.timeout(budget):
                result = await performer(msg)
        except PermanentError as exc:
            await self._dead(msg, _describe(exc))
        except (RetryableError, TimeoutError) as exc:
            await self._retry(msg, _describe(exc))
        except Exception as exc:
            log.exception(
                "outbox %s (%s, case %s): unexpected performer error, will retry",
                msg.id,
                msg.kind,
                msg.case_id,
            )
            await self._retry(msg, _describe(exc))
        else:
            await self._sent(msg, result or {})
            return 1, True
        return 1, False

    async def _rate_limited(self, msg: OutboxMessage) -> bool:
        """Defer (without burning an attempt) when the destination used its budget."""
        limit = self.limit_for(msg.destination)
        if limit is None:
            return False
        now = repo.naive(self.clock())
        since = now - RATE_WINDOW
        async with self.db.read() as session:
            if await repo.sent_in_window(session, msg.destination, since) < limit:
                return False
            oldest = await repo.oldest_sent_since(session, msg.destination, since)
        # The window reopens when its oldest send leaves it (+1 s: the bound is inclusive).
        reopens = max((oldest or now) + RATE_WINDOW, now) + timedelta(seconds=1)
        async with self.db.transaction() as session:
            await repo.defer(session, msg, next_at=reopens)
        log.info("outbox %s to %s rate limited until %s", msg.id, msg.destination, reopens)
        return True

    async def _sent(self, msg: OutboxMessage, result: dict[str, Any]) -> None:
        now = self.clock()
        hook = self.on_done
        recorded = await self._record(
            msg,
            lambda session: repo.mark_sent(session, msg, now=now),
            None if hook is None else lambda session: hook(session, msg, result),
            "on_done",
            status=repo.SENT,
            sent_at=repo.naive(now),
            attempts=msg.attempts + 1,
        )
        if not recorded:
            log.warning("outbox %s (case %s): lease lost before marking sent", msg.id, msg.case_id)
        if self.metrics:
            self.metrics.deliveries.labels(kind=msg.kind, result="sent").inc()

    async def _record(
        self,
        msg: OutboxMessage,
        mark: Step,
        hook: Step | None,
        name: str,
        **recorded: Any,
    ) -> bool:
        """Mark the row and run its hook in one transaction; False if the lease was lost.

        The hook sees `msg` with the `recorded` values. A transaction PostgreSQL aborts
        to break a deadlock is run again; a hook that raises otherwise is rolled back
        and logged, and the outcome is recorded alone: a broken hook must not make the
        row be performed again.
        """
        for attempt in range(1, HOOK_TRIES + 1):
            if hook is None:
                break
            try:
                async with self.db.transaction() as session:
                    if not await mark(session):
                        return False
                    for attr, value in recorded.items():
                        setattr(msg, attr, value)
                    await hook(session)
                return True
            except Exception as exc:
                if is_retryable(exc) and attempt < HOOK_TRIES:
                    continue  # a deadlock victim: the same again on fresh data
                log.exception("outbox %s (case %s): %s failed", msg.id, msg.case_id, name)
                break
        async with self.db.transaction() as session:
            if not await mark(session):
                return False
        for attr, value in recorded.items():
            setattr(msg, attr, value)
        return True

    async def _retry(self, msg: OutboxMessage, error: str) -> None:
        attempts = msg.attempts + 1
        if attempts >= self.settings.max_attempts:
            await self._dead(msg, f"{error} (gave up after {attempts} attempts)")
            return
        delay = self.backoff(msg.attempts)
        async with self.db.transaction() as session:
            recorded = await repo.mark_retry(
                session, msg, next_at=self.clock() + delay, error=error
            )
        if not recorded:
            log.warning("outbox %s (case %s): lease lost before retry", msg.id, msg.case_id)
            return
        log.warning(
            "outbox %s (%s to %s, case %s): attempt %d failed, retry in %.1f s: %s",
            msg.id,
            msg.kind,
            msg.destination,
            msg.case_id,
            attempts,
            delay.total_seconds(),
            error,
        )
        if self.metrics:
            self.metrics.deliveries.labels(kind=msg.kind, result="retry").inc()
            self.metrics.delivery_failures.labels(kind=msg.kind).inc()

    async def _dead(self, msg: OutboxMessage, error: str) -> None:
        hook = self.on_dead
        recorded = await self._record(
            msg,
            lambda session: repo.mark_dead(session, msg, error=error),
            None if hook is None else lambda session: hook(session, msg),
            "on_dead",
            status=repo.DEAD,
            last_error=error,
            attempts=msg.attempts + 1,
        )
        if not recorded:
            log.warning("outbox %s (case %s): lease lost before dead", msg.id, msg.case_id)
            return
        log.error(
            "outbox %s (%s to %s, case %s) dead after %d attempts: %s",
            msg.id,
            msg.kind,
            msg.destination,
            msg.case_id,
            msg.attempts,
            error,
        )
        if self.metrics:
            self.metrics.deliveries.labels(kind=msg.kind, result="dead").inc()
            self.metrics.delivery_failures.labels(kind=msg.kind).inc()
