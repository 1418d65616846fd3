"""Members and roles: who a chat user is, who holds a role, where their cards go.

Members come from the config (`sync_members` at start), identical in every
replica, so the hot path reads them from a `Roster` held in memory: rebuilt from
the table, in the caller's session, after each sync in the process.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

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


MEMO = "people.members"  # session.info key: the members this transaction looked up


async def member_for(session: AsyncSession, sender: Sender) -> Member | None:
    """The active member behind a chat user, or None for a stranger.

    Kept for the rest of the transaction (members change only in `sync_members`), so
    a batch of one member's texts or clicks looks them and their roles up once."""
    if sender.platform not in _ID_COLUMN:
        return None
    user = sender.user_id.lower() if sender.platform in CASE_INSENSITIVE else sender.user_id
    memo: dict[tuple[str, str], Member | None] = session.info.setdefault(MEMO, {})
    if (sender.platform, user) not in memo:
        found = await session.scalars(
            select(Member).where(_matches(sender.platform, user), Member.active.is_(True))
        )
        memo[sender.platform, user] = found.first()
    return memo[sender.platform, user]


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


class Recipient(Protocol):
    """A member as cards and texts need one: a `Member` row or a roster `Person`."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def wecom_userid(self) -> str | None: ...
    @property
    def dingtalk_staff_id(self) -> str | None: ...
    @property
    def platforms(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Person:
    """An active member as the roster keeps it (not bound to any session)."""

    id: int
    name: str
    wecom_userid: str | None
    dingtalk_staff_id: str | None
    roles: frozenset[str]
    platforms: str | None = None


_synced = 0  # bumped by every sync_members in this process: rosters rebuild


class Roster:
    """The active members and their roles in memory, for the intake path.

    `load`s on first use after a `sync_members` (in the caller's session, so a sync
    earlier in the same transaction is seen); until the next sync, lookups do no I/O.
    """

    def __init__(self) -> None:
        self._loaded = -1
        self._people: tuple[Person, ...] = ()
        self._by_role: Mapping[str, tuple[Person, ...]] = {}

    async def load(self, session: AsyncSession) -> Roster:
        if self._loaded == _synced:
            return self
        loaded = _synced
        rows = await session.execute(
            select(
                Member.id,
                Member.name,
                Member.wecom_userid,
                Member.dingtalk_staff_id,
                Member.platforms,
            )
            .where(Member.active.is_(True))
            .order_by(Member.id)
        )
        roles: dict[int, set[str]] = {}
        for member_id, role in await session.execute(
            select(MemberRole.member_id, MemberRole.role)
        ):
            roles.setdefault(member_id, set()).add(role)
        people = tuple(
            Person(i, name, w, d, frozenset(roles.get(i, ())), p) for i, name, w, d, p in rows
        )
        by_role: dict[str, list[Person]] = {}
        for person in people:
            for role in person.roles:
                by_role.setdefault(role, []).append(person)
        self._people = people
        self._by_role = {role: tuple(found) for role, found in by_role.items()}
        self._loaded = loaded
        return self

    def holders(self, role: str) -> tuple[Person, ...]:
        """Like `holders`: active members holding `role`, by id."""
        return self._by_role.get(role, ())

    def named(self, name: str) -> Person | None:
        """Like `member_named`: by name, or by any platform user id."""
        name = name.strip().lstrip("@")
        for platform in _ID_COLUMN:
            for person in self._people:
                user = address(person, platform)
                if user is not None and same_user(platform, user, name):
                    return person
        return None


def address(member: Recipient, platform: str) -> str | None:
    """The member's user id on `platform`, or None if they are not on it."""
    if platform == "console":
        return member.name
    if platform == "wecom":
        return member.wecom_userid
    if platform == "dingtalk":
        return member.dingtalk_staff_id
    return None


def receives(member: Recipient, platform: str) -> bool:
    """Whether `member`'s cards and texts go to `platform` (a `dingtalk-group` is
    DingTalk): every platform they are on, unless their `platforms = [...]` narrows it.
    The console is for trying things out and always receives."""
    if not member.platforms or platform == "console":
        return True
    return platform.partition("-")[0] in member.platforms.split(",")


async def sync_members(session: AsyncSession, configured: Iterable[MemberConfig]) -> int:
    """Make the members table match the config: upsert by name, deactivate the rest.

    Members are never deleted: audit rows and decided steps keep pointing at them.
    A deactivated member gives up their platform ids, which are unique: the same
    person renamed in the config is a new row that takes them over.
    """
    global _synced
    _synced += 1
    session.info.pop(MEMO, None)
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
        member.platforms = ",".join(conf.platforms) or None
        have = {r.role for r in member.roles}
        member.roles = [r for r in member.roles if r.role in conf.roles] + [
            MemberRole(role=role) for role in conf.roles if role not in have
        ]
    await session.flush()
    return len(wanted)
