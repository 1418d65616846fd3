"""The clock's extra jobs (the daily digest's tick): run on their interval, a failure
logged and retried at the next tick, nothing run once stopping."""

from __future__ import annotations

import logging

import pytest

from bot.app import DIGEST_JOB_ID
from bot.clock import Clock
from bot.outbox import OutboxWorker
from bot.settings import OutboxSettings
from storage.db import Database
from tests.unit.test_clock import eventually


async def test_an_extra_job_ticks_and_survives_a_failure(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    async def job() -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database restarting")
        return True

    settings = OutboxSettings(tick_seconds=3600)
    worker = OutboxWorker(db, settings, {})
    clock = Clock(worker, None, db, settings, jobs={DIGEST_JOB_ID: (0.05, job)})
    await clock.start()
    try:
        scheduler = clock._scheduler
        assert scheduler is not None
        scheduled = scheduler.get_job(DIGEST_JOB_ID)
        assert scheduled is not None and scheduled.max_instances == 1 and scheduled.coalesce
        with caplog.at_level(logging.ERROR, logger="bot.clock"):
            await eventually(lambda: calls >= 3)
    finally:
        await clock.stop()
    assert f"job {DIGEST_JOB_ID} failed" in caplog.text
    seen = calls
    await clock.tick_job(DIGEST_JOB_ID)  # stopped: runs nothing
    assert calls == seen
