"""The members and roles intake reads from memory: loaded once, rebuilt on every sync."""

from __future__ import annotations

from bot.settings import MemberConfig
from handlers.people import sync_members
from storage.db import Database
from tests.unit.test_flow import make_ctx
from tests.unit.test_intake_batch import statements


async def test_the_roster_answers_from_memory_until_members_are_synced_again(
    db: Database,
) -> None:
    ctx = make_ctx(db)
    lead = MemberConfig(name="王组长", roles=("cs_lead",), wecom_userid="WangZuZhang")
    admin = MemberConfig(name="管理员", roles=("admin",))
    async with db.transaction() as session:
        await sync_members(session, [lead, admin])
        roster = await ctx.people.load(session)  # the sync in this transaction is seen
        assert [p.name for p in roster.holders("cs_lead")] == ["王组长"]
    async with db.transaction() as session:
        with statements(db) as seen:
            again = await ctx.people.load(session)
        assert seen == []
        found = again.named("王组长")
        assert found is not None and again.named("@wangzuzhang") == found
        assert again.named("nobody") is None
    replaced = MemberConfig(name="刘组长", roles=("cs_lead", "risk"))
    async with db.transaction() as session:
        await sync_members(session, [replaced, admin])
    async with db.transaction() as session:
        roster = await ctx.people.load(session)
    assert [p.name for p in roster.holders("cs_lead")] == ["刘组长"]
    assert [p.name for p in roster.holders("risk")] == ["刘组长"]
    assert roster.named("王组长") is None  # deactivated: no longer anyone's card
