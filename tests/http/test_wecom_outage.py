"""Setup faults against the fake WeCom: a wrong or reset secret, an untrusted IP (60020),
no callback URL (43012). One gettoken per backoff window, one alert per outage,
retryable (never dead-lettered at once), and back to normal once fixed.

The backoff runs on an injected clock; nothing here waits on wall time.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from bot.app import create_app
from bot.appkeys import CTX
from bot.outbox import PermanentError, RetryableError
from bot.platforms.wecom_client import WecomClient
from bot.platforms.wecom_outage import PARK_FIRST, PARK_MOST, WecomSetupError
from bot.settings import WecomSettings
from storage.db import Database
from storage.models import OutboxMessage
from tests.fakes.wecom import AGENT_ID, CORP_ID, SECRET, FakeWecom, running
from tests.fakes.wecom_callbacks import settle, with_wecom
from tests.support import FakeClock, MakeClient, make_settings, post_generic, return_body

WRONG = "a-secret-that-was-reset-0000000000"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def fake() -> AsyncIterator[FakeWecom]:
    async with running(FakeWecom()) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        yield session


def make(
    fake: FakeWecom, http: aiohttp.ClientSession, clock: Clock, *, secret: str = SECRET
) -> tuple[WecomClient, list[str]]:
    alerts: list[str] = []

    async def alert(text: str) -> None:
        alerts.append(text)

    settings = WecomSettings(corp_id=CORP_ID, agent_id=AGENT_ID, secret=secret, api_base=fake.url)
    return WecomClient(settings, lambda: http, clock=clock, alert=alert), alerts


async def failures(client: WecomClient, n: int) -> list[BaseException]:
    """`n` concurrent deliveries; all must fail, and retryably."""
    results = await asyncio.gather(
        *(client.send_text("wangzuzhang", f"第{i}条") for i in range(n)), return_exceptions=True
    )
    assert all(isinstance(r, WecomSetupError) for r in results), results
    return [r for r in results if isinstance(r, BaseException)]


async def test_a_wrong_secret_costs_one_gettoken_per_backoff_window_and_one_alert(
    fake: FakeWecom, http: aiohttp.ClientSession
) -> None:
    clock = Clock()
    client, alerts = make(fake, http, clock, secret=WRONG)
    errors = await failures(client, 20)
    assert fake.token_fetches == 1  # not 20: the waiters were parked behind the first
    assert all(isinstance(e, RetryableError) and WRONG not in str(e) for e in errors)
    (alert,) = alerts
    assert "wecom.secret" in alert and "RETURNHUB__WECOM__SECRET" in alert and WRONG not in alert
    windows = []
    window = PARK_FIRST
    for _ in range(6):  # each window: no call inside it, one probe once it is over
        clock.now += window - 1
        await failures(client, 5)
        fetched = fake.token_fetches
        clock.now += 1
        await failures(client, 5)
        assert fake.token_fetches == fetched + 1
        windows.append(window)
        window = min(window * 2, PARK_MOST)
    assert windows == [60, 120, 240, 480, 900, 900]
    assert len(alerts) == 1  # one outage, one alert
    fake.rotate_secret(WRONG)  # the operator made both sides agree again
    clock.now += PARK_MOST
    await client.send_text("wangzuzhang", "恢复了")
    assert fake.texts_to("wangzuzhang") == ["恢复了"]
    fake.rotate_secret("reset-again")  # a later outage alerts again
    fake.expire_tokens()
    with pytest.raises(WecomSetupError):
        await client.send_text("wangzuzhang", "x")
    assert len(alerts) == 2


async def test_a_wrong_corp_id_alert_names_corp_id(
    fake: FakeWecom, http: aiohttp.ClientSession
) -> None:
    client, alerts = make(fake, http, Clock())
    client.settings = dataclasses.replace(client.settings, corp_id="ww-not-ours")
    await failures(client, 3)
    assert fake.token_fetches == 1 and fake.token_refusals == 1
    (alert,) = alerts
    assert "wecom.corp_id" in alert and "RETURNHUB__WECOM__CORP_ID" in alert


async def test_an_untrusted_ip_parks_the_client_and_alerts_once_with_the_ip(
    fake: FakeWecom, http: aiohttp.ClientSession
) -> None:
    clock = Clock()
    client, alerts = make(fake, http, clock)
    await client.send_text("wangzuzhang", "before")
    fake.distrust_ip()
    for _ in range(5):
        with pytest.raises(WecomSetupError) as caught:
            await client.send_text("wangzuzhang", "blocked")
        assert not isinstance(caught.value, PermanentError)  # never dead-lettered at once
        assert caught.value.errcode == 60020
    assert fake.calls.count("message/send") == 2  # "before", then one refused; rest parked
    (alert,) = alerts
    assert "企业可信IP" in alert and "127.0.0.1" in alert and "回调 URL" in alert
    fake.trust_ip()
    clock.now += PARK_FIRST
    await client.send_text("wangzuzhang", "after")
    assert fake.texts_to("wangzuzhang") == ["before", "after"] and len(alerts) == 1


async def test_60020_on_gettoken_parks_too(fake: FakeWecom, http: aiohttp.ClientSession) -> None:
    clock = Clock()
    client, alerts = make(fake, http, clock)
    fake.distrust_ip(gettoken=True)
    await failures(client, 10)
    assert fake.token_fetches == 1 and "企业可信IP" in alerts[0] and len(alerts) == 1


def approval_card(task_id: str) -> dict[str, Any]:
    return {
        "card_type": "button_interaction",
        "task_id": task_id,
        "main_title": {"title": "售后审批 · RC-261123-0001", "desc": "待客服组长审批"},
        "button_list": [{"text": "同意", "key": "tok-approve", "style": 1}],
    }


async def test_no_callback_url_retries_cards_alerts_once_and_texts_still_go(
    fake: FakeWecom, http: aiohttp.ClientSession
) -> None:
    client, alerts = make(fake, http, Clock())
    fake.has_callback_url = False
    for n in range(3):
        with pytest.raises(WecomSetupError) as caught:
            await client.send_template_card("wangzuzhang", approval_card(f"rh-{n}"))
        assert caught.value.errcode == 43012 and not isinstance(caught.value, PermanentError)
    await client.send_text("wangzuzhang", "文本照常")  # 43012 parks nothing
    (alert,) = alerts
    assert "/callbacks/wecom" in alert and "设置API接收" in alert
    fake.has_callback_url = True
    sent = await client.send_template_card("wangzuzhang", approval_card("rh-9"))
    assert sent.response_code and len(fake.cards_to("wangzuzhang")) == 1
    fake.has_callback_url = False  # a new outage: alerted again
    with pytest.raises(WecomSetupError):
        await client.send_template_card("wangzuzhang", approval_card("rh-10"))
    assert len(alerts) == 2


async def test_a_timed_out_card_retried_with_its_task_id_counts_as_delivered(
    fake: FakeWecom, http: aiohttp.ClientSession
) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.2)) as impatient:
        settings = WecomSettings(
            corp_id=CORP_ID, agent_id=AGENT_ID, secret=SECRET, api_base=fake.url
        )
        sessions = [http]
        client = WecomClient(settings, lambda: sessions[-1])
        await client.access_token()
        sessions.append(impatient)
        fake.slow_answer("message/send", 0.5)  # WeCom takes the card, the answer is late
        with pytest.raises(RetryableError):
            await client.send_template_card("wangzuzhang", approval_card("rh-7-1-wangzuzhang"))
    assert len(fake.cards_to("wangzuzhang")) == 1  # delivered, though we never heard so
    fake.slow_answer("message/send", 0)
    sessions.append(http)
    again = await client.send_template_card("wangzuzhang", approval_card("rh-7-1-wangzuzhang"))
    assert again.duplicate and not again.response_code
    assert len(fake.cards_to("wangzuzhang")) == 1  # one card, not two


async def test_42014_for_a_malformed_task_id_is_still_an_error(
    fake: FakeWecom, http: aiohttp.ClientSession
) -> None:
    client, _ = make(fake, http, Clock())
    with pytest.raises(PermanentError, match="42014"):
        await client.send_template_card("wangzuzhang", approval_card("x" * 129))


async def test_deliveries_with_a_wrong_secret_alert_the_admins_once_and_stay_queued(
    db: Database, tmp_path: Path, aiohttp_client: MakeClient
) -> None:
    clock = FakeClock()
    async with running(FakeWecom()) as fake:
        settings = with_wecom(make_settings(tmp_path, db.url, console=False), fake.url)
        wecom = dataclasses.replace(settings.wecom, secret=WRONG)
        app = create_app(dataclasses.replace(settings, wecom=wecom), clock=clock, background=False)
        client = await aiohttp_client(app)
        item = {"sku": "FEEDER-2", "name": "自动喂食器", "qty": 1, "unit_price": "132.00"}
        status, _ = await post_generic(client, return_body(amount="132.00", items=[item]), clock)
        assert status == 202
        await settle(app)
        assert fake.token_fetches == 1
        async with app[CTX].db.read() as session:
            rows = list(await session.scalars(select(OutboxMessage)))
    cards = [r for r in rows if r.kind == "card.send"]
    alerts = [r for r in rows if r.payload.get("alert")]
    assert len(cards) == 2 and all(r.status == "pending" for r in cards)
    assert all("RETURNHUB__WECOM__SECRET" in r.last_error for r in cards)
    (alert,) = alerts
    assert alert.destination == "wecom:admin" and "wecom.secret" in alert.payload["text"]


async def test_calls_in_flight_when_the_ip_is_refused_open_one_window_not_several(
    fake: FakeWecom, http: aiohttp.ClientSession
) -> None:
    clock = Clock()
    client, alerts = make(fake, http, clock)
    await client.access_token()
    fake.distrust_ip()
    await failures(client, 8)  # all eight reach WeCom together and are refused
    assert fake.calls.count("message/send") == 8 and len(alerts) == 1
    clock.now += PARK_FIRST - 1  # had each refusal doubled the park, this would be 8 min
    await failures(client, 3)
    assert fake.calls.count("message/send") == 8
    clock.now += 1
    await failures(client, 8)  # the next window is 120 s, opened once
    clock.now += 2 * PARK_FIRST - 1
    await failures(client, 1)
    assert fake.calls.count("message/send") == 16
