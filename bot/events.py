"""Neutral events: what the edge hands the workflow, with no platform types in them.

Every event carries `key`, its idempotency key, claimed in the same transaction
as its effects (DESIGN.md §6 "Inbox").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Item:
    sku: str
    name: str
    qty: int
    unit_price_fen: int
    category: str = ""


def time_version(moment: datetime) -> str:
    """An event time as a channel version: ISO 8601 in UTC, the year always 4 digits.

    "0999-…" rather than strftime's "999-…", so that handlers.versions reads it back
    as a datetime (and so a year below 1000 sorts before 2026 even as text).
    """
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class ReturnRequest:
    """A return request or a status update from a shop channel."""

    key: str
    channel: str
    shop: str
    external_id: str
    order_id: str
    kind: str  # refund_only | return_refund | exchange
    status: str  # requested | buyer_shipped | cancelled | refunded
    amount_fen: int
    version: str  # ASCII digits, or time_version(occurred_at); see handlers.versions
    occurred_at: datetime
    currency: str = "CNY"
    reason_code: str = ""
    reason_text: str = ""
    buyer_ref: str = ""
    buyer_nick: str = ""
    items: tuple[Item, ...] = ()
    return_waybill: str | None = None
    carrier: str | None = None
    evidence: tuple[str, ...] = ()
    operator: str | None = None  # member name of the CS agent who keyed it in, if any
    # When the channel will act by itself (e.g. agree the refund); aware UTC, or None.
    deadline_at: datetime | None = None
    exchange_waybill: str | None = None  # status exchange_shipped: the replacement's waybill
    exchange_carrier: str | None = None


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """A shop order paid or cancelled: the buyer's purchase history (storage/orders.py)."""

    key: str
    channel: str
    shop: str
    order_id: str
    buyer_ref: str
    status: str  # paid | cancelled
    amount_fen: int
    occurred_at: datetime  # when it was paid (or cancelled)
    buyer_nick: str = ""


@dataclass(frozen=True, slots=True)
class Sender:
    """Who did something in a chat: the platform and that platform's user id."""

    platform: str  # console | wecom | dingtalk
    user_id: str


@dataclass(frozen=True, slots=True)
class CardAction:
    """A click on a card button. `token` is the opaque signed button token."""

    key: str
    sender: Sender
    token: str
    reason: str = ""  # reject reason, when the platform collects it with the click
    target: str = ""  # transfer target (member name or platform user id)
    platform_ref: str = ""  # fresh update handle (WeCom response_code) for this card


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """Text typed to the bot (a command, a waybill from a PDA scanner, a reply)."""

    key: str
    sender: Sender
    text: str
    chat_id: str = ""


@dataclass(frozen=True, slots=True)
class RefundResult:
    """The channel answered a refund command (delivered by the outbox)."""

    case_id: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ImageMessage:
    """A photo sent to the bot; `media_id` is the platform's handle to download it."""

    key: str
    sender: Sender
    media_id: str
    chat_id: str = ""


@dataclass(frozen=True, slots=True)
class ChannelNotice:
    """A thin channel notification (抖店 push, a poll's hit): which after-sale changed.

    The edge stores it and acknowledges; its handler fetches the channel's detail
    and hands the intake a `ReturnRequest` under the same `key`.
    """

    key: str
    channel: str
    shop: str
    external_id: str
    tag: str = ""


TOO_LARGE = "too_large"  # PhotoStored.problem: over photos.max_bytes, not stored


@dataclass(frozen=True, slots=True)
class PhotoStored:
    """A chat photo now in the evidence store (storage/evidence.py), handed back to the
    workflow once its bytes are there: to decode, then scan or attach. `problem` is
    set instead when the photo was refused unstored (too_large)."""

    key: str
    sender: Sender
    sha256: str = ""
    content_type: str = ""
    size: int = 0
    problem: str = ""


# Events an edge acknowledges before they are handled are stored (storage/inbound.py)
# so a crash cannot lose them; these are the kinds that can be, by name.
DEFERRABLE: dict[
    str,
    type[ChatMessage]
    | type[CardAction]
    | type[ImageMessage]
    | type[ChannelNotice]
    | type[PhotoStored],
] = {
    "chat_message": ChatMessage,
    "card_action": CardAction,
    "image_message": ImageMessage,
    "channel_notice": ChannelNotice,
    "photo_stored": PhotoStored,
}
Deferrable = ChatMessage | CardAction | ImageMessage | ChannelNotice | PhotoStored


def encode(event: Deferrable) -> tuple[str, dict[str, Any]]:
    """(kind, JSON-safe fields) for storing an acknowledged event."""
    kind = next(name for name, cls in DEFERRABLE.items() if isinstance(event, cls))
    return kind, asdict(event)


def decode(kind: str, data: dict[str, Any]) -> Deferrable:
    """The event `encode` stored; raises KeyError/TypeError on a record it did not write."""
    cls = DEFERRABLE[kind]
    fields = dict(data)
    if "sender" in fields:
        fields["sender"] = Sender(**fields["sender"])
    return cls(**fields)
