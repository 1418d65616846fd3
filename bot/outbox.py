"""The delivery worker: performs outbox rows through the platform and channel clients.

Handlers only write rows (storage/outbox.py); this worker claims due rows under a
lease, calls the performer registered for the row's kind and records the outcome:
sent, retried on a capped exponential schedule for a day (bot/outbox_retry.py), or
dead-lettered with an alert. Delivery is at-least-once (DESIGN.md §6): a crash
between performing and recording leaves the lease to expire and the row is
performed again, so performers pass the far side's idempotency key where the API
has one (the channel refund id).

A round claims a batch in one short transaction, delivers it and records every
outcome in one more (bot/outbox_outcomes.py), so under load the outbox takes two
turns at SQLite's writer per batch, not one per row. A destination's rows run in
claim order, one at a time: a person's chat reads as a conversation, and a rate
limit (bot/outbox_limits.py) is checked against what was just sent. Under a
`by_case` prefix (the shop channels' APIs) they run so per case instead. One
case's later row to a destination waits for the next round, after its elder's
outcome is written (a card is sent, and its handle stored, before its update).
The chains run concurrently, at most `concurrency` at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.outbox_limits import RateLimit, SendLog, merged, plan
from bot.outbox_outcomes import DeadHook, DoneHook, Ledger, Outcomes, PreloadHook, ids_of
from bot.outbox_retry import RetrySchedule
from storage import outbox as repo
from storage.db import Database
from storage.models import OutboxMessage

if TYPE_CHECKING:
    from bot.metrics import Metrics
    from bot.settings import OutboxSettings

log = logging.getLogger(__name__)


class RetryableError(Exception):
    """A transient fault: network, 5xx, rate limited by the far side, token refresh failed."""


class PermanentError(Exception):
    """The far side will never accept it: 4xx validation, unknown user. Dead-letters at once."""


CLAIM_GROWTH = 8  # a backlog's rounds claim up to this many batches at once

Performer = Callable[[OutboxMessage], Awaitable[dict[str, Any] | None]]


def utcnow() -> datetime:
    return datetime.now(UTC)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class OutboxWorker:
    """Claims due outbox rows and performs them; `run_once` is what the clock ticks.

    `performers` maps a row kind to an async callable; it returns optional result
    info (e.g. the platform's card handle) handed to `on_done`.
    `on_done(session, msg, result)` and `on_dead(session, msg)` run in the round's
    outcome transaction, each in its own savepoint, so a crash keeps a mark and its
    hook both or neither (the row is then performed again): a confirmed refund cannot
    be marked sent without the case learning it, nor a dead letter buried without its
    alert. They run only when this worker still holds the lease, so once per recorded
    outcome. If a hook raises, its writes roll back, the outcome is recorded alone and
    the error is logged. `on_dead` must not alert about a dead alert, or a broken
    alert channel dead-letters forever. `preload(session, [(msg, result), …])` runs
    first, once per chunk of a round's hooks (bot/outbox_outcomes.py): one read of
    the rows that chunk's `on_done` hooks will look up.
    `rate_limits` maps a destination prefix (e.g. `"wecom:"`) to the RateLimit of
    each destination under it; the longest matching prefix wins and destinations
    matching none are unlimited. Under a `strict` prefix a dead row holds its case's
    later rows to the same destination until an operator revives or discards it.
    Under a `by_case` prefix a destination's rows of different cases go out
    concurrently (an unlimited API, not a person's chat).
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
        preload: PreloadHook | None = None,
        rate_limits: Mapping[str, RateLimit] | None = None,
        strict: tuple[str, ...] = (),
        by_case: tuple[str, ...] = (),
        rng: random.Random | None = None,
        concurrency: int = 8,
    ) -> None:
        self.db = db
        self.settings = settings
        self.performers = dict(performers)
        self.clock = clock
        self.strict = strict
        self.by_case = by_case
        self.outcomes = Outcomes(
            db, settings, RetrySchedule(settings, rng), clock, metrics, on_done, on_dead, preload
        )
        self._limits = sorted((rate_limits or {}).items(), key=lambda kv: -len(kv[0]))
        self._slots = asyncio.Semaphore(concurrency)
        # The latest round claimed all it asked for, and most of it went out: more is
        # due, so the next round may start at once (the clock's pace).
        self.backlogged = False
        self._claim = settings.batch  # the next round's claim: grows while a backlog lasts
        self._out_of_time = False  # a row of this round was put back: its lease ran short

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

    def _chain(self, msg: OutboxMessage) -> tuple[str, str | None]:
        """The rows that must run one after another: a destination's all, in the
        order written (a conversation; a rate limit counting what was just sent),
        but under a `by_case` prefix without a limit one case's (the order promised
        is per case and destination; its rows of no case stay together), so a shop
        channel's rows of different cases go out concurrently instead of one round
        trip each."""
        if self.limit_for(msg.destination) is None and msg.destination.startswith(self.by_case):
            return msg.destination, msg.case_id
        return msg.destination, None

    def limit_for(self, destination: str) -> RateLimit | None:
        """The rate limit of `destination` (longest matching prefix), or None."""
        for prefix, limit in self._limits:
            if destination.startswith(prefix):
                return limit
        return None

    async def _round(self) -> tuple[int, int]:
        """Claim a batch, deliver it, record every outcome in one transaction.

        A crash (or a failed write) after delivering leaves the leases to expire:
        the rows are performed again, at least once as DESIGN.md §6 promises."""
        s = self.settings
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.backlogged = self._out_of_time = False
        limit, self._claim = self._claim, s.batch  # back to one batch unless this one fills
        batch = await repo.claim_due(
            self.db,
            self.clock(),
            limit,
            s.lease_seconds,
            strict=self.strict,
            exclusive=tuple(prefix for prefix, _ in self._limits),
        )
        if not batch:
            return 0, 0
        groups: dict[tuple[str, str | None], list[OutboxMessage]] = {}
        for msg in batch:
            groups.setdefault(self._chain(msg), []).append(msg)
        ledger = Ledger()
        counts = await asyncio.gather(*(self._run_group(g, ledger) for g in groups.values()))
        try:
            await self.outcomes.record(ledger)
        except Exception:
            log.exception(
                "outbox %s: recording the round failed; the rows are performed again "
                "once their lease expires",
                ids_of(batch),
            )
            return len(batch), sum(counts)
        failed = sum(e.outcome.kind in (repo.RETRY, repo.DEAD) for e in ledger.entries)
        # A far side refusing at once fails most of a round: keep the gap. One dead card
        # update among hundreds is no reason to.
        if len(batch) < limit or 4 * failed >= len(batch) or self._out_of_time:
            return len(batch), sum(counts)
        self.backlogged = True
        if self.db.is_sqlite and loop.time() - started < s.lease_seconds / 8:
            # Claim more next round. A round costs two turns at SQLite's one writer
            # whatever its size, and between them each intake batch (up to
            # `database.write_batch` events) writes two to three rows an event: at one
            # batch a round the queue grows under intake. Not when the round took long
            # (a slow far side: a bigger claim would outrun its leases), and not on
            # PostgreSQL, whose writers do not take turns and whose replicas share the
            # queue (one claiming eight batches would leave the others idle).
            self._claim = min(2 * limit, CLAIM_GROWTH * s.batch)
        return len(batch), sum(counts)

    async def _run_group(self, msgs: list[OutboxMessage], ledger: Ledger) -> int:
        """One chain's rows (see `_chain`), in the order written (texts coalesced
        where its limit allows). A case whose earlier row did not go out holds its later rows
        back, and so does one whose earlier row went out this round: its outcome
        (and hook, e.g. a card's handle an update needs) is not written yet. Either
        way they go back to the queue untouched, for the next round."""
        performed = 0
        held: set[str] = set()
        limit = self.limit_for(msgs[0].destination)
        sends = SendLog(msgs[0].destination, limit) if limit else None
        ordered = sorted(msgs, key=lambda m: m.id)
        async with self._slots:
            for send in plan(ordered, limit.text_bytes if limit else 0):
                waiting = [m for m in send if m.case_id is not None and m.case_id in held]
                if waiting:
                    self.outcomes.defer(ledger, waiting, self.clock())
                    send = [m for m in send if m not in waiting]
                    if not send:
                        continue
                performed += await self._handle(send, limit, sends, ledger)
                held.update(m.case_id for m in send if m.case_id is not None)
        if sends is not None and sends.held:
            await self._hold_queue(sends, ledger)
        return performed

    async def _hold_queue(self, sends: SendLog, ledger: Ledger) -> None:
        """The destination's due rows this round did not claim wait behind the slots
        its deferred rows reserved: they would not fit before, and until then no
        round claims them only to defer them again."""
        until = await sends.next_slot(self.db, repo.naive(self.clock()))
        if until is not None:
            hold = repo.Hold(sends.destination, tuple(sorted(sends.held)), until)
            self.outcomes.hold(ledger, hold)

    async def _handle(
        self,
        send: list[OutboxMessage],
        limit: RateLimit | None,
        sends: SendLog | None,
        ledger: Ledger,
    ) -> int:
        """Perform one send (a row, or texts coalesced into one message) and note its
        outcome in `ledger`; returns how many rows were performed."""
        head = send[0]
        performer = self.performers.get(head.kind)
        if performer is None:
            self.outcomes.dead(ledger, send, f"no performer for kind {head.kind!r}")
            return 0
        msg = merged(send)
        cost = limit.cost(msg) if limit else 1
        if sends and cost > 0 and await self._rate_limited(send, sends, cost, ledger):
            return 0
        # A performer must finish well inside the lease, or another replica re-claims
        # the row while it is still in flight. Rows queued behind slow ones in this
        # batch go back if their lease is too short to start them safely.
        budget = self.settings.lease_seconds / 2
        if (
            head.locked_until is not None
            and repo.naive(self.clock()) + timedelta(seconds=budget) > head.locked_until
        ):
            self._out_of_time = True
            self.outcomes.defer(ledger, send, self.clock())
            return 0
        try:
            async with asyncio.timeout(budget):
                result = await performer(msg)
        except PermanentError as exc:
            self.outcomes.dead(ledger, send, _describe(exc))
        except (RetryableError, TimeoutError) as exc:
            self.outcomes.retry(ledger, send, _describe(exc))
        except Exception as exc:
            log.exception(
                "outbox %s (%s, case %s): unexpected performer error, will retry",
                ids_of(send),
                head.kind,
                head.case_id,
            )
            self.outcomes.retry(ledger, send, _describe(exc))
        else:
            sent_at = self.outcomes.sent(ledger, send, result or {}, cost)
            if sends:
                sends.add(sent_at, cost)
        return len(send)

    async def _rate_limited(
        self, send: list[OutboxMessage], sends: SendLog, cost: int, ledger: Ledger
    ) -> bool:
        """Defer (without burning an attempt) when a window has no room for `cost`."""
        reopens = await sends.reserve(self.db, send[0], cost, repo.naive(self.clock()))
        if reopens is None:
            return False
        self.outcomes.defer(ledger, send, reopens)
        log.info("outbox %s to %s rate limited until %s", ids_of(send), sends.destination, reopens)
        return True
