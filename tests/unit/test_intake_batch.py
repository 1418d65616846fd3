"""`apply_requests`: a batch of channel events in the caller's transaction."""

from __future__ import annotations

from sqlalchemy import func, select

from handlers.intake import apply_requests, on_return_request
from storage.db import Database
from storage.models import Case, InboxKey
from tests.unit.test_flow import request, setup


async def test_a_key_twice_in_a_batch_and_one_already_handled_are_duplicates(
    db: Database,
) -> None:
    ctx = await setup(db)
    earlier = await on_return_request(request(1, 2990), ctx)
    async with db.transaction() as session:
        results = await apply_requests(
            session, ctx, [request(2, 2990), request(2, 2990), request(1, 2990)]
        )
    assert [r.duplicate for r in results] == [False, True, True]
    assert results[1].case_id == results[0].case_id
    assert results[2].case_id == earlier.case_id
    async with db.read() as session:
        assert await session.scalar(select(func.count(Case.id))) == 2
        assert await session.scalar(select(func.count(InboxKey.key))) == 2
