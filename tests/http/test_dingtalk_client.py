"""The DingTalk API client against the fake: one token for N concurrent calls, always
in the header; a bounded refresh; backoff after a refused fetch; errors mapped for the
outbox; custom robots kept under 20 a minute and parked on 130101."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from bot.outbox import PermanentError, RetryableError
from bot.platforms.dingtalk_client import DingtalkClient
from bot.platforms.dingtalk_errors import DingtalkApiError
from bot.platforms.outbound import Upload
from storage import outbox
from storage.db import Database
from storage.models import OutboxMessage
from tests.fakes.dingtalk import FakeDingtalk, running
from tests.fakes.dingtalk_callbacks import dingtalk_app, dingtalk_settings
from tests.fakes.wecom_callbacks import settle
from tests.support import FakeClock, MakeClient


class Seconds:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeDingtalk]:
    async with running(FakeDingtalk(clock=lambda: clock.now.timestamp())) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def client_for(fake: FakeDingtalk, http: aiohttp.ClientSession, **kw: object) -> DingtalkClient:
    settings = dingtalk_settings(fake.url, **kw)
    return DingtalkClient(settings, lambda: http, clock=SECONDS)


SECONDS = Seconds()


async def test_concurrent_sends_share_one_token_in_the_header(
    fake: FakeDingtalk, http: aiohttp.ClientSession
) -> None:
    client = client_for(fake, http)
    await asyncio.gather(
        *(client.send_to_users([f"staff{i}"], "sampleText", {"content": "hi"}) for i in range(8))
    )
    assert fake.token_fetches == 1 and len(fake.sends) == 8


async def test_an_expired_token_is_refreshed_once_and_a_storm_is_a_retry(
    fake: FakeDingtalk, http: aiohttp.ClientSession
) -> None:
    client = client_for(fake, http)
    await client.send_to_group("cid1", "sampleText", {"content": "a"})
    fake.expire_tokens()
    await client.send_to_group("cid1", "sampleText", {"content": "b"})
    assert fake.token_fetches == 2
    fake.fail("robot/groupMessages/send", status=401, code="InvalidAuthentication", times=None)
    with pytest.raises(RetryableError, match="token refused again"):
        await client.send_to_group("cid1", "sampleText", {"content": "c"})
    assert fake.token_fetches == 3  # one refresh, not a loop


async def test_an_image_upload_with_an_expired_token_refreshes_it_once(
    fake: FakeDingtalk, http: aiohttp.ClientSession
) -> None:
    client = client_for(fake, http)
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
    first = await client.upload_media(Upload("media", "digest.png", png, "image/png"))
    fake.expire_tokens()  # oapi answers errcode 40014 for the cached token
    second = await client.upload_media(Upload("media", "digest.png", png, "image/png"))
    assert first != second and fake.media[second] == png
    assert fake.token_fetches == 2


async def test_a_refused_secret_backs_off_before_fetching_again(
    fake: FakeDingtalk, http: aiohttp.ClientSession
) -> None:
    client = client_for(fake, http, app_secret="wrong")
    for _ in range(3):
        with pytest.raises(RetryableError, match="APP_SECRET"):
            await client.send_to_group("cid1", "sampleText", {"content": "a"})
    assert fake.token_fetches == 1  # the other two failed fast, inside the backoff
    SECONDS.now += 6
    with pytest.raises(RetryableError):
        await client.send_to_group("cid1", "sampleText", {"content": "a"})
    assert fake.token_fetches == 2
    assert "wrong" not in str(client.settings.app_key)


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (500, "ServiceUnavailable", RetryableError),
        (429, "Throttling.Api", RetryableError),
        (403, "Forbidden.AccessDenied.AccessTokenPermissionDenied", RetryableError),
        (400, "param.invalid", DingtalkApiError),
    ],
)
async def test_errors_map_onto_the_outbox(
    fake: FakeDingtalk, http: aiohttp.ClientSession, status: int, code: str, kind: type
) -> None:
    client = client_for(fake, http)
    fake.fail("robot/oToMessages/batchSend", status=status, code=code)
    with pytest.raises(kind):
        await client.send_to_users(["staff1"], "sampleText", {"content": "a"})


async def test_unknown_users_and_download_codes_are_permanent(
    fake: FakeDingtalk, http: aiohttp.ClientSession
) -> None:
    fake.users = {"staff1"}
    client = client_for(fake, http)
    with pytest.raises(PermanentError, match="not a user"):
        await client.send_to_users(["ghost"], "sampleText", {"content": "a"})
    with pytest.raises(PermanentError):
        await client.download("NO_SUCH_CODE")
    fake.add_file("CODE1", b"\xff\xd8jpeg", "image/jpeg")
    got = await client.download("CODE1")
    assert (got.content, got.content_type) == (b"\xff\xd8jpeg", "image/jpeg")


async def test_a_custom_robot_takes_20_a_minute_and_waits_out_a_130101_penalty(
    db: Database, tmp_path: Path, clock: FakeClock, fake: FakeDingtalk, aiohttp_client: MakeClient
) -> None:
    client = await aiohttp_client(dingtalk_app(db, tmp_path, clock, fake.url))
    async with db.transaction() as session:
        for i in range(25):
            outbox.enqueue(
                session,
                kind="text.send",
                destination="dingtalk-robot:ops",
                payload={"text": f"新售后单 {i}"},
                now=clock(),
            )
    await settle(client.app)
    assert len(fake.robot_messages) == fake.calls.count("robot/send") == 20  # the rest wait
    # Someone else posts through the same robot: DingTalk throttles it for 10 minutes.
    clock.advance(61)
    fake.robot_penalty[next(iter(fake.robot_tokens))] = clock.now.timestamp() + 600
    await settle(client.app)
    assert len(fake.robot_messages) == 20
    calls = fake.calls.count("robot/send")
    clock.advance(120)
    await settle(client.app)
    assert fake.calls.count("robot/send") == calls  # parked: DingTalk is not asked again
    clock.advance(900)  # the penalty is over, and so is the outbox's backoff
    await settle(client.app)
    sent = [m["text"]["content"] for m in fake.robot_messages]
    assert sent == [f"新售后单 {i}" for i in range(25)]
    async with db.read() as session:
        rows = list(await session.scalars(select(OutboxMessage)))
    assert {r.status for r in rows} == {"sent"}
