"""Who the console acts as outside demo mode: one signed-in member, never the API token.

The issue this guards (issue 6, F): with the console on in `serve`, the read-API token
plus `POST /console/api/send {"user": "王组长", "text": "/同意 RC-…"}` approved and
refunded a case. Now the token is read-only, and a signed-in member acts only as
themselves.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.app import create_app
from bot.appkeys import CTX, WORKER
from bot.demo import seed
from bot.settings import Settings
from bot.web.auth import SESSION_COOKIE
from bot.web.console_login import signin_link
from bot.web.session import issue_code, session_value
from storage.db import Database
from storage.models import Case, Member
from storage.secrets import Keyring
from tests.support import Client, FakeClock, MakeClient, make_settings, table_counts

TOKEN = "signin-test-token-0123456789"


@pytest.fixture
def settings(tmp_path: Path, db: Database) -> Settings:
    """A private server (`serve`, not demo) with the console on and an API token."""
    return make_settings(tmp_path, db.url, api_token=TOKEN)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def client(settings: Settings, clock: FakeClock, aiohttp_client: MakeClient) -> Client:
    app = create_app(settings, clock=clock, background=False)
    made: Client = await aiohttp_client(app)
    await seed(app[CTX])
    await app[WORKER].drain()
    return made


async def pending_case(client: Client) -> str:
    async with client.app[CTX].db.read() as session:
        found = await session.scalars(
            select(Case.id).where(Case.status == "pending_approval", Case.tier == "cs_lead")
        )
        return str(found.first())


def message(user: str, text: str) -> dict[str, str]:
    return {"user": user, "text": text, "uuid": str(uuid.uuid4())}


async def sign_in(client: Client, clock: FakeClock, member: str) -> None:
    code = issue_code(client.app[CTX].keyring, member, clock())
    resp = await client.post("/console/login", data={"code": code}, allow_redirects=False)
    assert resp.status == 303, await resp.text()


async def test_the_read_token_cannot_approve(client: Client) -> None:
    case_id = await pending_case(client)
    before = await table_counts(client.app[CTX].db)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for path, body in (
        ("/console/api/send", message("王组长", f"/同意 {case_id}")),
        ("/console/api/click", {**message("王组长", ""), "token": "x", "label": "同意"}),
    ):
        resp = await client.post(path, json=body, headers=bearer)
        assert resp.status == 403, path
        assert "read-only" in (await resp.json())["error"]
    poll = await client.get("/console/api/messages?user=王组长", headers=bearer)
    assert poll.status == 403
    await client.app[WORKER].drain()
    assert await table_counts(client.app[CTX].db) == before
    async with client.app[CTX].db.read() as session:
        case = await session.get(Case, case_id)
        assert case is not None and case.status == "pending_approval"
    # What the token is for still works.
    assert (await client.get(f"/api/cases/{case_id}", headers=bearer)).status == 200


async def test_a_signed_in_member_acts_only_as_themselves(
    client: Client, clock: FakeClock
) -> None:
    case_id = await pending_case(client)
    await sign_in(client, clock, "刘组长")
    members = await (await client.get("/console/api/members")).json()
    assert members["me"] == "刘组长"

    before = await table_counts(client.app[CTX].db)
    as_other = await client.post("/console/api/send", json=message("王组长", f"/同意 {case_id}"))
    assert as_other.status == 403 and "刘组长" in (await as_other.json())["error"]
    peek = await client.get("/console/api/messages", params={"user": "王组长"})
    assert peek.status == 403
    assert await table_counts(client.app[CTX].db) == before

    mine = await client.post("/console/api/send", json=message("刘组长", f"/同意 {case_id}"))
    assert mine.status == 200
    await client.app[WORKER].drain()
    async with client.app[CTX].db.read() as session:
        case = await session.get(Case, case_id)
        assert case is not None and case.status != "pending_approval"
    own = await client.get("/console/api/messages", params={"user": "刘组长"})
    assert own.status == 200
    # The session cookie opens the console, not the read API.
    assert (await client.get("/api/cases")).status == 401


async def test_a_code_is_used_once(client: Client, clock: FakeClock) -> None:
    code = issue_code(client.app[CTX].keyring, "小美", clock())
    preview = await client.get("/console/login", params={"code": code})  # a link preview
    assert preview.status == 200 and "小美" in await preview.text()
    first = await client.post("/console/login", data={"code": code}, allow_redirects=False)
    assert first.status == 303
    client.session.cookie_jar.clear()
    again = await client.post("/console/login", data={"code": code}, allow_redirects=False)
    assert again.status == 401 and "已使用" in await again.text()
    assert SESSION_COOKIE not in again.cookies


async def test_expired_forged_and_unknown_sign_ins_are_refused(
    client: Client, clock: FakeClock
) -> None:
    secret, other = client.app[CTX].keyring, Keyring(current="not-the-server-secret")
    cases = {
        "expired": issue_code(secret, "小美", clock() - timedelta(hours=25)),
        "other secret": issue_code(other, "小美", clock()),
        "no member": issue_code(secret, "路人", clock()),
        "session as code": session_value(secret, "小美", clock()),
        "truncated": issue_code(secret, "小美", clock())[:-3],
    }
    for label, code in cases.items():
        resp = await client.post("/console/login", data={"code": code}, allow_redirects=False)
        assert resp.status == 401, label
        assert SESSION_COOKIE not in resp.cookies, label
    forged = {
        "code as session": issue_code(secret, "王组长", clock()),
        "expired session": session_value(secret, "王组长", clock() - timedelta(days=8)),
        "other secret": session_value(other, "王组长", clock()),
    }
    for label, value in forged.items():
        client.session.cookie_jar.update_cookies({SESSION_COOKIE: value})
        resp = await client.get("/console/api/members")
        assert resp.status == 401, label


async def test_a_deactivated_member_is_signed_out(client: Client, clock: FakeClock) -> None:
    await sign_in(client, clock, "小美")
    assert (await client.get("/console/api/members")).status == 200
    async with client.app[CTX].db.transaction() as session:
        member = (await session.scalars(select(Member).where(Member.name == "小美"))).one()
        member.active = False
    assert (await client.get("/console/api/members")).status == 401


def test_the_cli_link_points_at_the_login_page(settings: Settings, clock: FakeClock) -> None:
    public = dataclasses.replace(settings.server, public_url="https://bot.example.com/")
    server = dataclasses.replace(settings, server=public)
    link = signin_link(server, Keyring(current="k"), "小美", timedelta(hours=1), clock())
    assert link.startswith("https://bot.example.com/console/login?code=")
