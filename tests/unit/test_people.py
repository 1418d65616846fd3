"""Members from config: renames and removals keep the table consistent; WeCom
userids match whatever their case."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

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
