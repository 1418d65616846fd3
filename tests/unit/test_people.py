"""Members from config: renames and removals keep the table consistent; WeCom
userids match whatever their case."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from bot.config_locate import ConfigError
from bot.events import Sender
from bot.settings import MemberConfig
from bot.settings_load import load
from handlers.people import member_for, member_named, same_user, sync_members
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


async def test_wecom_userids_match_whatever_their_case(db: Database) -> None:
    """WeCom userids are unique case-insensitively; a callback may carry another case."""
    lead = MemberConfig(name="王组长", roles=("cs_lead",), wecom_userid="WangZuZhang")
    async with db.transaction() as session:
        await sync_members(session, [lead])
    async with db.read() as session:
        for seen in ("wangzuzhang", "WANGZUZHANG", "WangZuZhang"):
            found = await member_for(session, Sender("wecom", seen))
            assert found is not None and found.name == "王组长", seen
        named = await member_named(session, "@wangZUZHANG")
        assert named is not None and named.name == "王组长"
        assert await member_for(session, Sender("console", "王组长")) is not None
        assert await member_for(session, Sender("wecom", "wangzuzhang2")) is None
    assert same_user("wecom", "WangZuZhang", "wangzuzhang")
    assert not same_user("console", "Ann", "ann")  # console names stay exact


def test_two_members_whose_wecom_userids_differ_only_in_case_is_a_config_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "returnhub.toml"
    path.write_text(
        '[[members]]\nname = "王组长"\nroles = ["cs_lead"]\nwecom_userid = "WangZuZhang"\n\n'
        '[[members]]\nname = "王小组"\nroles = ["cs_agent"]\nwecom_userid = "wangzuzhang"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load(path, env={})
    assert caught.value.errors == [
        f"{path}:9: members[1] (王小组): wecom_userid 已被 王组长 使用"
        " / wecom_userid already used by 王组长"
    ]


async def test_a_transaction_looks_each_member_up_once_until_a_sync(db: Database) -> None:
    """A batch of one member's texts or clicks reads them (and their roles) once."""
    lead = MemberConfig(name="王组长", roles=("cs_lead",), wecom_userid="wangzuzhang")
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        statements.append(sql)

    async with db.transaction() as session:
        await sync_members(session, [lead])
        event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
        try:
            found = [await member_for(session, Sender("wecom", u)) for u in ("wangzuzhang",) * 3]
            found.append(await member_for(session, Sender("wecom", "WangZuZhang")))
            strangers = [await member_for(session, Sender("wecom", "nobody")) for _ in range(2)]
        finally:
            event.remove(db.engine.sync_engine, "before_cursor_execute", seen)
        assert len(statements) == 3  # the member, their roles, the stranger
        assert {id(m) for m in found} == {id(found[0])} and found[0] is not None
        assert found[0].role_names == {"cs_lead"} and strangers == [None, None]
        await sync_members(session, [])  # removed: the next lookup sees it
        assert await member_for(session, Sender("wecom", "wangzuzhang")) is None
