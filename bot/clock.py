"""The clock: the outbox worker's loop, and APScheduler ticks that fire due timers
and recover unhandled inbound events.

Nothing here holds state worth keeping: what is due lives in database rows
(outbox, timers), claimed with SKIP LOCKED on PostgreSQL, so every replica runs
the same loop and jobs and each row is still handled once.

The outbox runs as one long-lived task per process, woken by `kick()` (an
asyncio.Event a handler sets once it committed work a person waits for) or by
its interval. Kicks that arrive while a round runs coalesce into one more round;
a kick costs no scheduler call, so a burst of requests never piles up job runs
(APScheduler's "maximum number of running instances reached", once per request).
The periodic jobs stay on APScheduler as in python-telegram-bot's JobQueue:
module-level functions with deterministic ids and `replace_existing=True`;
`max_instances=1` with `coalesce=True` means a slow tick is never overlapped by
the next one and missed ticks collapse into one run.

What is due is decided by the injected clock against the rows, so a clock step
neither refires a fired timer nor loses a pending one. APScheduler, though, times
its interval jobs by the wall clock: after an NTP step back of an hour each job's
next run lies an hour ahead, and the timers would wait that hour. The outbox loop,
which waits on the monotonic clock, brings such a job back to now (`_realign`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.outbox import OutboxWorker
from storage import timers
from storage.db import Database
from storage.timers import BatchHook, TimerHook

if TYPE_CHECKING:
    from bot.settings import OutboxSettings

log = logging.getLogger(__name__)

TIMER_JOB_ID = "timer-tick"
INBOX_JOB_ID = "inbox-tick"
ROUND_GAP = 0.05  # seconds between outbox round starts: a person never notices
INBOX_EVERY_SECONDS = 5.0  # acknowledged events are retried 30 s on; no need to hurry


async def timer_tick(clock: Clock) -> None:
    """Job function: fire the timers that are due."""
    await clock.tick_timers()


async def inbox_tick(clock: Clock) -> None:
    """Job function: re-run acknowledged events whose handler never committed."""
    await clock.tick_inbox()


async def extra_tick(clock: Clock, job_id: str) -> None:
    """Job function: one of the `jobs` the clock was given (the daily digest)."""
    await clock.tick_job(job_id)


class Clock:
    """Owns the AsyncIOScheduler; `start` in the app's startup, `stop` at shutdown.

    `timer_hook(session, timer)` runs inside the transaction that marks the timer
    fired (see storage/timers.py), `timer_finish(session)` once after a batch's
    hooks; with no hook the timer job is not scheduled, so
    timers wait rather than fire into nothing. `drain_seconds` bounds the final
    outbox flush at shutdown; rows it does not reach are delivered by the next start
    or by another replica.
    """

    def __init__(
        self,
        worker: OutboxWorker,
        timer_hook: TimerHook | None,
        db: Database,
        settings: OutboxSettings,
        *,
        drain_seconds: float = 5.0,
        recover: Callable[[], Awaitable[int]] | None = None,
        timer_finish: BatchHook | None = None,
        jobs: Mapping[str, tuple[float, Callable[[], Awaitable[object]]]] | None = None,
    ) -> None:
        self.worker = worker
        # id -> (interval seconds, job): whatever they do must be safe on every replica.
        self.jobs = dict(jobs or {})
        self.timer_hook = timer_hook
        self.timer_finish = timer_finish
        self.recover = recover
        self.db = db
        self.settings = settings
        self.drain_seconds = drain_seconds
        self._scheduler: AsyncIOScheduler | None = None
        self._outbox: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        # Held while a tick runs, so stop() can wait for it: the scheduler's own
        # shutdown would cancel an in-flight job coroutine mid-delivery.
        self._timer_busy = asyncio.Lock()
        self._inbox_busy = asyncio.Lock()

    @property
    def running(self) -> bool:
        return self._scheduler is not None and self._scheduler.running

    async def start(self) -> None:
        """Start the outbox loop and the scheduler's interval jobs on the running loop."""
        if self._scheduler is not None:
            return
        self._stopping = False
        scheduler = AsyncIOScheduler(timezone=UTC)
        seconds = self.settings.tick_seconds
        common = {"replace_existing": True, "max_instances": 1, "coalesce": True}
        if self.timer_hook is not None:
            scheduler.add_job(
                timer_tick, "interval", seconds=seconds, id=TIMER_JOB_ID, args=[self], **common
            )
        if self.recover is not None:
            every = max(seconds, INBOX_EVERY_SECONDS)
            scheduler.add_job(
                inbox_tick, "interval", seconds=every, id=INBOX_JOB_ID, args=[self], **common
            )
        for job_id, (every, _) in self.jobs.items():
            scheduler.add_job(
                extra_tick, "interval", seconds=every, id=job_id, args=[self, job_id], **common
            )
        scheduler.start()
        self._scheduler = scheduler
        self._outbox = asyncio.get_running_loop().create_task(self._outbox_loop())
        log.info("clock started: ticking every %s s", seconds)

    def kick(self) -> None:
        """Wake the outbox now (a handler just committed work a person waits for).

        Cheap and safe to call once per request: kicks during a round coalesce."""
        if self._outbox is not None and not self._stopping:
            self._wake.set()

    async def _outbox_loop(self) -> None:
        """Wait for a kick or the interval, then run rounds while they find work.

        Rounds start at most every ROUND_GAP seconds: under a stream of kicks each
        round would otherwise carry a row or two, and every round costs a claim and
        an outcome write (and the event loop's time, which intake needs too). A round
        that claimed all it asked for and sent most of it found a backlog
        (`OutboxWorker.backlogged`): the next starts at once, so the outbox keeps up
        with an intake that writes more than a batch per gap. A round that mostly
        failed keeps the gap, so a platform that refuses at once does not turn a
        backlog into back-to-back rounds of failures."""
        loop = asyncio.get_running_loop()
        while not self._stopping:
            try:
                async with asyncio.timeout(self.settings.tick_seconds):
                    await self._wake.wait()
            except TimeoutError:
                pass
            while not self._stopping:
                started = loop.time()
                self._wake.clear()  # before the round: a kick while it runs asks for one more
                self._realign()
                if not await self.tick_outbox():
                    break
                # A backlog the far side takes: go on at once. A round that mostly failed
                # (a platform down answers at once) keeps the gap.
                if not self.worker.backlogged:
                    await asyncio.sleep(max(0.0, started + ROUND_GAP - loop.time()))

    def _realign(self) -> None:
        """Run now any job whose next run is further ahead than two of its intervals:
        only a wall clock stepped back puts it there (a step forward needs nothing,
        the job is due and `coalesce` runs it once)."""
        if self._scheduler is None:
            return
        now = datetime.now(UTC)
        for job in self._scheduler.get_jobs():
            ahead = job.next_run_time - now if job.next_run_time is not None else None
            if ahead is not None and ahead > 2 * job.trigger.interval:
                log.warning("clock: the wall clock stepped back %s; %s runs now", ahead, job.id)
                job.modify(next_run_time=now)

    async def stop(self) -> None:
        """Stop ticking, wait for in-flight ticks, shut the scheduler down, flush the outbox."""
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is None:
            return
        self._stopping = True
        scheduler.pause()
        outbox, self._outbox = self._outbox, None
        if outbox is not None:
            self._wake.set()  # the loop ends after the round in flight, never mid-delivery
            await outbox
        async with self._timer_busy, self._inbox_busy:
            scheduler.shutdown(wait=False)
        # AsyncIOScheduler.shutdown is scheduled with call_soon: let it run now.
        await asyncio.sleep(0)
        try:
            async with asyncio.timeout(self.drain_seconds):
                await self.worker.drain()
        except TimeoutError:
            log.warning(
                "outbox flush cut at %s s; leased rows redeliver later", self.drain_seconds
            )
        except Exception:
            log.exception("outbox flush at shutdown failed")
        log.info("clock stopped")

    async def tick_outbox(self) -> int:
        """One outbox round, unless stopping; returns the rows it performed. A failure
        is logged and returns 0: the loop waits for the next kick or interval."""
        if self._stopping:
            return 0
        try:
            return await self.worker.run_once()
        except Exception:
            log.exception("outbox tick failed")
            return 0

    async def tick_inbox(self) -> None:
        """Recover acknowledged events left unhandled (dispatch.Dispatcher.recover)."""
        if self._stopping or self.recover is None:
            return
        async with self._inbox_busy:
            try:
                await self.recover()
            except Exception:
                log.exception("inbox tick failed")

    async def tick_job(self, job_id: str) -> None:
        """Run one of the extra jobs; a failure is logged and retried at its next tick."""
        if self._stopping:
            return
        try:
            await self.jobs[job_id][1]()
        except Exception:
            log.exception("job %s failed", job_id)

    async def tick_timers(self) -> None:
        """Fire the due timers through the hook, one transaction a batch (storage/timers.py)."""
        if self._stopping or self.timer_hook is None:
            return
        async with self._timer_busy:
            try:
                fired = await timers.claim_due(
                    self.db,
                    self.worker.clock(),
                    self.settings.batch,
                    self.timer_hook,
                    finish=self.timer_finish,
                )
            except Exception:
                log.exception("timer tick failed")
                return
        if fired:
            log.debug("fired %d timers", len(fired))
