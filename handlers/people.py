"""Members and roles: who a chat user is, who holds a role, where their cards go."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.events import Sender
from bot.settings import MemberConfig
from storage.models import Member, MemberRole

NOT_A_MEMBER = "您还不是售后机器人的成员，请联系管理员添加"
ROLE_ZH = {
    "cs_agent": "客服",
    "cs_lead": "客服组长",
    "ops_director": "运营总监",
    "finance_director": "财务总监",
    "warehouse": "仓管",
    "risk": "风控",
    "admin": "管理员",
}

# The column that holds each platform's user id; the console uses the member name.
_ID_COLUMN = {
    "console": Member.name,
    "wecom": Member.wecom_userid,
    "dingtalk": Member.dingtalk_staff_id,
}
# WeCom userids are unique case-insensitively in a corp, and WeCom may hand back
# another case than the config's (it lower-cases `invaliduser`): match them so.
# (Config load refuses two members whose userids differ only in case.)
CASE_INSENSITIVE = frozenset({"wecom"})


def role_zh(role: str) -> str:
    return ROLE_ZH.get(role, role)


def _matches(platform: str, user_id: str) -> ColumnElement[bool]:
    column = _ID_COLUMN[platform]
    if platform in CASE_INSENSITIVE:
        return func.lower(column) == user_id.lower()
    return column == user_id


def same_user(platform: str, a: str, b: str) -> bool:
    """Whether two user ids of `platform` name the same person."""
    return a.lower() == b.lower() if platform in CASE_INSENSITIVE else a == b


async def member_for(session: AsyncSession, sender: Sender) -> Member | None:
    """The active member behind a chat user, or None for a stranger."""
    if sender.platform not in _ID_COLUMN:
        return None
    found = await session.scalars(
        select(Member).where(_matches(sender.platform, sender.user_id), Member.active.is_(True))
    )
    return found.first()


async def member_named(session: AsyncSession, name: str) -> Member | None:
    """By name, or by any platform user id (a transfer target typed as @userid)."""
    name = name.strip().lstrip("@")
    for platform in _ID_COLUMN:
        found = await session.scalars(
            select(Member).where(_matches(platform, name), Member.active.is_(True))
        )
        member = found.first()
        if member is not None:
            return member
    return None


async def holders(session: AsyncSession, role: str) -> list[Member]:
    """Active members holding `role`, in a stable order (who gets a role's cards)."""
    found = await session.scalars(
        select(Member)
        .join(MemberRole, MemberRole.member_id == Member.id)
        .where(MemberRole.role == role, Member.active.is_(True))
        .order_by(Member.id)
    )
    return list(found)


def address(member: Member, platform: str) -> str | None:
    """The member's user id on `platform`, or None if they are not on it."""
    if platform == "console":
        return member.name
    if platform == "wecom":
        return member.wecom_userid
    if platform == "dingtalk":
        return member.dingtalk_staff_id
    return None


async def sync_members(session: AsyncSession, configured: Iterable[MemberConfig]) -> int:
    """Make the members table match the config: upsert by name, deactivate the rest.

    Members are never deleted: audit rows and decided steps keep pointing at them.
    A deactivated member gives up their platform ids, which are unique: the same
    person renamed in the config is a new row that takes them over.
    """
    wanted = {m.name: m for m in configured}
    existing = {m.name: m for m in await session.scalars(select(Member))}
    for name, member in existing.items():
        if name not in wanted:
            member.active = False
            member.wecom_userid = member.dingtalk_staff_id = None
    await session.flush()  # release the ids before another row claims them
    for name, conf in wanted.items():
        member = existing.get(name) or Member(name=name, roles=[])
        session.add(member)
        member.active = True
        member.wecom_userid = conf.wecom_userid or None
        member.dingtalk_staff_id = conf.dingtalk_staff_id or None
        have = {r.role for r in member.roles}
        member.roles = [r for r in member.roles if r.role in conf.roles] + [
            MemberRole(role=role) for role in conf.roles if role not in have
        ]
    await session.flush()
    return len(wanted)
