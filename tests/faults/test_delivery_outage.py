"""WeCom, DingTalk and the OMS callback receiver all failing at once (issue 14, fault 1):
HTTP 500s, then 429s (WeCom's errcode 45009 and -1 too), then calls that time out
before the far side acts, then answers lost after it acted, then recovery. Every
message is delivered after recovery, in order per case, and none twice: read from
what each fake received, keyed by the far side's own idempotency key (WeCom
task_id, DingTalk outTrackId, the OMS event_id).

The retry backoff runs on the injected clock; only the timeouts cost wall time
(a quarter of a second each, a few rounds).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select

from bot.app import create_app
from bot.appkeys import CTX, WORKER
from storage.db import Database
from storage.models import Case, OutboxMessage
from tests.fakes.dingtalk import FakeDingtalk
from tests.fakes.dingtalk import running as running_dingtalk
from tests.fakes.dingtalk_callbacks import with_dingtalk
from tests.fakes.oms import CLOSE, LOSE_ACK, FakeOms, running_oms
from tests.fakes.wecom import FakeWecom, running
from tests.fakes.wecom_callbacks import settle, with_wecom
from tests.support import Client, FakeClock, MakeClient, make_settings, post_generic, return_body

BIG = 2  # 132-yuan cases, twice: an approval card per lead per platform, a cancel updates them
SMALL = 3  # 29.90-yuan cases: auto-approved, `approved` then `refund_released` to the OMS
WECOM_PATHS = ("message/send", "message/update_template_card")
DINGTALK_PATHS = ("card/instances/createAndDeliver", "card/instances")
LEADS = {"wecom": ("wangzuzhang", "liuzuzhang"), "dingtalk": ("manager1001", "manager1004")}
TIMEOUT = 0.25  # the outbound client's bound in this test; a slow far side takes twice that


class LowRng(random.Random):
    def random(self) -> float:  # every wait at the bottom of its jitter range
        return 0.0


class Fakes:
    def __init__(self, wecom: FakeWecom, dingtalk: FakeDingtalk, oms: FakeOms) -> None:
        self.wecom, self.dingtalk, self.oms = wecom, dingtalk, oms

    def fail(self, status: int, *, wecom_errcode: int | None = None) -> None:
        """Every call answers HTTP `status`; WeCom, given `wecom_errcode`, answers HTTP
        200 with that errcode instead, as it signals being busy or rate limited."""
        self.clear()
        for path in WECOM_PATHS:
            if wecom_errcode is None:
                self.wecom.fail(path, status=status, times=None)
            else:
                self.wecom.fail(path, errcode=wecom_errcode, times=None)
        for path in DINGTALK_PATHS:
            self.dingtalk.fail(path, status=status, code="Throttling", times=None)
        self.oms.down(status)

    def slow(self) -> None:
        """Calls hang past the client's timeout before the far side does anything."""
        self.clear()
        for path in WECOM_PATHS:
            self.wecom.slow(path, 2 * TIMEOUT)
        for path in DINGTALK_PATHS:
            self.dingtalk.slow(path, 2 * TIMEOUT)
        self.oms.down(CLOSE)

    def lose_answers(self) -> None:
        """The far side does the work and its answer comes after the client gave up
        (or never): the retry meets what the first attempt already did."""
        self.clear()
        for path in WECOM_PATHS:
            self.wecom.slow_answer(path, 2 * TIMEOUT)
        for path in DINGTALK_PATHS:
            self.dingtalk.slow_answer(path, 2 * TIMEOUT)
        self.oms.down(LOSE_ACK)

    def clear(self) -> None:
        self.wecom.failures.clear()
        self.dingtalk.failures.clear()
        for fake in (self.wecom, self.dingtalk):
            fake.delays.clear()
            fake.lags.clear()
        self.oms.up()


@pytest.fixture
async def fakes(clock: FakeClock) -> AsyncIterator[Fakes]:
    async with (
        running(FakeWecom()) as wecom,
        running_dingtalk(FakeDingtalk(clock=clock.timestamp)) as dingtalk,
        running_oms(clock) as oms,
    ):
        yield Fakes(wecom, dingtalk, oms)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def client(
    db: Database,
    tmp_path: Path,
    clock: FakeClock,
    fakes: Fakes,
    aiohttp_client: MakeClient,
    monkeypatch: pytest.MonkeyPatch,
) -> Client:
    monkeypatch.setattr("bot.app.OUTBOUND_TIMEOUT", aiohttp.ClientTimeout(total=TIMEOUT))
    settings = make_settings(tmp_path, db.url, console=False, callback_url=fakes.oms.url)
    settings = with_dingtalk(with_wecom(settings, fakes.wecom.url), fakes.dingtalk.url)
    client = await aiohttp_client(create_app(settings, clock=clock, background=False))
    client.app[WORKER].outcomes.schedule.rng = LowRng()
    return client


