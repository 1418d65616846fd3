"""Nobody outside the rules moves a case, through a card or a command, on both
engines (console in demo mode, the handlers inline).

The token on a button names a card, its case and an action, signed; who clicks
is the platform's signed word, and what they may do is their roles'. So: a token
clicked twice decides once; a tampered one is refused (more spellings in
tests/http/test_card_tokens.py); a member without the step's role, a member who
left the config, and the member who keyed the case in are all refused; a
colleague with the role who clicks a forwarded card acts as themselves, audited.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bot.app import create_app
from bot.appkeys import CTX, WORKER
from storage.db import Database
from storage.models import ApprovalStep, AuditEvent, CardRecord, Case
from tests.http.generic_cases import request
from tests.support import Client, FakeClock, MakeClient, make_settings, post_generic
from tests.unit.test_tokens import flip_unused_bit


async def start(
    db: Database, tmp_path: Path, clock: FakeClock, make: MakeClient, **kw: Any
) -> Client:
    settings = make_settings(tmp_path, db.url, demo=True)
    if "without" in kw:
        members = tuple(m for m in settings.members if m.name != kw["without"])
        settings = dataclasses.replace(settings, members=members)
    return await make(create_app(settings, clock=clock, background=False))


async def new_case(client: Client, clock: FakeClock, n: int, amount: str, **fields: Any) -> str:
    status, answer = await post_generic(client, request(n, amount, **fields), clock)
    assert status == 202, answer
    return str(answer["case_id"])


async def token(client: Client, case_id: str, recipient: str, action: str = "approve") -> str:
    async with client.app[CTX].db.read() as session:
        records = await session.scalars(
            select(CardRecord).where(
                CardRecord.case_id == case_id, CardRecord.recipient == recipient
            )
        )
        card = list(records)[-1].card
    return str(next(b["token"] for b in card["buttons"] if b["action"] == action))


async def state(client: Client, case_id: str) -> tuple[str, list[str], int]:
    """(status, each step's state, decisions audited): what a click could move."""
    async with client.app[CTX].db.read() as session:
        case = await session.get(Case, case_id)
        steps = await session.scalars(
            select(ApprovalStep.state)
            .where(ApprovalStep.case_id == case_id)
            .order_by(ApprovalStep.seq)
        )
        decided = await session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.case_id == case_id, AuditEvent.action.in_(("approve", "reject")))
        )
    assert case is not None
    return case.status, list(steps), int(decided or 0)


async def click(client: Client, user: str, token: str) -> int:
    body = {"user": user, "token": token, "label": "同意", "uuid": str(uuid.uuid4())}
    resp = await client.post("/console/api/click", json=body)
    await resp.read()
    return resp.status


async def say(client: Client, user: str, text: str) -> str:
    body = {"user": user, "text": text, "uuid": str(uuid.uuid4())}
    assert (await client.post("/console/api/send", json=body)).status == 200
    await client.app[WORKER].drain()
    chat = await client.get("/console/api/messages", params={"user": user})
    return str((await chat.json())["messages"][-1].get("text", ""))


async def test_a_token_decides_once_and_a_tampered_one_never(
    db: Database, tmp_path: Path, clock: FakeClock, aiohttp_client: MakeClient
) -> None:
    client = await start(db, tmp_path, clock, aiohttp_client)
    case_id = await new_case(client, clock, 1, "132.00")
    approve = await token(client, case_id, "王组长")
    before = await state(client, case_id)
    assert await click(client, "王组长", flip_unused_bit(approve)) == 200
    assert await state(client, case_id) == before
    assert await click(client, "王组长", approve) == 200
    decided = await state(client, case_id)
    assert decided[0] != before[0] and decided[2] == 1
    for user in ("王组长", "刘组长"):  # the same button again, by anyone
        assert await click(client, user, approve) == 200
        assert await state(client, case_id) == decided


async def test_members_without_the_role_or_gone_from_the_config_are_refused(
    db: Database, tmp_path: Path, clock: FakeClock, aiohttp_client: MakeClient
) -> None:
    client = await start(db, tmp_path, clock, aiohttp_client)
    case_id = await new_case(client, clock, 1, "132.00")
    approve = await token(client, case_id, "王组长")
    before = await state(client, case_id)
    for user in ("小美", "小周", "陈风控"):  # no cs_lead role among them
        assert await click(client, user, approve) == 200
        assert "不能" in await say(client, user, f"/同意 {case_id}")
        assert await state(client, case_id) == before, user
    # 王组长 leaves: the config no longer names him; the restart deactivates him.
    client = await start(db, tmp_path, clock, aiohttp_client, without="王组长")
    assert await click(client, "王组长", approve) == 400  # 未知成员
    assert await state(client, case_id) == before


async def test_nobody_approves_a_case_they_keyed_in_or_a_step_not_theirs(
    db: Database, tmp_path: Path, clock: FakeClock, aiohttp_client: MakeClient
) -> None:
    client = await start(db, tmp_path, clock, aiohttp_client)
    own = await new_case(client, clock, 1, "132.00", operator="王组长")
    before = await state(client, own)
    assert "不能审批自己发起的售后单" in await say(client, "王组长", f"/同意 {own}")
    assert await click(client, "王组长", await token(client, own, "刘组长")) == 200
    assert await state(client, own) == before
    # Over 5000: the ops director, then the finance director. Nobody else takes a step.
    big = await new_case(client, clock, 2, "6000.00")
    first = await token(client, big, "李总监")
    assert "不能" in await say(client, "王组长", f"/同意 {big}")  # a lead: not his step
    assert await click(client, "李总监", first) == 200
    after_first = await state(client, big)
    assert after_first[1] == ["approved", "pending"], after_first
    assert "不能" in await say(client, "王组长", f"/同意 {big}")
    assert "您没有「财务总监」角色" in await say(client, "李总监", f"/同意 {big}")
    assert await click(client, "李总监", first) == 200  # his old button, again
    assert await state(client, big) == after_first
