"""What opening a case writes besides its own row, decided first and written after.

Routing a case decides audit rows, cards and outbox messages without I/O; the
decisions collect here, in the order they were made. Two writers consume them:
`apply` through the ORM session (a case re-routed or a later step opened, one at
a time) and storage/intake_rows.py with Core statements for a whole intake batch.
Either way the outbox rows keep the order the decisions were made in.

A card's buttons carry tokens signed for its card record, so a card is built
only once its record has an id: `CardSend.build` runs after the insert.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.cards import ASSIGNEES, SEND_NONCE, Card
from storage import outbox
from storage.models import ApprovalStep, AuditEvent, CardRecord


@dataclass(slots=True)
class CardSend:
    """One card to one recipient, for `step` (flushed, so with an id, before the card
    is written) or for the step numbered `step_id`."""

    case_id: str
    step: ApprovalStep | None
    kind: str
    platform: str
    recipient: str
    build: Callable[[int], Card]
    assignees: str = ""
    step_id: int | None = None

    def record(self, now: datetime) -> CardRecord:
        return CardRecord(
            case_id=self.case_id,
            step_id=self.step.id if self.step is not None else self.step_id,
            kind=self.kind,
            platform=self.platform,
            recipient=self.recipient,
            created_at=now,
            updated_at=now,
        )

    def card(self, card_id: int) -> dict[str, Any]:
        """The card as sent: built for `card_id`, with a send nonce drawn once, here, so
        every retry of its outbox row shows the platform the same card (WeCom: the same
        task_id), and the role chat's list of assignees."""
        card = self.build(card_id)
        extra = {**card.extra, SEND_NONCE: secrets.token_hex(4)}
        if self.assignees:
            extra[ASSIGNEES] = self.assignees
        return replace(card, extra=extra).to_dict()

    def message(self, card_id: int, card: dict[str, Any]) -> Message:
        return Message(
            "card.send",
            f"{self.platform}:{self.recipient}",
            {"card_id": card_id, "card": card},
            self.case_id,
        )


@dataclass(frozen=True, slots=True)
class Message:
    """An outbox row to write."""

    kind: str
    destination: str
    payload: dict[str, Any]
    case_id: str | None


@dataclass(slots=True)
class Effects:
    """Audit rows and sends decided at `now`, in decision order."""

    now: datetime
    audits: list[AuditEvent] = field(default_factory=list)
    sends: list[CardSend | Message] = field(default_factory=list)

    def audit(self, row: AuditEvent) -> None:
        self.audits.append(row)

    def send(self, item: CardSend | Message) -> None:
        self.sends.append(item)

    async def apply(self, session: AsyncSession) -> None:
        """Write everything through the ORM session, in order, and forget it."""
        session.add_all(self.audits)
        if any(isinstance(s, CardSend) for s in self.sends):
            await session.flush()  # the steps the cards name get their ids
        for item in self.sends:
            if isinstance(item, CardSend):
                record = item.record(self.now)
                session.add(record)
                await session.flush()
                record.card = item.card(record.id)
                item = item.message(record.id, record.card)
            outbox.enqueue(
                session,
                kind=item.kind,
                destination=item.destination,
                payload=item.payload,
                now=self.now,
                case_id=item.case_id,
            )
        self.audits, self.sends = [], []
