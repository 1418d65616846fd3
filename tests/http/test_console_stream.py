"""The console's server push (`GET /console/api/stream`) over real HTTP, on SQLite and
PostgreSQL: sign-in, catch-up then push, rows other replicas wrote, rows that commit
late, Last-Event-ID resume (exactly once on the same process, from the table on
another), heartbeats, a stalled subscriber dropped, and shutdown ending the streams."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import create_app
from bot.appkeys import CONSOLE, CTX, WORKER
from bot.demo import demo_settings, seed
from bot.settings import Settings
from bot.web.console_stream import FEED
from storage.db import Database
from tests.support import Client, MakeClient, add_console_row
from tests.unit.test_clock import eventually

WAIT = 10.0  # seconds any one event may take: a bound, not a speed


@pytest.fixture
def settings(tmp_path: Path, db: Database) -> Settings:
    base = demo_settings(8080, tmp_path / "var")
    return dataclasses.replace(base, database=dataclasses.replace(base.database, url=db.url))


@pytest.fixture
async def client(settings: Settings, aiohttp_client: MakeClient) -> Client:
    return await aiohttp_client(create_app(settings, background=False))


class Events:
    """An open event stream, read event by event."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def read(self) -> tuple[str, dict[str, Any]] | None:
        """The next event as (id, data), or None for a heartbeat."""
        event: dict[str, str] = {}
        while True:
            line = (await asyncio.wait_for(self.response.content.readline(), WAIT)).decode()
            assert line, "the stream ended"
            line = line.rstrip("\n")
            if line.startswith(":"):
                return None
            if line:
                name, _, value = line.partition(": ")
                event[name] = value
            elif "data" in event:
                return event.get("id", ""), json.loads(event["data"])

    async def next(self) -> tuple[str, dict[str, Any]]:
        """The next event, heartbeats skipped."""
        while (found := await self.read()) is None:
            pass
        return found

    async def rows(self, count: int) -> tuple[str, list[dict[str, Any]]]:
        """Events until `count` rows came (new and updated alike); the last event's id."""
        got: list[dict[str, Any]] = []
        last = ""
        while len(got) < count:
            last, data = await self.next()
            got += [*data["messages"], *data["updated"]]
        assert len(got) == count, got
        return last, got

    async def quiet(self, pings: int) -> None:
        """`pings` heartbeats in a row, and no rows in between."""
        seen = 0
        while seen < pings:
            found = await self.read()
            if found is None:
                seen += 1
            else:
                assert found[1]["messages"] == found[1]["updated"] == [], found