def case_body(n: int, amount: str, **fields: Any) -> dict[str, Any]:
    item = {"sku": "FEEDER-2", "name": "自动喂食器", "qty": 1, "unit_price": amount}
    values = {
        "event_id": f"evt-{amount}-{n}",
        "external_id": f"AS-{amount}-{n}",
        "order_id": f"SO-{amount}-{n}",
        "buyer": {"ref": f"buyer-{n}", "nick": "喵"},
        "amount": amount,
        "items": [item],
    }
    return return_body(**{**values, **fields})


async def open_case(client: Client, clock: FakeClock, n: int, amount: str) -> str:
    status, answer = await post_generic(client, case_body(n, amount), clock)
    assert status == 202, answer
    case_id: str = answer["case_id"]
    return case_id


async def cancel(client: Client, clock: FakeClock, numbers: range) -> None:
    """The buyer cancels cases `numbers` of the 132-yuan ones."""
    for n in numbers:
        body = case_body(n, "132.00", event_id=f"evt-cancel-{n}", status="cancelled", version="2")
        status, answer = await post_generic(client, body, clock)
        assert status == 202, answer


async def tick(app: web.Application, clock: FakeClock, rounds: int, seconds: float) -> None:
    """The worker's rounds while time passes (each failure backs off on the clock)."""
    for _ in range(rounds):
        await app[WORKER].drain()
        clock.advance(seconds)


async def test_an_outage_of_every_far_side_delivers_everything_once_and_in_order(
    client: Client, clock: FakeClock, fakes: Fakes
) -> None:
    app = client.app
    early = [await open_case(client, clock, n, "132.00") for n in range(BIG)]
    await settle(app)  # their cards are out before the outage: their updates meet it
    fakes.fail(500)
    late = [await open_case(client, clock, BIG + n, "132.00") for n in range(BIG)]
    await cancel(client, clock, range(BIG))
    await tick(app, clock, 3, 5)
    small = [await open_case(client, clock, n, "29.90") for n in range(SMALL)]
    fakes.fail(429)
    await tick(app, clock, 3, 30)
    await cancel(client, clock, range(BIG, 2 * BIG))  # cancelled before their cards went out
    fakes.fail(429, wecom_errcode=45009)  # WeCom: 接口调用超过限制
    await tick(app, clock, 2, 60)
    fakes.fail(503, wecom_errcode=-1)  # WeCom: 系统繁忙
    await tick(app, clock, 2, 120)
    fakes.slow()
    await tick(app, clock, 1, 600)
    fakes.lose_answers()
    await tick(app, clock, 2, 600)
    big = early + late
    failed_calls = len(fakes.wecom.calls) + len(fakes.dingtalk.calls) + fakes.oms.failed
    assert failed_calls > 4 * (BIG + SMALL)  # retried all along, not once

    fakes.clear()
    for _ in range(30):  # the 10-minute cap: a few hours of clock at most
        await settle(app)
        async with app[CTX].db.read() as session:
            rows = list(await session.scalars(select(OutboxMessage)))
        if all(r.status == "sent" for r in rows):
            break
        clock.advance(600)
    assert Counter(r.status for r in rows) == Counter(sent=len(rows))  # none dead, none left

    wecom, dingtalk, oms = fakes.wecom, fakes.dingtalk, fakes.oms
    for case_id in big:
        assert oms.names(case_id) == ["closed"]
        for lead in LEADS["wecom"]:
            (card,) = [c for c in wecom.cards_to(lead) if case_id in c["main_title"]["title"]]
            task = card["task_id"]
            updates = [u for u in wecom.updates_for(lead) if u["template_card"]["task_id"] == task]
            # A response_code works once: a replayed update is refused (60140), never shown
            # twice. A card whose send answer was lost has no code: its next click shows
            # it closed (tests/http/test_wecom_late_cards.py).
            assert len(updates) == (1 if case_id in early else 0), updates
    tracks = Counter(d["outTrackId"] for d in dingtalk.deliveries)
    assert len(tracks) == 4 * BIG and set(tracks.values()) == {1}  # one card per lead per case
    for update in dingtalk.updates:  # each after its card was created (else 400, dead)
        first = next(u for u in dingtalk.updates if u["outTrackId"] == update["outTrackId"])
        assert update == first  # a replay of the same update, not a second change
    assert len({u["outTrackId"] for u in dingtalk.updates}) == 4 * BIG
    for case_id in small:
        assert oms.names(case_id) == ["approved", "refund_released"]  # in order
    resent = Counter(d.body["event_id"] for d in oms.deliveries)
    assert len(resent) == 2 * BIG + 2 * SMALL and oms.refused == []
    assert max(resent.values()) > 1  # lost acks were re-sent under the same event_id
    async with app[CTX].db.read() as session:
        cases = [await session.get(Case, c) for c in big + small]
    assert [c.status if c else None for c in cases] == ["closed"] * len(big) + ["refunded"] * SMALL
