"""When a failed delivery is tried again, and when it is given up (DESIGN.md §6).

Retries must outlast a real outage, so giving up is a matter of time, not of an
attempt count: the waits grow exponentially from `base_delay_seconds` to the cap
`max_delay_seconds` (10 minutes by default), each with jitter so replicas and rows
failing together do not come back together, and the row is dead-lettered once
`give_up_after_hours` (24 h) have passed since its first failed attempt. The last
retry is timed to land on that deadline, so the full period is always used.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.settings import OutboxSettings

MAX_DOUBLINGS = 62  # 2**62 s is far past any cap: stop doubling before floats overflow


@dataclass(frozen=True)
class Retry:
    """The decision after a failure: come back at `at`, or give up (`at` is None)."""

    at: datetime | None
    failing_since: datetime


class RetrySchedule:
    """Capped exponential backoff with equal jitter and a time-based give-up."""

    def __init__(self, settings: OutboxSettings, rng: random.Random | None = None) -> None:
        self.base = settings.base_delay_seconds
        self.cap = settings.max_delay_seconds
        self.give_up = timedelta(hours=settings.give_up_after_hours)
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    def delay(self, failures: int) -> timedelta:
        """The wait after the `failures`-th failure in a row (1 = the first).

        Uniform in [d/2, d] with d = min(cap, base * 2**(failures - 1)): never less
        than half the nominal wait, so a flapping receiver is not hammered.
        """
        doublings = min(max(failures - 1, 0), MAX_DOUBLINGS)
        nominal = min(self.cap, self.base * 2**doublings)
        return timedelta(seconds=nominal * (0.5 + 0.5 * self.rng.random()))

    def after_failure(self, now: datetime, failures: int, failing_since: datetime | None) -> Retry:
        """What to do after a failed attempt at `now`.

        `failures` counts this one; `failing_since` is when the run of failures
        began (None: this is its first).
        """
        since = failing_since or now
        deadline = since + self.give_up
        if now >= deadline:
            return Retry(None, since)
        return Retry(min(now + self.delay(failures), deadline), since)
