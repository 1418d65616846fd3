"""What people type and what integrators query, fuzzed against the real app in demo
mode (the console open on loopback, the handlers run inline): chat lines made of
the real command words and hostile arguments, card clicks with any token, and
every read route's query and path. No 5xx, nothing at ERROR, and a read (GET)
changes no table."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bot.app import create_app
from bot.appkeys import CTX, DISPATCH
from handlers.command_grammar import assignments, closest, parse, strip_mentions
from storage.db import Database
from tests.http.generic_cases import request, submit
from tests.security.conftest import API_TOKEN, every_endpoint_settings, fuzz_settings, on_loop
from tests.security.strategies import chat_lines, json_values, texts
from tests.security.test_fuzz_photos import damaged_images
from tests.support import MEMBERS, Client, FakeClock, MakeClient, table_counts

pytestmark = pytest.mark.usefixtures("errors")
NAMES = [name for name, *_ in MEMBERS]
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
SHA = "a" * 64


@pytest.fixture
async def demo(
    db: Database, tmp_path: Path, clock: FakeClock, aiohttp_client: MakeClient
) -> tuple[Client, list[str]]:
    """The demo app with three cases: small (auto-approved), mid and large tier."""
    settings = every_endpoint_settings(tmp_path, db.url, demo=True)
    client = await aiohttp_client(create_app(settings, clock=clock, background=False))
    ids = [await submit(client, clock, request(n, amount)) for n, amount in
           ((1, "29.90"), (2, "300.00"), (3, "2500.00"))]  # fmt: skip
    return client, ids


async def test_chat_lines_from_every_member(demo: tuple[Client, list[str]], engine: str) -> None:
    client, ids = demo

    @fuzz_settings(engine)
    @given(user=st.sampled_from(NAMES), line=chat_lines(ids))
    @example(user="王组长", line=f"/同意 {ids[1]}")
    @example(user="王组长", line=f"/驳回 {ids[2]} " + "原因" * 200)
    @example(user="小周", line="SF1234567890 " * 30)
    @example(user="小美", line=f"/话术 缺配件 {ids[0]} 配件={{{{ ''.__class__ }}}}")
    @on_loop
    async def check(user: str, line: str) -> None:
        body = {"user": user, "text": line, "uuid": str(uuid.uuid4())}
        resp = await client.post("/console/api/send", json=body)
        await resp.read()
        await client.app[DISPATCH].idle()
        assert resp.status in (200, 400, 413), (resp.status, line)  # 413: over 16 KB

    await asyncio.to_thread(check)


async def test_clicks_with_any_token(demo: tuple[Client, list[str]], engine: str) -> None:
    client, _ = demo

    @fuzz_settings(engine)
    @given(user=st.sampled_from(NAMES), token=texts, reason=texts, target=texts, extra=json_values)
    @on_loop
    async def check(user: str, token: str, reason: str, target: str, extra: Any) -> None:
        body = {"user": user, "token": token, "reason": reason, "target": target,
                "uuid": str(uuid.uuid4()), "label": extra}  # fmt: skip
        resp = await client.post("/console/api/click", json=body)
        await resp.read()
        assert resp.status in (200, 400, 413), resp.status

    await asyncio.to_thread(check)


KEYS = ["status", "channel", "shop", "limit", "since", "cursor", "from", "to", "format",
        "period", "user", "after", "code", "id"]  # fmt: skip
ROUTES = [
    "/api/cases", "/api/cases/{id}", "/api/export/cases", "/dashboard", "/console/api/messages",
    "/console/api/members", "/console/static/{name}", "/console/login", "/console",
    f"/api/cases/{{id}}/evidence/{SHA}", f"/console/api/evidence/{SHA}", "/healthz",
]  # fmt: skip
path_parts = st.one_of(
    texts.filter(lambda t: "/" not in t and t not in ("", ".", "..")),
    st.sampled_from(["RC-202611-0001", "console.js", "..%2f..%2fetc%2fpasswd", "%00", "%2e%2e"]),
)


async def test_every_read_route_with_any_query(
    demo: tuple[Client, list[str]], engine: str
) -> None:
    client, ids = demo
    db = client.app[CTX].db

    @fuzz_settings(engine)
    @given(
        route=st.sampled_from(ROUTES),
        part=st.one_of(st.sampled_from(ids), path_parts),
        query=st.dictionaries(st.one_of(st.sampled_from(KEYS), texts), texts, max_size=4),
        token=st.booleans(),
    )
    @example(route="/api/cases", part="", query={"since": "0001-01-01T00:00+08:00"}, token=True)
    @example(route="/api/export/cases", part="", query={"from": "9999-12-31"}, token=True)
    @example(route="/api/cases", part="", query={"cursor": "A" * 300}, token=True)
    @example(route="/api/cases", part="", query={"limit": "9" * 5000}, token=True)  # was a 500
    @example(route="/api/export/cases", part="", query={"from": "0001-01-01"}, token=True)  # 500
    @example(route="/api/export/cases", part="", query={"to": "9999-12-31"}, token=True)  # 500
    @example(route="/console/api/messages", part="", query={"user": "小美", "after": "-1"},
             token=False)  # fmt: skip
    @on_loop
    async def check(route: str, part: str, query: dict[str, str], token: bool) -> None:
        before = await table_counts(db)
        path = route.replace("{id}", part).replace("{name}", part)
        resp = await client.get(path, params=query, headers=AUTH if token else {})
        await resp.read()
        assert resp.status < 500, (resp.status, path, query)
        assert await table_counts(db) == before

    await asyncio.to_thread(check)


@fuzz_settings("sqlite")
@given(line=st.one_of(texts, chat_lines([])))
def test_the_grammar_never_raises(line: str) -> None:
    body, mentioned = strip_mentions(line)
    parsed = parse(body, mentioned, lambda word: word in ("帮助", "help"))
    if parsed is not None:
        assignments(parsed.args)
        closest(parsed.word, ["帮助", "查单", "同意"])


async def test_photo_uploads_of_any_kind(demo: tuple[Client, list[str]], engine: str) -> None:
    client, _ = demo

    @fuzz_settings(engine)
    @given(
        user=st.one_of(st.sampled_from(NAMES), texts),
        uuid_=st.one_of(st.uuids().map(str), texts),
        kind=st.sampled_from(["image/jpeg", "image/png", "image/webp", "text/html", "", "image/"]),
        body=st.one_of(st.binary(max_size=300), damaged_images()),
    )
    @on_loop
    async def check(user: str, uuid_: str, kind: str, body: bytes) -> None:
        params = {"user": user, "uuid": uuid_}
        headers = {"Content-Type": kind} if kind else {}
        resp = await client.post("/console/api/photo", params=params, data=body, headers=headers)
        await resp.read()
        await client.app[DISPATCH].idle()
        assert resp.status < 500, resp.status

    await asyncio.to_thread(check)


async def test_dashboard_sign_in_bodies_of_any_kind(
    demo: tuple[Client, list[str]], engine: str
) -> None:
    client, _ = demo
    db = client.app[CTX].db

    @fuzz_settings(engine)
    @given(
        body=st.one_of(st.binary(max_size=200), texts.map(lambda t: t.encode("utf-8", "replace"))),
        kind=st.sampled_from(
            [
                "application/x-www-form-urlencoded",
                "multipart/form-data",
                "application/json",
                "text/plain",
                "",
            ]
        ),  # fmt: skip
        token=st.one_of(
            texts.map(lambda t: t.encode("utf-8", "replace").decode()), st.just(API_TOKEN)
        ),
    )
    @example(body=b"token=%ED%A0%80", kind="application/x-www-form-urlencoded", token="")
    @on_loop
    async def check(body: bytes, kind: str, token: str) -> None:
        before = await table_counts(db)
        data = body if token == "" else {"token": token}
        headers = {"Content-Type": kind} if kind and token == "" else {}
        resp = await client.post("/dashboard/login", data=data, headers=headers,
                                 allow_redirects=False)  # fmt: skip
        await resp.read()
        assert resp.status < 500, resp.status
        assert await table_counts(db) == before

    await asyncio.to_thread(check)
