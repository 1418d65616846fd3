"""Replicas and the Stream connection: exactly one holds it (a database lease), another takes
over when it stops, loses the lease or is killed (both engines; the kill with a real process)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path

import aiohttp

from bot.platforms.dingtalk_stream_protocol import BOT_MESSAGES
from storage import leases
from storage.db import Database
from tests.fakes.dingtalk_stream import CLIENT_ID, CLIENT_SECRET, FakeStreamGateway
from tests.unit.dingtalk_stream_support import Effects, gateway, http, robot, stream

__all__ = ["gateway", "http"]  # fixtures

TTL = timedelta(seconds=1.5)
ROOT = Path(__file__).resolve().parents[2]


async def test_two_replicas_one_connection_and_take_over_on_clean_stop(
    db: Database, gateway: FakeStreamGateway, http: aiohttp.ClientSession
) -> None:
    effects = Effects(db)
    a = stream(http, gateway, db, {BOT_MESSAGES: effects}, "replica-a", lease_ttl=TTL)
    b = stream(http, gateway, db, {BOT_MESSAGES: effects}, "replica-b", lease_ttl=TTL)
    a.start()
    await asyncio.wait_for(a.connected.wait(), 10)
    b.start()
    try:
        await asyncio.sleep(TTL.total_seconds())  # b has tried the lease a few times
        assert not b.holding.is_set() and b.tickets == 0 and gateway.open_connections == 1
        first = await gateway.push(BOT_MESSAGES, robot("before"))
        await gateway.wait(lambda: first in gateway.done)
        await a.stop()  # releases the lease: b needs no ttl to take over
        assert await leases.holder_of(db, a.lease) in (None, "replica-b")
        await asyncio.wait_for(b.connected.wait(), 10)
        second = await gateway.push(BOT_MESSAGES, robot("after"))
        await gateway.wait(lambda: second in gateway.done)
        assert gateway.connections == 2 and gateway.open_connections == 1
        assert await effects.stored() == 2
    finally:
        await a.stop()
        await b.stop()


async def test_a_holder_that_loses_its_lease_closes_its_connection(
    db: Database, gateway: FakeStreamGateway, http: aiohttp.ClientSession
) -> None:
    a = stream(http, gateway, db, {BOT_MESSAGES: Effects(db)}, "replica-a", lease_ttl=TTL)
    a.start()
    try:
        await asyncio.wait_for(a.connected.wait(), 10)
        # another replica got it (say `a` was paused past its ttl): force the row over
        await leases.release(db, a.lease, "replica-a")
        assert await leases.acquire(db, a.lease, "replica-z", timedelta(minutes=5))
        await gateway.wait(lambda: gateway.open_connections == 0)
        assert not a.holding.is_set() and not a.connected.is_set()
        assert await leases.holder_of(db, a.lease) == "replica-z"
    finally:
        await a.stop()
    assert await leases.holder_of(db, a.lease) == "replica-z"  # stop released nothing of z's


SCRIPT = """
import asyncio, sys
from datetime import timedelta
import aiohttp
from bot.platforms.dingtalk_stream import DingtalkStream
from bot.platforms.dingtalk_stream_protocol import BOT_MESSAGES, Backoff
from storage.db import Database

async def main(url, api, client_id, secret):
    db = Database(url)
    async def hang(data):  # takes the frame and never finishes: killed mid-handler
        await asyncio.Event().wait()
    async with aiohttp.ClientSession() as http:
        s = DingtalkStream(http, api, client_id, secret, {BOT_MESSAGES: hang}, db, "process-1",
                           lease_ttl=timedelta(seconds=1.5), backoff=Backoff(0.05, 0.2))
        s.start()
        await asyncio.Event().wait()

asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_killed_holder_is_replaced_and_its_frame_handled_once(
    db: Database, gateway: FakeStreamGateway, http: aiohttp.ClientSession
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SCRIPT, db.url, gateway.url, CLIENT_ID, CLIENT_SECRET,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
    )  # fmt: skip
    effects = Effects(db)
    b = stream(http, gateway, db, {BOT_MESSAGES: effects}, "replica-b", lease_ttl=TTL)
    try:
        await gateway.wait(lambda: gateway.open_connections == 1, within=30)
        b.start()
        mid = await gateway.push(BOT_MESSAGES, robot("in-flight"))
        await gateway.wait(lambda: gateway.deliveries[mid] >= 1)
        await asyncio.sleep(0.5)
        assert not b.holding.is_set() and effects.calls == 0  # the process has the frame
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        # the lease runs out (<= ttl), b's next try (<= ttl/3) wins, the frame is re-pushed
        await asyncio.wait_for(b.connected.wait(), 4 * TTL.total_seconds() + 2)
        await gateway.wait(lambda: mid in gateway.done)
        assert effects.calls == 1 and await effects.stored() == 1
        assert await leases.holder_of(db, b.lease) == "replica-b"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await b.stop()
