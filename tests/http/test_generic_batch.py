"""POST /webhooks/generic through the group-commit writer (bot/writer.py), on both
engines: repeats inside one batch and against the table make one case; a poisoned
event fails alone (503) while the rest of its batch commits (202); a crash between
the COMMIT and the acks makes the sender retry into `duplicate: true`, never a
second case; many concurrent webhooks share fewer transactions than requests.

A gate holds the writer's first batch, so the next requests queue behind it and
land in one batch for certain (counted, never timed)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.appkeys import CTX, DISPATCH, WRITER
from bot.events import ReturnRequest
from handlers.intake import apply_requests
from handlers.intake_submit import KIND
from storage.models import Case, InboxKey
from tests.support import Client, FakeClock, post_generic, return_body, table_counts
from tests.unit.test_writer import commits


class Gate:
    """The real batch function behind a gate; external ids in `poison` raise.

    Made before the first webhook: it keeps the writer to one batch at a time (as on
    SQLite), so what queues behind a held batch is the next batch on both engines."""

    def __init__(self, client: Client) -> None:
        self.ctx = client.app[CTX]
        self.writer = client.app[WRITER]
        self.writer.concurrency = 1
        self.batches: list[list[str]] = []
        self.entered, self.opened = asyncio.Event(), asyncio.Event()
        self.opened.set()
        self.poison: set[str] = set()
        self.writer.register(KIND, self)

    async def __call__(self, session: AsyncSession, events: Sequence[ReturnRequest]) -> list[Any]:
        self.batches.append([event.external_id for event in events])
        self.entered.set()
        await self.opened.wait()
        results = []
        for event in events:  # the poisoned one fails after the others did their work
            if event.external_id in self.poison:
                raise RuntimeError(f"{event.external_id} is poisoned")
            results += await apply_requests(session, self.ctx, [event])
        return results


def body(external_id: str, event_id: str = "") -> dict[str, Any]:
    return return_body(external_id=external_id, event_id=event_id or f"evt-{external_id}")


async def one_batch(
    client: Client, clock: FakeClock, gate: Gate, bodies: list[dict[str, Any]]
) -> list[tuple[int, dict[str, Any]]]:
    """POST a plug the gate holds, queue `bodies` behind it, then open the gate."""
    gate.entered.clear()
    gate.opened.clear()
    plug = asyncio.ensure_future(post_generic(client, body("PLUG"), clock))
    await gate.entered.wait()
    following = len(gate.batches)  # the index the next batch will have
    posts = [asyncio.ensure_future(post_generic(client, b, clock)) for b in bodies]
    while gate.writer.queued < len(bodies):  # noqa: ASYNC110 - a queue has no event for it
        await asyncio.sleep(0.01)
    gate.opened.set()
    assert (await plug)[0] == 202
    answers = [await post for post in posts]
    assert len(gate.batches[following]) == len(bodies), "they all landed in one batch"
    return answers


async def cases(client: Client, external_id: str) -> list[str]:
    async with client.app[CTX].db.read() as session:
        return list(await session.scalars(select(Case.id).where(Case.external_id == external_id)))


async def test_repeats_in_one_batch_and_in_the_table_make_one_case(
    client: Client, clock: FakeClock
) -> None:
    gate = Gate(client)
    status, first = await post_generic(client, body("OLD"), clock)
    assert status == 202 and first["duplicate"] is False
    answers = await one_batch(client, clock, gate, [body("NEW"), body("NEW"), body("OLD")])
    assert [status for status, _ in answers] == [202, 202, 202]
    new = [answer for _, answer in answers[:2]]
    assert sorted(a["duplicate"] for a in new) == [False, True]
    assert new[0]["case_id"] == new[1]["case_id"] and new[0]["case_id"]
    assert answers[2][1] == {"case_id": first["case_id"], "duplicate": True}
    assert await cases(client, "NEW") == [new[0]["case_id"]]
    assert await cases(client, "OLD") == [first["case_id"]]


async def test_a_poisoned_event_fails_alone_and_the_rest_of_its_batch_commits(
    client: Client, clock: FakeClock
) -> None:
    gate = Gate(client)
    gate.poison = {"BAD"}
    answers = await one_batch(client, clock, gate, [body("A"), body("BAD"), body("B")])
    assert [status for status, _ in answers] == [202, 503, 202]
    assert answers[0][1]["duplicate"] is False and answers[2][1]["duplicate"] is False
    assert await cases(client, "A") == [answers[0][1]["case_id"]]
    assert await cases(client, "B") == [answers[2][1]["case_id"]]
    assert await cases(client, "BAD") == []
    async with client.app[CTX].db.read() as session:
        keys = set(await session.scalars(select(InboxKey.key)))
    assert not any("BAD" in key for key in keys), "its key rolled back with it"
    gate.poison = set()  # the sender retries once the fault is gone: a fresh case
    status, retried = await post_generic(client, body("BAD"), clock)
    assert status == 202 and retried["duplicate"] is False
    assert await cases(client, "BAD") == [retried["case_id"]]


async def test_a_crash_between_commit_and_ack_retries_into_a_duplicate(
    client: Client, clock: FakeClock
) -> None:
    writer = client.app[WRITER]
    real = writer._acknowledge

    def crash_once(batch: Any) -> None:
        writer._acknowledge = real  # type: ignore[method-assign]
        raise RuntimeError("the process died after COMMIT, before the acks")

    writer._acknowledge = crash_once  # type: ignore[method-assign]
    status, _ = await post_generic(client, body("A"), clock)
    assert status == 503, "no ack went out"
    stored = await cases(client, "A")
    assert len(stored) == 1, "but the batch had committed"
    before = await table_counts(client.app[CTX].db)
    status, answer = await post_generic(client, body("A"), clock)  # the sender retries
    assert (status, answer) == (202, {"case_id": stored[0], "duplicate": True})
    assert await table_counts(client.app[CTX].db) == before, "nothing done twice"


async def test_concurrent_webhooks_share_fewer_transactions_than_requests(
    client: Client, clock: FakeClock
) -> None:
    gate = Gate(client)
    bodies = [body(f"C{n:02d}") for n in range(12)]
    with commits(client.app[CTX].db) as seen:
        answers = await one_batch(client, clock, gate, bodies)
    assert [status for status, _ in answers] == [202] * len(bodies)
    assert len({answer["case_id"] for _, answer in answers}) == len(bodies)
    assert len(seen) < len(bodies)
    async with client.app[CTX].db.read() as session:
        assert await session.scalar(select(func.count()).select_from(Case)) == len(bodies) + 1


async def test_after_shutdown_began_webhooks_answer_503_and_store_nothing(
    client: Client, clock: FakeClock
) -> None:
    await client.app[DISPATCH].drain()
    before = await table_counts(client.app[CTX].db)
    status, answer = await post_generic(client, body("LATE"), clock)
    assert status == 503 and "shutting down" in answer["error"]
    assert await table_counts(client.app[CTX].db) == before
