"""The console through HTTP: the page, its API, auth, bad input, and a full decision."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from bot.app import create_app
from bot.appkeys import CTX, WORKER
from bot.demo import demo_settings, demo_stream_job, seed
from bot.settings import Settings
from bot.web.auth import SESSION_COOKIE
from bot.web.session import issue_code
from storage.db import Database
from storage.models import Case, ConsoleMessage, InboxKey
from tests.support import add_console_row

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]
TOKEN = "console-test-token-0123456789"


@pytest.fixture
def settings(tmp_path: Path, db: Database) -> Settings:
    """The demo's own settings (console on, demo mode), on each test engine, with a token."""
    base = demo_settings(8080, tmp_path / "var")
    return dataclasses.replace(
        base,
        api=dataclasses.replace(base.api, token=TOKEN),
        database=dataclasses.replace(base.database, url=db.url),
    )


@pytest.fixture
async def client(settings: Settings, aiohttp_client: MakeClient) -> Client:
    return await aiohttp_client(create_app(settings, background=False))


def private(settings: Settings) -> Settings:
    return dataclasses.replace(settings, server=dataclasses.replace(settings.server, demo=False))


async def post(client: Client, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    resp = await client.post(path, json=body)
    return resp.status, await resp.json()


async def chat(client: Client, user: str, after: int = 0, since: str = "") -> dict[str, Any]:
    params = {"user": user, "after": str(after), **({"since": since} if since else {})}
    resp = await client.get("/console/api/messages", params=params)
    assert resp.status == 200, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


async def counts(client: Client) -> tuple[int, int]:
    async with client.app[CTX].db.read() as session:
        shown = await session.scalar(select(func.count(ConsoleMessage.id)))
        keys = await session.scalar(select(func.count()).select_from(InboxKey))
    return int(shown or 0), int(keys or 0)


async def test_page_and_assets_are_served(client: Client) -> None:
    resp = await client.get("/console")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    html = await resp.text()
    assert "售后控制台" in html and "/console/static/console.js?v=" in html
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    js = await client.get("/console/static/console.js")
    assert js.status == 200 and js.content_type == "application/javascript"
    assert (await client.get("/console/static/console.css")).content_type == "text/css"
    assert (await client.get("/console/static/console.html.j2")).status == 404


async def test_members_are_listed_with_zh_roles(client: Client) -> None:
    resp = await client.get("/console/api/members")
    members = {m["name"]: m for m in (await resp.json())["members"]}
    assert len(members) == 8
    assert members["王组长"]["roles"] == ["cs_lead"]
    assert members["王组长"]["role_labels"] == ["客服组长"]
    assert members["小周"]["role_labels"] == ["仓管"]


async def test_private_server_requires_a_member_sign_in(
    settings: Settings, aiohttp_client: MakeClient
) -> None:
    client = await aiohttp_client(create_app(private(settings), background=False))
    for path in ("/console", "/console/api/members", "/console/api/messages?user=小美"):
        resp = await client.get(path)
        assert resp.status == 401, path
        assert "error" in await resp.json()
    status, _ = await post(client, "/console/api/send", {"user": "小美", "text": "/帮助"})
    assert status == 401
    wrong = await client.get("/console", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    assert (await client.get(f"/console?token={TOKEN}", allow_redirects=False)).status == 401
    assert SESSION_COOKIE not in client.session.cookie_jar.filter_cookies(client.make_url("/"))
    assert await counts(client) == (0, 0)


@pytest.mark.parametrize(
    "header",
    [
        {"X-Forwarded-For": "203.0.113.9"},
        {"Forwarded": "for=203.0.113.9"},
        {"X-Real-IP": "203.0.113.9"},  # nginx: often the only one set, Host left as upstream
        {"X-Forwarded-Host": "bot.example.com"},
        {"X-Forwarded-Proto": "https"},
        {"Via": "1.1 proxy"},
        {"CF-Connecting-IP": "203.0.113.9"},
        {"Host": "bot.example.com"},  # DNS rebinding, or a proxy passing Host through
    ],
)
async def test_demo_mode_does_not_trust_proxied_requests(
    client: Client, header: dict[str, str]
) -> None:
    resp = await client.get("/console", headers=header)
    assert resp.status == 401
    assert (await client.get("/console")).status == 200  # straight from loopback: fine


@pytest.mark.parametrize(
    "header",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
async def test_cross_site_posts_are_refused(client: Client, header: dict[str, str]) -> None:
    """Demo mode on loopback needs no login, so the page's origin is what protects it."""
    body = {"user": "小美", "text": "/帮助", "uuid": str(uuid.uuid4())}
    resp = await client.post("/console/api/send", json=body, headers=header)
    assert resp.status == 403
    assert "error" in await resp.json()
    assert await counts(client) == (0, 0)


async def test_same_origin_posts_pass(client: Client) -> None:
    origin = str(client.make_url("/")).rstrip("/")
    body = {"user": "小美", "text": "/帮助", "uuid": str(uuid.uuid4())}
    headers = {"Origin": origin, "Sec-Fetch-Site": "same-origin"}
    assert (await client.post("/console/api/send", json=body, headers=headers)).status == 200


async def test_help_reply_shows_in_the_chat(client: Client) -> None:
    status, body = await post(
        client, "/console/api/send", {"user": "小美", "text": "/帮助", "uuid": str(uuid.uuid4())}
    )
    assert status == 200 and body["ok"] is True
    await client.app[WORKER].drain()
    messages = (await chat(client, "小美"))["messages"]
    assert [(m["direction"], m["type"]) for m in messages] == [("in", "text"), ("out", "text")]
    assert messages[0]["text"] == "/帮助"
    assert "/查单" in messages[1]["text"]
    assert messages[1]["time"]


async def test_same_uuid_twice_is_one_effect(client: Client) -> None:
    body = {"user": "小美", "text": "/帮助", "uuid": str(uuid.uuid4())}
    assert (await post(client, "/console/api/send", body))[0] == 200
    assert (await post(client, "/console/api/send", body))[0] == 200
    await client.app[WORKER].drain()
    messages = (await chat(client, "小美"))["messages"]
    assert [m["direction"] for m in messages] == ["in", "out"]


async def test_card_click_with_a_bad_token_is_politely_refused(client: Client) -> None:
    click = {"user": "王组长", "token": "forged.token", "label": "同意", "uuid": str(uuid.uuid4())}
    status, _ = await post(client, "/console/api/click", click)
    assert status == 200
    await client.app[WORKER].drain()
    messages = (await chat(client, "王组长"))["messages"]
    assert messages[0]["type"] == "action" and messages[0]["label"] == "同意"
    assert messages[-1]["text"] == "该按钮无效或已过期"


U = "5b0c7e4e-8f1d-4c1a-9d7e-2f3a4b5c6d7e"
SEND, CLICK = "/console/api/send", "/console/api/click"


def raw(body: object) -> bytes:
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("path", "data", "expected"),
    [
        (SEND, b"{not json", 400),
        (SEND, b"\xff\xfe", 400),
        (SEND, raw([1, 2]), 400),
        (SEND, raw({"user": "小美", "text": "/帮助"}), 400),
        (SEND, raw({"user": "路人", "text": "hi", "uuid": U}), 400),
        (SEND, raw({"user": "小美", "text": "x" * 2001, "uuid": U}), 400),
        (SEND, raw({"user": "小美", "text": "", "uuid": U}), 400),
        (SEND, raw({"user": "小美", "text": "/帮助", "uuid": "1; drop"}), 400),
        (CLICK, raw({"user": "王组长", "uuid": U}), 400),
        (CLICK, raw({"user": "王组长", "token": "t", "reason": 3, "uuid": U}), 400),
        (CLICK, raw({"user": "路人", "token": "t", "uuid": U}), 400),
        (SEND, raw({"user": "x" * 20000}), 413),
        (SEND, raw({"user": "小美", "text": "坏\ud800", "uuid": U}), 400),  # lone surrogate
        (SEND, raw({"user": "小美", "text": "a\u0000b", "uuid": U}), 400),
        (SEND, b"[" * 15000, 400),  # nesting deeper than the JSON decoder recurses
        (SEND, b'{"user": ' + b"9" * 5000 + b"}", 400),  # an int too long to convert
    ],
)
async def test_malformed_posts_are_rejected_and_store_nothing(
    client: Client, path: str, data: bytes, expected: int
) -> None:
    resp = await client.post(path, data=data, headers={"Content-Type": "application/json"})
    assert resp.status == expected
    assert (await resp.json())["error"]
    assert await counts(client) == (0, 0)


async def test_a_form_post_is_not_json(client: Client) -> None:
    resp = await client.post("/console/api/send", data={"user": "小美", "text": "/帮助"})
    assert resp.status == 415
    assert await counts(client) == (0, 0)


@pytest.mark.parametrize(
    "params",
    [
        {"user": "路人"},
        {"user": "小美", "after": "x"},
        {"user": "小美", "after": "-1"},
        {"user": "小美", "after": "9" * 30},  # beyond a 64-bit id
        {"user": "小美", "after": "1", "since": "yesterday"},
        {"user": "小美", "after": "1", "since": "0001-01-01T00:00:00"},  # minus the look-back
    ],
)
async def test_messages_rejects_unknown_members_and_bad_cursors(
    client: Client, params: dict[str, str]
) -> None:
    resp = await client.get("/console/api/messages", params=params)
    assert resp.status == 400
    assert (await resp.json())["error"]


def is_132(message: dict[str, Any]) -> bool:
    return message["type"] == "card" and any(
        "132.00" in f["value"] for f in message["card"]["fields"]
    )


async def test_decision_updates_every_copy_of_the_card(client: Client) -> None:
    await seed(client.app[CTX])
    await client.app[WORKER].drain()
    first = await chat(client, "王组长")
    [card] = [
        m for m in first["messages"] if m["type"] == "card" and "132.00" in m["card"]["summary"]
    ]
    assert not card["card"]["closed"]
    assert [b["label"] for b in card["card"]["buttons"]] == ["同意", "驳回", "转交"]
    other = await chat(client, "刘组长")
    token = card["card"]["buttons"][0]["token"]
    click = {"user": "王组长", "token": token, "label": "同意", "uuid": str(uuid.uuid4())}
    assert (await post(client, "/console/api/click", click))[0] == 200
    await client.app[WORKER].drain()

    later = await chat(client, "王组长", first["last_id"], first["cursor"])
    [updated] = [m for m in later["updated"] if m["id"] == card["id"]]
    assert updated["rev"] != card["rev"]
    assert updated["card"]["closed"] is True
    assert "王组长" in updated["card"]["status"] and "同意" in updated["card"]["status"]
    elsewhere = await chat(client, "刘组长", other["last_id"], other["cursor"])
    assert any(m["card"]["closed"] for m in elsewhere["updated"] if is_132(m))


async def test_demo_seed_is_idempotent_and_the_stream_adds_one_return(client: Client) -> None:
    ctx = client.app[CTX]
    await seed(ctx)
    async with ctx.db.read() as session:
        before = await session.scalar(select(func.count(Case.id)))
    await seed(ctx)
    async with ctx.db.read() as session:
        assert await session.scalar(select(func.count(Case.id))) == before == 7
    case_id = await demo_stream_job(ctx, random.Random(7))
    async with ctx.db.read() as session:
        assert await session.scalar(select(func.count(Case.id))) == 8
        assert (await session.get(Case, case_id)) is not None


async def test_a_body_arriving_in_pieces_is_read_whole() -> None:
    """A post split across TCP segments: one `content.read(n)` returns only what has
    arrived; the console must read to the end, not parse the first piece."""
    from unittest import mock

    from aiohttp.streams import StreamReader
    from aiohttp.test_utils import make_mocked_request

    from bot.web.console_post import read_json

    body = json.dumps({"user": "小美", "text": "长" * 1500, "uuid": U}).encode()
    reader = StreamReader(mock.Mock(_reading_paused=False), 2**16)
    reader.feed_data(body[:1000])
    request = make_mocked_request(
        "POST",
        SEND,
        headers={"Content-Type": "application/json", "Content-Length": str(len(body))},
        payload=reader,
    )
    read = asyncio.ensure_future(read_json(request))
    await asyncio.sleep(0)  # the reader now holds only the first piece
    reader.feed_data(body[1000:])
    reader.feed_eof()
    assert (await read)["text"] == "长" * 1500


async def test_a_row_committed_after_a_newer_one_is_not_missed(client: Client) -> None:
    """On PostgreSQL ids are handed out at insert but become visible at commit: a poll
    can see id 3 before id 2 commits. `after=3` alone would skip 2 for good."""
    db = client.app[CTX].db

    async def add(row_id: int, text: str) -> None:
        await add_console_row(db, "小美", row_id, text)

    await add(1, "一")
    await add(3, "三")
    first = await chat(client, "小美")
    assert [m["text"] for m in first["messages"]] == ["一", "三"]
    assert first["cursor"]  # text rows move the cursor too, not only cards
    await add(2, "二")  # the slow transaction commits now
    later = await chat(client, "小美", first["last_id"], first["cursor"])
    late = [m for m in (*later["messages"], *later["updated"]) if m["id"] == 2]
    assert [m["text"] for m in late] == ["二"]
    assert later["last_id"] == 3


async def test_the_demo_stream_covers_every_tier(client: Client) -> None:
    """The stream is what someone watching the demo sees arrive: it must show every
    routing tier, the >5000 two-step one and the flagged customer included."""
    ctx = client.app[CTX]
    await seed(ctx)
    rng = random.Random(2026)
    made = [await demo_stream_job(ctx, rng) for _ in range(40)]
    assert None not in made and len(set(made)) == 40  # each draw a new case
    async with ctx.db.read() as session:
        tiers = set(await session.scalars(select(Case.tier).where(Case.id.in_(made))))
    assert tiers == {"auto", "flagged_small", "cs_lead", "director", "director_finance"}


async def test_a_browser_without_login_gets_the_sign_in_form(
    settings: Settings, aiohttp_client: MakeClient
) -> None:
    """A person opening /console on a private server sees a page asking for the sign-in
    code an admin gave them (posted, so it never lands in an access log), not raw JSON."""
    client = await aiohttp_client(create_app(private(settings), background=False))
    html = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    resp = await client.get("/console", headers=html)
    assert resp.status == 401 and resp.content_type == "text/html"
    page = await resp.text()
    assert 'action="/console/login"' in page and 'name="code"' in page
    assert "form-action 'self'" in resp.headers["Content-Security-Policy"]

    wrong = await client.post("/console/login", data={"code": "nope"}, allow_redirects=False)
    assert wrong.status == 401 and wrong.content_type == "text/html"
    assert "登录码无效" in await wrong.text() and SESSION_COOKIE not in wrong.cookies
    token = await client.post("/console/login", data={"code": TOKEN}, allow_redirects=False)
    assert token.status == 401  # the API token is no sign-in code

    code = issue_code(client.app[CTX].keyring, "小美", datetime.now(UTC))
    evil = await client.post(
        "/console/login", data={"code": code}, headers={"Origin": "http://evil.example"}
    )
    assert evil.status == 403

    ok = await client.post("/console/login", data={"code": code}, allow_redirects=False)
    assert ok.status == 303 and ok.headers["Location"] == "/console"
    cookie = ok.cookies[SESSION_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    signed_in = await client.get("/console", headers=html)
    assert signed_in.status == 200 and 'data-me="小美"' in await signed_in.text()
    assert (await (await client.get("/console/api/members")).json())["me"] == "小美"
