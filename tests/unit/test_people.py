"""Members from config: renames and removals keep the table consistent."""

from __future__ import annotations

from sqlalchemy import select

from bot.events import Sender
from bot.settings import MemberConfig
from handlers.people import member_for, sync_members
from storage.db import Database
from storage.models import Member


async def test_renaming_a_member_keeps_their_platform_ids(db: Database) -> None:
    before = MemberConfig(name="王组长", roles=("cs_lead",), wecom_userid="wangzuzhang")
    after = MemberConfig(name="王经理", roles=("cs_lead",), wecom_userid="wangzuzhang")
    async with db.transaction() as session:
        await sync_members(session, [before])
    async with db.transaction() as session:
        await sync_members(session, [after])
    async with db.read() as session:
        member = await member_for(session, Sender("wecom", "wangzuzhang"))
        old = (await session.scalars(select(Member).where(Member.name == "王组长"))).one()
    assert member is not None and member.name == "王经理"
    assert (old.active, old.wecom_userid) == (False, None)
