"""One transaction per event, claimed once (DESIGN.md §6 "Inbox").

`once` writes the event's idempotency key in the same transaction as its
effects: a redelivery finds the key and does nothing; two concurrent deliveries
race on the primary key and the loser rolls back as a duplicate. Any other lost
race is retried on fresh data: an optimistic-lock conflict (the case changed
under us), a unique row another event inserted first (the same new case or
customer, on PostgreSQL), or a deadlock / serialization failure PostgreSQL broke
by aborting us. The edge has already acknowledged the event, so dropping it on
such a race would lose it.

`once_each` is the same rule for a batch of events in the caller's transaction
(the group-commit writer's, bot/writer.py): one statement clears their
acknowledged records, one finds the keys already handled, and the SLA timers of
every case the batch moved are settled once, not once per event.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from handlers import sla
from handlers.context import Ctx
from storage import inbound
from storage.db import is_retryable
from storage.models import InboundEvent, InboxKey

log = logging.getLogger(__name__)
T = TypeVar("T")


class Duplicate:
    """Returned instead of a result when the event was already handled."""

    def __repr__(self) -> str:
        return "DUPLICATE"


DUPLICATE = Duplicate()
RETRIES = 3
Work = Callable[[AsyncSession], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Once:
    """An event to handle once: its idempotency key, where it came from, its work."""

    key: str
    source: str
    work: Work


async def once(
    ctx: Ctx, key: str, source: str, work: Callable[[AsyncSession], Awaitable[T]]
) -> T | Duplicate:
    """Run `work` in one transaction with the inbox row for `key`, or not at all.

    Returns DUPLICATE when `key` was already handled. Races lost to concurrent
    events are retried up to RETRIES times in a fresh transaction.
    """

    async def claimed(session: AsyncSession) -> T | Duplicate:
        if not await claim(session, ctx, key, source):
            return DUPLICATE
        return await work(session)

    return await retrying(ctx, key, claimed)


async def once_each(session: AsyncSession, ctx: Ctx, events: Sequence[Once]) -> list[Any]:
    """Handle each event in the caller's transaction, in order: its result, or DUPLICATE
    for a key already handled (also one repeated in the batch, after its first).

    Whatever raises propagates, and the caller's savepoint takes the batch back: the
    writer then runs each event alone (bot/writer.py).
    """
    keys = list(dict.fromkeys(event.key for event in events))
    await session.execute(delete(InboundEvent).where(InboundEvent.key.in_(keys)))
    handled = set(await session.scalars(select(InboxKey.key).where(InboxKey.key.in_(keys))))
    results: list[Any] = []
    claimed: list[dict[str, Any]] = []
    for event in events:
        if event.key in handled:
            log.info("duplicate delivery %s dropped", event.key)
            results.append(DUPLICATE)
            continue
        handled.add(event.key)
        claimed.append({"key": event.key, "source": event.source, "received_at": ctx.now()})
        results.append(await event.work(session))
    if claimed:  # one executemany; a key a concurrent batch took fails it, then each alone
        await session.execute(insert(InboxKey), claimed)
    await sla.settle(session, ctx)  # the SLA timers of the cases the batch moved
    return results


async def claim(session: AsyncSession, ctx: Ctx, key: str, source: str) -> bool:
    """In the caller's transaction: write `key`'s inbox row, or False if it was handled.

    The acknowledged inbound record (storage/inbound.py) goes in the same transaction.
    """
    await inbound.done(session, key)  # acknowledged earlier: handled now
    if await session.get(InboxKey, key) is not None:
        log.info("duplicate delivery %s dropped", key)
        return False
    session.add(InboxKey(key=key, source=source, received_at=ctx.now()))
    await session.flush()
    return True


async def retrying(
    ctx: Ctx, key: str, work: Callable[[AsyncSession], Awaitable[T]]
) -> T | Duplicate:
    """Run `work` in a transaction of its own, again on a lost race (see the module doc).

    `work` claims `key` itself (`claim`); a unique-key conflict after which `key` is
    found handled was a concurrent duplicate: DUPLICATE.
    """
    for attempt in range(1, RETRIES + 1):
        try:
            async with ctx.db.transaction() as session:
                result = await work(session)
                await sla.settle(session, ctx)  # the SLA timers of the cases it moved
                return result
        except IntegrityError:
            if await _seen(ctx, key):
                log.info("concurrent duplicate %s dropped", key)
                return DUPLICATE
            if attempt == RETRIES:
                raise
            log.info("event %s lost a unique-key race; retrying (%d)", key, attempt)
        except StaleDataError:
            if attempt == RETRIES:
                raise
            log.info("event %s lost an optimistic-lock race; retrying (%d)", key, attempt)
        except DBAPIError as exc:
            if not is_retryable(exc) or attempt == RETRIES:
                raise
            log.info("event %s was aborted by the database (%s); retrying", key, exc.orig)
    raise AssertionError("unreachable")


async def _seen(ctx: Ctx, key: str) -> bool:
    async with ctx.db.read() as session:
        return await session.get(InboxKey, key) is not None
