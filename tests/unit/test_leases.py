"""Leases: one holder at a time, renewal, take-over after expiry, release (both engines)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from storage import leases
from storage.db import Database

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
TTL = timedelta(seconds=15)


async def test_one_holder_until_it_expires(db: Database) -> None:
    assert await leases.acquire(db, "stream", "a", TTL, T0)
    assert not await leases.acquire(db, "stream", "b", TTL, T0 + timedelta(seconds=5))
    assert await leases.holder_of(db, "stream", T0 + timedelta(seconds=5)) == "a"
    # a renews, so b still loses after the first ttl
    assert await leases.acquire(db, "stream", "a", TTL, T0 + timedelta(seconds=10))
    assert not await leases.acquire(db, "stream", "b", TTL, T0 + timedelta(seconds=20))
    # a stops renewing: b takes over once the renewed ttl ran out
    assert await leases.acquire(db, "stream", "b", TTL, T0 + timedelta(seconds=25))
    assert await leases.holder_of(db, "stream", T0 + timedelta(seconds=26)) == "b"
    assert not await leases.acquire(db, "stream", "a", TTL, T0 + timedelta(seconds=26))


async def test_release_frees_it_and_only_for_the_holder(db: Database) -> None:
    assert await leases.acquire(db, "poll:taobao:s1", "a", TTL, T0)
    await leases.release(db, "poll:taobao:s1", "b")  # not b's: nothing happens
    assert await leases.holder_of(db, "poll:taobao:s1", T0) == "a"
    await leases.release(db, "poll:taobao:s1", "a")
    assert await leases.holder_of(db, "poll:taobao:s1", T0) is None
    assert await leases.acquire(db, "poll:taobao:s1", "b", TTL, T0)


async def test_names_are_independent(db: Database) -> None:
    assert await leases.acquire(db, "x", "a", TTL, T0)
    assert await leases.acquire(db, "y", "b", TTL, T0)
    assert await leases.holder_of(db, "x", T0 + TTL) is None  # expired exactly at ttl


async def test_racing_holders_one_wins(db: Database) -> None:
    won = await asyncio.gather(*(leases.acquire(db, "race", f"h{i}", TTL, T0) for i in range(8)))
    assert won.count(True) == 1
