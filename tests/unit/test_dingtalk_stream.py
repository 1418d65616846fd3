"""DingTalk Stream client against the fake gateway: acks after store, drops, failures, system
frames, backoff (both engines: each handler stores its idempotency key and an outbox row)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from bot.platforms.dingtalk_stream_protocol import (
    BOT_MESSAGES,
    CARD_CALLBACKS,
    EVENTS,
    Backoff,
    Frame,
    StreamError,
    open_connection,
)
from bot.platforms.inbound import CallbackRejected
from storage.db import Database
from tests.fakes.dingtalk_stream import CLIENT_ID, CLIENT_SECRET, FakeStreamGateway
from tests.unit.dingtalk_stream_support import Effects, connected, gateway, http, robot, stream

__all__ = ["gateway", "http"]  # fixtures


async def test_acks_only_after_the_handler_stored_its_key(
    db: Database, gateway: FakeStreamGateway, http: aiohttp.ClientSession
) -> None:
    effects = Effects(db)
    effects.gate = asyncio.Event()
    async with connected(
        stream(http, gateway, db, {BOT_MESSAGES: effects, CARD_CALLBACKS: effects})
    ):
        assert gateway.opened == [
            [
                {"type": "CALLBACK", "topic": BOT_MESSAGES},
                {"type": "CALLBACK", "topic": CARD_CALLBACKS},
            ]
        ]
        mid = await gateway.push(BOT_MESSAGES, robot("m1"))
        await gateway.wait(lambda: effects.calls == 1)
        await asyncio.sleep(0.1)
        assert await effects.has_key("m1")
        assert gateway.acks == []  # stored, but the handler has not returned: no ack yet
        effects.gate.set()
        await gateway.wait(lambda: mid in gateway.done)
        answer = gateway.answer(mid)
        assert answer["code"] == 200 and answer["message"] == "OK"
        assert answer["headers"] == {"contentType": "application/json", "messageId": mid}
        assert answer["data"] == {"response": {"handled": "m1"}}
        assert gateway.bad_acks == [] and await effects.stored() == 1


async def test_dropped_connection_loses_nothing_and_handles_nothing_twice(
    db: Database, gateway: FakeStreamGateway, http: aiohttp.ClientSession
) -> None:
    effects = Effects(db)
    async with connected(stream(http, gateway, db, {BOT_MESSAGES: effects})) as client:
        first = [await gateway.push(BOT_MESSAGES, robot(f"a{i}")) for i in range(3)]
        await gateway.wait(lambda: set(first) <= gateway.done)
        # cut mid-frame: the client never saw m-mid whole; it reconnects with a new ticket
        cut = await gateway.push(BOT_MESSAGES, robot("mid"), drop_mid_frame=True)
        await gateway.wait(lambda: cut in gateway.done and gateway.open_connections == 1)
        # handled and stored, but the socket dies before the ack: re-pushed, one effect
        effects.after_store = lambda: _drop_once(gateway, effects)
        stored_late = await gateway.push(BOT_MESSAGES, robot("late"))
        await gateway.wait(lambda: stored_late in gateway.done, within=15)
        assert gateway.refusals == []  # never a reused ticket
        assert client.tickets == gateway.connections == len(gateway.opened) >= 3
        assert gateway.deliveries[cut] >= 2 and gateway.deliveries[stored_late] >= 2
        assert effects.calls == 6  # a0-a2, mid, late twice (the second found the key)
        assert await effects.stored() == 5 and gateway.pending == set()


async def _drop_once(gateway: FakeStreamGateway, effects: Effects) -> None:
    effects.after_store = None
    gateway.drop()
    await asyncio.sleep(0.05)


async def test_failed_handler_is_re_pushed_and_handled_once(
    db: Database, gateway: FakeStreamGateway, http: aiohttp.ClientSession
) -> None:
    effects = Effects(db)
    effects.fail_next = 1
    async with connected(stream(http, gateway, db, {BOT_MESSAGES: effects, EVENTS: effects})):
        mid = await gateway.push(BOT_MESSAGES, robot("f1"))
        await gateway.wait(lambda: mid in gateway.done)
        codes = [a["code"] for a in gateway.acks if a["headers"]["messageId"] == mid]
        assert codes == [500, 200]  # an error ack is no success: pushed again
        assert gateway.answer(mid)["data"] == {"response": {"handled": "f1"}}
        effects.fail_next = 1
        ev = await gateway.push("*", robot("e1"), type="EVENT")
        await gateway.wait(lambda: ev in gateway.done)
        statuses = [json.loads(a["data"])["status"] for a in gateway.acks
                    if a["headers"]["messageId"] == ev]  # fmt: skip
        assert statuses == ["LATER", "SUCCESS"]
        assert effects.calls == 4 and await effects.stored() == 2


async def test_ping_is_echoed_and_bad_frames_are_refused_not_retried(
    db: Database, gateway: FakeStreamGateway, http: aiohttp.ClientSession
) -> None:
    effects = Effects(db)
    async with connected(stream(http, gateway, db, {BOT_MESSAGES: effects})):
        ping = await gateway.ping()
        await gateway.wait(lambda: ping in gateway.pongs)
        unknown = await gateway.push("/v1.0/unknown/topic", {"x": 1})
        garbled = await gateway.push(BOT_MESSAGES, "[1, 2]")
        await gateway.wait(lambda: {unknown, garbled} <= gateway.done)
        assert gateway.answer(unknown)["code"] == 404
        assert gateway.answer(garbled)["code"] == 400
        assert effects.calls == 0 and await effects.stored() == 0


async def test_disconnect_frame_makes_the_client_reconnect_with_a_fresh_ticket(
    db: Database, gateway: FakeStreamGateway, http: aiohttp.ClientSession
) -> None:
    effects = Effects(db)
    async with connected(stream(http, gateway, db, {BOT_MESSAGES: effects})) as client:
        await gateway.disconnect()
        assert gateway.closed_by_client == [True]  # it left before the gateway's silence ran out
        await gateway.wait(lambda: gateway.connections == 2 and gateway.open_connections == 1)
        mid = await gateway.push(BOT_MESSAGES, robot("after"))
        await gateway.wait(lambda: mid in gateway.done)
        assert client.tickets == 2 and gateway.refusals == []


def test_backoff_grows_with_jitter_and_stays_under_its_cap() -> None:
    values = iter([0.0, 1.0, 0.5] * 20)
    backoff = Backoff(base=1.0, cap=60.0, rand=lambda: next(values))
    delays = [backoff.next() for _ in range(12)]
    assert delays[:3] == [0.5, 2.0, 3.0]  # [c/2, c] for c = 1, 2, 4
    assert all(d <= 60.0 for d in delays) and max(delays) == 60.0
    assert all(d >= 30.0 for d in delays[7:])  # capped: c = 60 from the 7th attempt
    backoff.reset()
    assert backoff.next() <= 1.0
    big = Backoff(base=1.0, cap=5.0)
    big.attempt = 10_000
    assert 2.5 <= big.next() <= 5.0  # no overflow however long the outage


async def test_open_connection_failures_back_off_then_connect(
    db: Database, gateway: FakeStreamGateway, http: aiohttp.ClientSession
) -> None:
    gateway.fail_open = 3
    async with connected(
        stream(http, gateway, db, {BOT_MESSAGES: Effects(db)}, backoff=Backoff(0.01, 0.05))
    ) as client:
        assert gateway.fail_open == 0 and client.tickets == 1 and gateway.connections == 1


async def test_wrong_secret_and_reused_ticket_are_refused(
    gateway: FakeStreamGateway, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(StreamError) as refused:
        await open_connection(http, gateway.url, CLIENT_ID, "wrong-secret", [BOT_MESSAGES])
    assert "401" in str(refused.value) and "wrong-secret" not in str(refused.value)
    ticket = await open_connection(http, gateway.url, CLIENT_ID, CLIENT_SECRET, [BOT_MESSAGES])
    async with http.ws_connect(ticket.url()) as ws:
        assert not ws.closed
    with pytest.raises(aiohttp.WSServerHandshakeError) as again:
        await http.ws_connect(ticket.url())
    assert again.value.status == 401 and gateway.refusals == ["reused ticket"]
    late = await open_connection(http, gateway.url, CLIENT_ID, CLIENT_SECRET, [BOT_MESSAGES])
    gateway.expire_tickets()
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await http.ws_connect(late.url())
    assert gateway.refusals[-1] == "expired ticket"


async def test_stop_drains_acks_and_leaves_no_task(
    db: Database, gateway: FakeStreamGateway, http: aiohttp.ClientSession
) -> None:
    effects = Effects(db)
    effects.gate = asyncio.Event()
    client = stream(http, gateway, db, {BOT_MESSAGES: effects})
    client.start()
    await asyncio.wait_for(client.connected.wait(), 10)
    mid = await gateway.push(BOT_MESSAGES, robot("s1"))
    await gateway.wait(lambda: effects.calls == 1)
    stopping = asyncio.create_task(client.stop())
    await asyncio.sleep(0.1)
    effects.gate.set()  # the running handler finishes during the drain: its ack goes out
    await stopping
    assert mid in gateway.done
    names = {t.get_name() for t in asyncio.all_tasks()}
    assert not any(name.startswith("dingtalk-stream") for name in names)
    await gateway.wait(lambda: gateway.open_connections == 0)


async def test_a_refusal_is_final_and_shutting_down_comes_back(
    db: Database, gateway: FakeStreamGateway, http: aiohttp.ClientSession
) -> None:
    effects = Effects(db)
    refusals = [CallbackRejected(403, "robotCode is not ours"), CallbackRejected(503, "stop")]

    async def adapter(data: dict[str, Any]) -> dict[str, Any]:
        if data["msgId"] == "foreign":
            raise refusals[0]
        if data["msgId"] == "during-shutdown" and refusals[1:]:
            raise refusals.pop()
        return await effects(data)

    async with connected(stream(http, gateway, db, {BOT_MESSAGES: adapter})):
        foreign = await gateway.push(BOT_MESSAGES, robot("foreign"))
        late = await gateway.push(BOT_MESSAGES, robot("during-shutdown"))
        await gateway.wait(lambda: {foreign, late} <= gateway.done)
        assert gateway.answer(foreign)["code"] == 403 and gateway.deliveries[foreign] == 1
        assert gateway.answer(foreign)["message"] == "robotCode is not ours"
        codes = [a["code"] for a in gateway.acks if a["headers"]["messageId"] == late]
        assert codes == [500, 200] and await effects.stored() == 1


def test_frames_parse_as_the_protocol_page_spells_them() -> None:
    event = {"specVersion": "1.0", "type": "EVENT", "data": '{"a": 1}',
             "header": {"topic": "*", "messageId": "m1", "eventType": "user_add_org"}}  # fmt: skip
    frame = Frame.parse(json.dumps(event))
    assert (frame.type, frame.topic, frame.message_id, frame.payload()) == (
        "EVENT", "*", "m1", {"a": 1},
    )  # fmt: skip
    for bad in ("[]", '{"type": "CALLBACK"}', '{"type": "X", "headers": {}}', "nope",
                '{"type": "SYSTEM", "headers": {}, "data": {"not": "a string"}}'):  # fmt: skip
        with pytest.raises(ValueError):
            Frame.parse(bad)
