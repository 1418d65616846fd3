"""GET/POST /callbacks/wecom: the URL check, and everything we refuse.

A refused callback gets a 4xx with a JSON reason and leaves every table as it
was (counted before and after), on SQLite and PostgreSQL. A good one is acked
at once with 200 and an empty body, however slow its handler.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.appkeys import DISPATCH
from bot.events import ChatMessage
from handlers.context import Ctx
from storage.db import Database
from tests.fakes.wecom import AES_KEY, OTHER_AES_KEY, SECRET, FakeWecom, running
from tests.fakes.wecom_callbacks import CallbackSigner, settle, wecom_app
from tests.support import Client, FakeClock, MakeClient, post_generic, return_body, table_counts

PATH = "/callbacks/wecom"


@pytest.fixture
def signer(clock: FakeClock) -> CallbackSigner:
    return CallbackSigner(clock.timestamp)


@pytest.fixture
async def fake() -> AsyncIterator[FakeWecom]:
    async with running(FakeWecom()) as server:
        yield server


@pytest.fixture
def client(wecom_client: Client) -> Client:
    return wecom_client


async def test_url_check_answers_the_decrypted_echostr_as_plain_text(
    client: Client, signer: CallbackSigner
) -> None:
    resp = await client.get(PATH, params=signer.url_check("8541978926417410254"))
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    assert await resp.read() == b"8541978926417410254"  # no quotes, no BOM, no newline


async def test_url_check_survives_an_unescaped_plus(
    client: Client, signer: CallbackSigner
) -> None:
    queries = iter(lambda: signer.url_check("echo-123"), None)
    query = next(q for q in queries if "+" in q["echostr"])
    raw = "&".join(f"{k}={v}" for k, v in query.items())  # "+" unescaped: decodes to " "
    resp = await client.get(f"{PATH}?{raw}")
    assert (resp.status, await resp.text()) == (200, "echo-123")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda q: {**q, "msg_signature": "0" * 40},
        lambda q: {**q, "timestamp": str(int(q["timestamp"]) - 301)},
        lambda q: {k: v for k, v in q.items() if k != "echostr"},
        lambda q: {**q, "echostr": q["echostr"][:-4] + "AAAA"},
    ],
    ids=["forged", "stale", "no-echostr", "echostr-changed"],
)
async def test_url_check_refuses_a_bad_query(
    client: Client, signer: CallbackSigner, tamper: Callable[[dict[str, str]], dict[str, str]]
) -> None:
    resp = await client.get(PATH, params=tamper(signer.url_check("5071863124")))
    assert resp.status in (400, 403)
    assert "5071863124" not in await resp.text()


async def test_url_check_for_another_corp_is_refused(client: Client, clock: FakeClock) -> None:
    other = CallbackSigner(clock.timestamp, corp_id="ww-somebody-else")
    resp = await client.get(PATH, params=other.url_check("5071863125"))
    assert resp.status == 403
    assert (await resp.json())["error"] == "echostr is for another corp"


def _malformed(signer: CallbackSigner, kind: str) -> tuple[dict[str, str], bytes]:
    """A body that is wrong in one way, signed correctly where that is possible."""
    text = signer.text("wangzuzhang", "/帮助", msg_id=42)
    if kind == "not-xml":
        return signer.signed_raw("x"), b"this is not xml"
    if kind == "no-encrypt":
        return signer.signed_raw(""), b"<xml><ToUserName>ww</ToUserName></xml>"
    if kind == "bad-base64":
        return signer.signed_raw("!!not*base64!!"), b"<xml><Encrypt>!!not*base64!!</Encrypt></xml>"
    if kind == "short-ciphertext":
        short = base64.b64encode(b"0123456789").decode()
        return signer.signed_raw(short), f"<xml><Encrypt>{short}</Encrypt></xml>".encode()
    if kind == "wrong-key":
        return signer.seal(text, aes_key=OTHER_AES_KEY)
    if kind == "wrong-corp":
        return signer.seal(text, receive_id="ww-somebody-else")
    if kind == "entities":
        bomb = (
            b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><xml><Encrypt>&b;</Encrypt></xml>'
        )
        return signer.signed_raw("x"), bomb
    if kind == "truncated":
        query, body = signer.seal(text)
        return query, body[: len(body) // 2]
    if kind == "bad-inner":  # genuine crypto around a message without FromUserName
        return signer.seal("<xml><MsgType>text</MsgType><MsgId>1</MsgId></xml>")
    if kind == "other-corp-envelope":  # signed and sealed right, addressed elsewhere
        query, body = signer.seal(text)
        return query, body.replace(signer.corp_id.encode(), b"ww-somebody-else", 1)
    raise AssertionError(kind)


MALFORMED = [
    "not-xml",
    "no-encrypt",
    "bad-base64",
    "short-ciphertext",
    "wrong-key",
    "wrong-corp",
    "entities",
    "truncated",
    "bad-inner",
    "other-corp-envelope",
]


@pytest.mark.parametrize("kind", MALFORMED)
async def test_malformed_bodies_get_a_4xx_and_store_nothing(
    client: Client,
    db: Database,
    signer: CallbackSigner,
    fake: FakeWecom,
    kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = await table_counts(db)
    query, body = _malformed(signer, kind)
    with caplog.at_level(logging.WARNING, logger="bot.platforms.wecom"):
        resp = await client.post(PATH, params=query, data=body)
    assert 400 <= resp.status < 500, (kind, resp.status)
    assert (await resp.json())["error"]
    await settle(client.app)
    assert await table_counts(db) == before
    assert fake.calls == []
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "refused" in logged
    assert SECRET not in logged and AES_KEY not in logged


@pytest.mark.parametrize(
    "tamper",
    [
        lambda q: {**q, "msg_signature": "f" * 40},
        lambda q: {**q, "nonce": q["nonce"] + "x"},
        lambda q: {**q, "timestamp": str(int(q["timestamp"]) - 301)},
        lambda q: {**q, "timestamp": str(int(q["timestamp"]) + 301)},
        lambda q: {k: v for k, v in q.items() if k != "msg_signature"},
        lambda q: {**q, "timestamp": "soon"},
    ],
    ids=["forged", "nonce-changed", "stale", "future", "unsigned", "bad-timestamp"],
)
async def test_forged_or_stale_callbacks_are_refused(
    client: Client,
    db: Database,
    signer: CallbackSigner,
    tamper: Callable[[dict[str, str]], dict[str, str]],
) -> None:
    before = await table_counts(db)
    query, body = signer.seal(signer.text("wangzuzhang", "/帮助", msg_id=43))
    resp = await client.post(PATH, params=tamper(query), data=body)
    assert resp.status in (400, 403)
    await settle(client.app)
    assert await table_counts(db) == before


async def test_the_replay_window_follows_the_app_clock(
    client: Client, db: Database, clock: FakeClock, signer: CallbackSigner
) -> None:
    sealed = signer.seal(signer.text("wangzuzhang", "/帮助", msg_id=44))
    clock.advance(300)
    assert (await client.post(PATH, params=sealed[0], data=sealed[1])).status == 200
    await settle(client.app)
    clock.advance(1)
    before = await table_counts(db)
    assert (await client.post(PATH, params=sealed[0], data=sealed[1])).status == 403
    assert await table_counts(db) == before


async def test_an_oversized_body_is_refused(
    client: Client, db: Database, signer: CallbackSigner
) -> None:
    before = await table_counts(db)
    huge = "你好" * 40_000
    query, body = signer.seal(signer.text("wangzuzhang", huge, msg_id=45))
    resp = await client.post(PATH, params=query, data=body)
    assert resp.status == 413
    assert await table_counts(db) == before


async def test_a_body_that_cannot_be_decoded_is_a_400_not_a_500(
    client: Client, db: Database, signer: CallbackSigner, caplog: pytest.LogCaptureFixture
) -> None:
    before = await table_counts(db)
    query, body = signer.seal(signer.text("wangzuzhang", "/帮助", msg_id=48))
    with caplog.at_level(logging.WARNING, logger="bot.platforms.wecom"):
        resp = await client.post(
            PATH, params=query, data=body, headers={"Content-Encoding": "gzip"}
        )
    assert resp.status == 400
    assert "could not be read" in (await resp.json())["error"]
    assert "refused" in " ".join(r.getMessage() for r in caplog.records)
    assert await table_counts(db) == before


async def test_events_we_do_not_handle_are_acked_and_dropped(
    client: Client, db: Database, signer: CallbackSigner
) -> None:
    before = await table_counts(db)
    enter = (
        "<xml><ToUserName>x</ToUserName><FromUserName>wangzuzhang</FromUserName>"
        "<CreateTime>1</CreateTime><MsgType>event</MsgType><Event>enter_agent</Event>"
        "<AgentID>1000002</AgentID></xml>"
    )
    other_agent = signer.text("wangzuzhang", "/帮助", msg_id=46).replace("1000002", "1000009")
    for inner in (enter, other_agent):
        query, body = signer.seal(inner)
        resp = await client.post(PATH, params=query, data=body)
        assert (resp.status, await resp.text()) == (200, "")
    await settle(client.app)
    assert await table_counts(db) == before


async def test_the_answer_does_not_wait_for_the_handler(
    db: Database,
    tmp_path: Path,
    clock: FakeClock,
    fake: FakeWecom,
    signer: CallbackSigner,
    aiohttp_client: MakeClient,
) -> None:
    release = asyncio.Event()
    seen: list[ChatMessage] = []

    async def slow(event: ChatMessage, ctx: Ctx) -> None:
        seen.append(event)
        await release.wait()

    app = wecom_app(db, tmp_path, clock, fake.url)
    client = await aiohttp_client(app)
    app[DISPATCH].handlers[ChatMessage] = slow
    app[DISPATCH].batched.clear()  # texts are handled in batches: run the slow one alone
    query, body = signer.seal(signer.text("wangzuzhang", "/帮助", msg_id=47))
    resp = await client.post(PATH, params=query, data=body)
    assert (resp.status, await resp.text()) == (200, "")
    await asyncio.sleep(0)
    # Answered while the handler is still blocked: the ack never waits for the work.
    assert [e.key for e in seen] == ["wecom:msg:47"] and not release.is_set()
    release.set()
    await settle(app)


ODD_CODE = "RC~" + "x" * 600 + "中文!*()'%$#"  # printable, 614 chars: was refused as "malformed"


async def test_an_odd_but_valid_response_code_is_taken_and_updates_the_card(
    client: Client, clock: FakeClock, fake: FakeWecom, signer: CallbackSigner
) -> None:
    item = {"sku": "FEEDER-2", "name": "自动喂食器", "qty": 1, "unit_price": "132.00"}
    status, _ = await post_generic(client, return_body(amount="132.00", items=[item]), clock)
    assert status == 202
    await settle(client.app)
    card = fake.cards_to("wangzuzhang")[-1]
    approve = next(b["key"] for b in card["button_list"] if b["text"] == "同意")
    inner, code = signer.click(fake, "wangzuzhang", approve, code=ODD_CODE)
    query, body = signer.seal(inner)
    resp = await client.post(PATH, params=query, data=body)
    assert (resp.status, await resp.text()) == (200, "")
    await settle(client.app)
    mine = [u for u in fake.updates_for("wangzuzhang") if u["response_code"] == code]
    assert len(mine) == 1  # the click counted, and its code updated the clicker's card


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("ResponseCode", "x" * 1025, "malformed ResponseCode: 1025 characters, over 1024"),
        ("EventKey", "tok\u0085approve", "malformed EventKey: has a control character"),
        ("TaskId", "rh-1|forged", "malformed TaskId: contains '|'"),
    ],
)
async def test_a_truly_malformed_value_is_refused_with_a_logged_reason(
    client: Client,
    db: Database,
    signer: CallbackSigner,
    field: str,
    value: str,
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    parts = {"EventKey": "tok.approve", "TaskId": "rh-1-a", "ResponseCode": "CODE1"}
    parts[field] = value
    inner = signer.card_event(
        "wangzuzhang", parts["EventKey"], parts["TaskId"], parts["ResponseCode"]
    )
    before = await table_counts(db)
    with caplog.at_level(logging.WARNING, logger="bot.platforms.wecom"):
        resp = await client.post(PATH, params=(sealed := signer.seal(inner))[0], data=sealed[1])
    assert resp.status == 400 and reason in (await resp.json())["error"]
    assert reason in " ".join(r.getMessage() for r in caplog.records)
    await settle(client.app)
    assert await table_counts(db) == before