@asynccontextmanager
async def stream(
    client: Client, user: str, last_event_id: str = "", **query: str
) -> AsyncIterator[Events]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    resp = await client.get("/console/api/stream", params={"user": user, **query}, headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/event-stream"
    try:
        yield Events(resp)
    finally:
        resp.close()


async def say(client: Client, user: str, text: str, n: int) -> None:
    await client.app[CONSOLE].send_text(user, text, outbox_id=n)


async def until_unsubscribed(client: Client, user: str) -> None:
    """The server noticed the closed stream (at its next write, a heartbeat)."""
    feed = client.app[FEED]
    feed.heartbeat = 0.05
    await eventually(lambda: feed.streams(user) == 0, WAIT)


async def test_the_stream_needs_a_member_sign_in(
    settings: Settings, aiohttp_client: MakeClient
) -> None:
    private = dataclasses.replace(
        settings, server=dataclasses.replace(settings.server, demo=False)
    )
    client = await aiohttp_client(create_app(private, background=False))
    resp = await client.get("/console/api/stream", params={"user": "小美"})
    assert resp.status == 401
    assert "error" in await resp.json()


async def test_bad_members_and_event_ids_are_refused(client: Client) -> None:
    for params, headers in (
        ({"user": "nobody"}, {}),
        ({"user": "小美", "after": "x"}, {}),
        ({"user": "小美"}, {"Last-Event-ID": "garbage"}),
        ({"user": "小美"}, {"Last-Event-ID": "ab_1_2_not-a-time"}),
    ):
        resp = await client.get("/console/api/stream", params=params, headers=headers)
        assert resp.status == 400, (params, headers)
        assert "error" in await resp.json()


async def test_catch_up_then_a_commit_is_pushed_at_once(client: Client) -> None:
    await say(client, "小美", "早", 1)
    client.app[FEED].interval = 3600  # no table check in this test: only the kick wakes it
    async with stream(client, "小美") as events:
        _, first = await events.next()
        assert [m["text"] for m in first["messages"]] == ["早"]
        assert first["last_id"] == first["messages"][0]["id"] and first["cursor"]
        await say(client, "小美", "你好", 2)
        _, pushed = await events.rows(1)
        assert pushed[0]["text"] == "你好" and pushed[0]["rev"]


async def test_rows_from_another_replica_and_late_commits_arrive(client: Client) -> None:
    """Rows this process did not write come from the table check; a lower id that commits
    after a higher one was pushed arrives too (as `updated`: below the page's last id)."""
    client.app[FEED].interval = 0.05
    db = client.app[CTX].db
    async with stream(client, "小美") as events:
        await events.next()  # the empty catch-up
        await add_console_row(db, "小美", 1000, "一")
        await add_console_row(db, "小美", 1002, "三")
        _, got = await events.rows(2)
        assert [m["text"] for m in got] == ["一", "三"]
        await add_console_row(db, "小美", 1001, "二")
        _, data = await events.next()
        assert data["messages"] == [] and [m["text"] for m in data["updated"]] == ["二"]
        assert data["last_id"] == 1002


async def test_resume_on_the_same_process_gets_exactly_what_was_missed(client: Client) -> None:
    await seed(client.app[CTX])
    await client.app[WORKER].drain()
    async with stream(client, "王组长") as events:
        _, first = await events.next()
        seen = {(m["id"], m["rev"]) for m in first["messages"]}
        await say(client, "王组长", "先到的", 100)
        last_id, pushed = await events.rows(1)
        seen |= {(m["id"], m["rev"]) for m in pushed}
    await until_unsubscribed(client, "王组长")

    card = next(m for m in first["messages"] if m["type"] == "card" and "132.00" in str(m))
    approve = next(b for b in card["card"]["buttons"] if b["action"] == "approve")
    body = {
        "user": "王组长",
        "token": approve["token"],
        "label": "同意",
        "uuid": str(uuid.uuid4()),
    }
    assert (await client.post("/console/api/click", json=body)).status == 200
    await client.app[WORKER].drain()  # the card is re-rendered: decided by 王组长

    async with stream(client, "王组长", last_id) as events:
        _, missed = await events.rows(3)  # the click's note, the bot's answer, the card
        client.app[FEED].heartbeat = 0.05
        await events.quiet(2)  # nothing more comes, only heartbeats
    assert not {(m["id"], m["rev"]) for m in missed} & seen
    by_type = {m["type"]: m for m in missed}
    assert sorted(by_type) == ["action", "card", "text"]
    assert by_type["action"]["label"] == "同意"
    decided = by_type["card"]
    assert decided["id"] == card["id"] and "王组长" in decided["card"]["status"]


async def test_resume_on_another_replica_catches_up_from_the_table(
    client: Client, settings: Settings, aiohttp_client: MakeClient
) -> None:
    """Another process has another feed: the event id's last id and cursor do the work."""
    other = await aiohttp_client(create_app(settings, background=False))
    async with stream(client, "小美") as events:
        await events.next()
        await say(client, "小美", "一", 1)
        last_id, _ = await events.rows(1)
    await say(client, "小美", "二", 2)  # while the page was away
    async with stream(other, "小美", last_id) as events:
        _, data = await events.next()
    texts = [m["text"] for m in (*data["messages"], *data["updated"])]
    assert "二" in texts and texts.count("二") == 1
    assert [m["text"] for m in data["messages"]] == ["二"]  # "一" only within the look-back


async def test_a_subscriber_that_falls_behind_is_dropped(client: Client) -> None:
    feed = client.app[FEED]
    feed.max_queue = 2
    feed.interval = 0.05
    sub, _, _ = feed.subscribe("小美")
    try:
        for n in range(3):
            await say(client, "小美", f"第{n}条", n + 1)
        await eventually(lambda: sub.dropped, WAIT)
        assert sub.queue.qsize() == 1 and sub.queue.get_nowait() is None  # only the end
    finally:
        feed.unsubscribe(sub)


async def test_shutdown_ends_open_streams(client: Client) -> None:
    async with stream(client, "小美") as events:
        await events.next()
        read = asyncio.create_task(events.response.content.read())
        await asyncio.wait_for(client.server.close(), WAIT)
        assert await asyncio.wait_for(read, WAIT) == b""  # ended, not left hanging
