"""The local console: a real chat platform whose "client" is a web page.

Outbound, it is the same `Platform` the outbox drives for WeCom and DingTalk:
cards are rendered through `templates/cards/console/` and stored as chat rows
the page is pushed (`changed` wakes bot/web/console_feed.py) or polls.
Delivery is at-least-once, so every write is keyed by the outbox row id and
checked before insert (under a PostgreSQL advisory lock, so two replicas
retrying the same row still write one message).

Inbound, the page's JSON posts become neutral `ChatMessage` / `CardAction`
events, and an uploaded photo a `PhotoStored` one (bot/web/console_photo.py).
The page makes a uuid per send, click or upload, so a double POST maps to the
same idempotency key and the handlers' inbox drops the second one.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from bot import keys
from bot.cards import Card, CardRenderer
from bot.events import CardAction, ChatMessage, Sender
from bot.outbox import RetryableError
from bot.web.body import unsafe_text
from storage.db import Database
from storage.models import ConsoleMessage, Member

NAME = "console"
TEXT_MAX = 2000
TOKEN_MAX = 512
REASON_MAX = 500
LABEL_MAX = 32
# Namespace for pg_advisory_xact_lock(int, int): "console" in the first key.
_LOCK_CLASS = 0x636F6E73


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class ConsoleInputError(ValueError):
    """A malformed post from the page; the message is shown to the person (zh)."""


class CardNotShownYet(RetryableError):
    """An update arrived before its card: a transient error, the outbox retries it."""


class ConsolePlatform:
    """Outbox side of the console: chat rows in `console_messages`."""

    name = NAME

    def __init__(
        self,
        db: Database,
        renderer: CardRenderer,
        *,
        clock: Callable[[], datetime] = _utcnow,
        changed: Callable[[], None] = lambda: None,
    ) -> None:
        self.db = db
        self.renderer = renderer
        self.clock = clock
        self.changed = changed  # called after each commit the page should see (a push)

    def _now(self) -> datetime:
        now = self.clock()
        return now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo else now

    async def send_card(self, recipient: str, card: Card, *, card_id: int, outbox_id: int) -> str:
        body = {"type": "card", "card": self.renderer.render(NAME, card), "outbox_id": outbox_id}
        message_id = await self._insert_once(recipient, "out", body, "outbox_id", card_id)
        return f"{NAME}:{message_id}"

    async def update_card(
        self, recipient: str, platform_ref: str, card: Card, *, card_id: int
    ) -> str | None:
        rendered = self.renderer.render(NAME, card)
        async with self.db.transaction() as session:
            rows = await session.scalars(
                select(ConsoleMessage).where(ConsoleMessage.card_id == card_id)
            )
            now = self._now()
            updated = 0
            for row in rows:
                # A new dict, so SQLAlchemy sees the JSON column change.
                row.body = {**row.body, "card": rendered}
                row.updated_at = now
                updated += 1
        if not updated:
            # The send is still queued (or being retried): fail this attempt so the
            # outbox retries later, instead of the old card landing after its update.
            raise CardNotShownYet(f"console card {card_id} for {recipient} is not shown yet")
        self.changed()
        return None

    async def send_text(
        self, recipient: str, text: str, *, outbox_id: int, retry: bool = False
    ) -> None:
        body = {"type": "text", "text": text, "outbox_id": outbox_id}
        await self._insert_once(recipient, "out", body, "outbox_id")

    async def record_inbound(self, user: str, body: dict[str, Any]) -> int:
        """Show what the person sent in their own timeline; once per page uuid."""
        return await self._insert_once(user, "in", body, "uuid")

    async def _insert_once(
        self,
        user: str,
        direction: str,
        body: dict[str, Any],
        key_field: str,
        card_id: int | None = None,
    ) -> int:
        key = body[key_field]
        async with self.db.transaction() as session:
            await self._lock(session, f"{key_field}:{key}")
            stored = ConsoleMessage.body[key_field]
            same_key = (
                stored.as_string() == key if isinstance(key, str) else (stored.as_integer() == key)
            )
            existing = await session.scalars(
                select(ConsoleMessage).where(
                    ConsoleMessage.user_id == user, ConsoleMessage.direction == direction, same_key
                )
            )
            found = existing.first()
            if found is not None:
                return found.id
            now = self._now()
            row = ConsoleMessage(
                user_id=user,
                direction=direction,
                card_id=card_id,
                body=body,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            await session.flush()
            row_id = row.id
        self.changed()
        return row_id

    async def _lock(self, session: AsyncSession, key: str) -> None:
        """Serialize check-then-insert for one key across PostgreSQL replicas.

        SQLite needs nothing: `Database.transaction` already holds the one writer lock.
        """
        if self.db.is_sqlite:
            return
        await session.execute(
            text("SELECT pg_advisory_xact_lock(:cls, hashtext(:key))"),
            {"cls": _LOCK_CLASS, "key": key},
        )


# --- inbound: the page's JSON -> neutral events -------------------------------------------


def _field(
    data: dict[str, Any], name: str, *, required: bool, limit: int, lines: bool = False
) -> str:
    """A trimmed string field, free of control characters and lone surrogates (a stored
    surrogate would make every later poll of the chat fail to encode)."""
    value = data.get(name, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ConsoleInputError(f"字段 {name} 必须是字符串")
    value = value.strip()
    if required and not value:
        raise ConsoleInputError(f"缺少字段 {name}")
    if len(value) > limit:
        raise ConsoleInputError(f"字段 {name} 过长（最多 {limit} 字）")
    if unsafe_text(value, lines=lines):
        raise ConsoleInputError(f"字段 {name} 含有无法显示的字符")
    return value


def _common(data: object) -> tuple[dict[str, Any], str, str]:
    if not isinstance(data, dict):
        raise ConsoleInputError("请求体必须是 JSON 对象")
    user = _field(data, "user", required=True, limit=64)
    raw = _field(data, "uuid", required=True, limit=64)
    try:
        uuid = str(uuidlib.UUID(raw))
    except ValueError:
        raise ConsoleInputError("uuid 格式不正确") from None
    return data, user, uuid


def parse_chat(data: object) -> ChatMessage:
    """`{user, text, uuid}` -> ChatMessage keyed `console:msg:<uuid>`."""
    body, user, uuid = _common(data)
    text = _field(body, "text", required=True, limit=TEXT_MAX, lines=True)
    return ChatMessage(key=keys.key(NAME, "msg", uuid), sender=Sender(NAME, user), text=text)


def parse_click(data: object) -> CardAction:
    """`{user, token, reason?, target?, uuid}` -> CardAction keyed `console:click:<uuid>`."""
    body, user, uuid = _common(data)
    return CardAction(
        key=keys.key(NAME, "click", uuid),
        sender=Sender(NAME, user),
        token=_field(body, "token", required=True, limit=TOKEN_MAX),
        reason=_field(body, "reason", required=False, limit=REASON_MAX, lines=True),
        target=_field(body, "target", required=False, limit=64),
    )


def parse_photo(data: object) -> tuple[Sender, str, str]:
    """`{user, uuid}` of an uploaded photo -> (sender, key `console:photo:<uuid>`, uuid)."""
    _, user, uuid = _common(data)
    return Sender(NAME, user), keys.key(NAME, "photo", uuid), uuid


def click_label(data: dict[str, Any]) -> str:
    """The button's label as the page shows it (display only: the token decides)."""
    try:
        return _field(data, "label", required=False, limit=LABEL_MAX)
    except ConsoleInputError:
        return ""


def event_uuid(key: str) -> str:
    return key.rsplit(":", 1)[-1]


async def is_member(db: Database, name: str) -> bool:
    """Console users are members, addressed by name (handlers.people maps it back)."""
    async with db.read() as session:
        found = await session.scalars(
            select(Member.id).where(Member.name == name, Member.active.is_(True))
        )
        return found.first() is not None
