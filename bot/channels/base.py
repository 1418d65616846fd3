"""What every shop-channel client provides to the outbox, and the glue that turns
outbox rows (`channel.event`, `channel.refund`) into client calls.

Handlers write those rows with destination `channel:<name>` (handlers/notify.py);
the performers here pick the client by that name. Each row is delivered with the
event id `rh-<outbox id>`, the same on every retry of that row, so the far side
can drop a redelivery (delivery is at-least-once, DESIGN.md §6).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import UTC
from typing import Any, Protocol

from bot.outbox import Performer, PermanentError
from storage.models import OutboxMessage

log = logging.getLogger(__name__)

PREFIX = "channel"
EVENT_KIND = "channel.event"
REFUND_KIND = "channel.refund"


class ChannelClient(Protocol):
    """Outbound side of a shop channel: case events and refund commands."""

    name: str

    async def send_event(self, payload: dict[str, Any], event_id: str) -> None:
        """Tell the channel what happened to a case (approved, rejected, closed, …).

        Raise RetryableError for transient faults and PermanentError when the far
        side will never accept it; return when it was accepted (or there is
        nothing to send).
        """

    async def refund(self, payload: dict[str, Any], event_id: str) -> bool:
        """Ask the channel to refund; `payload["refund_id"]` is its idempotency key.

        True when the channel took the refund (the case becomes `refunded`); False
        when there was nobody to ask, so the case waits for the channel to report it.
        """


def decision(payload: dict[str, Any]) -> str | None:
    """What a case event asks a marketplace to decide: "approve" for an approved return
    or exchange (a refund-only case waits for its refund command), "reject" for a
    rejection, None for what concerns only us (closed, on_hold, …)."""
    event = payload.get("event")
    if event == "approved" and payload.get("kind") != "refund_only":
        return "approve"
    return "reject" if event == "rejected" else None


class Deciding(ABC):
    """A marketplace on which each case decision is one platform call, `_decide`
    ("approve", "reject" or "refund", as `decision` reads the event); what concerns
    only us (closed, on_hold) needs none. The platform pays the buyer on the refund
    decision, so a refund command leaves the case refunded."""

    name: str

    @abstractmethod
    async def _decide(self, payload: dict[str, Any], decision: str, event_id: str) -> None:
        """Make `decision` on the platform for the case in `payload`, once per event_id."""

    async def send_event(self, payload: dict[str, Any], event_id: str) -> None:
        wanted = decision(payload)
        if wanted is None:
            log.debug(
                "%s: %s for case %s needs no call",
                self.name,
                payload.get("event"),
                payload.get("case_id"),
            )
        else:
            await self._decide(payload, wanted, event_id)

    async def refund(self, payload: dict[str, Any], event_id: str) -> bool:
        await self._decide(payload, "refund", event_id)
        return True


def event_id(msg: OutboxMessage) -> str:
    """Stable across retries of one outbox row: the receiver dedupes on it."""
    return f"rh-{msg.id}"


def occurred_at(msg: OutboxMessage) -> str:
    """When the event happened: the moment its row was written (stored naive UTC)."""
    created = msg.created_at
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return created.astimezone(UTC).isoformat(timespec="seconds")


def channel_performers(channels: Mapping[str, ChannelClient]) -> dict[str, Performer]:
    """Outbox performers for channel side effects, dispatching on `channel:<name>`.

    A destination naming a channel with no client is a PermanentError: retrying
    will not make the channel appear, and the dead letter alerts the admins (and
    a dead refund is reported to finance as failed).
    """

    def client_for(msg: OutboxMessage) -> ChannelClient:
        prefix, _, name = msg.destination.partition(":")
        if prefix != PREFIX or not name:
            raise PermanentError(f"malformed channel destination {msg.destination!r}")
        client = channels.get(name)
        if client is None:
            raise PermanentError(f"channel {name!r} has no client configured")
        return client

    def payload_of(msg: OutboxMessage) -> dict[str, Any]:
        payload = dict(msg.payload)
        payload.setdefault("occurred_at", occurred_at(msg))
        return payload

    async def send_event(msg: OutboxMessage) -> dict[str, Any]:
        await client_for(msg).send_event(payload_of(msg), event_id(msg))
        return {}

    async def refund(msg: OutboxMessage) -> dict[str, Any]:
        confirmed = await client_for(msg).refund(payload_of(msg), event_id(msg))
        return {"confirmed": confirmed}

    return {EVENT_KIND: send_event, REFUND_KIND: refund}
