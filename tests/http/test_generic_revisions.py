"""A newer version that changes the request (issue 6 C): applied, re-routed, or refused
with 409 — never acknowledged and dropped. Both engines (the `db` fixture)."""

from __future__ import annotations

import json

from sqlalchemy import select

from bot.appkeys import CTX
from bot.events import Sender
from handlers.approvals import decide
from handlers.people import member_named
from storage.models import CaseItem, Customer
from tests.http.generic_cases import approve, audit_trail, cards, load, request, submit
from tests.support import Client, FakeClock, post_generic, table_counts


async def click(client: Client, case_id: str, name: str, step_id: int | None) -> None:
    """An approve click on a card sent for `step_id` (what a card's token resolves to)."""
    ctx = client.app[CTX]
    async with ctx.db.transaction() as session:
        member = await member_named(session, name)
        assert member is not None
        await decide(
            session, ctx, case_id, member, "approve", Sender("console", name), step_id=step_id
        )


def v2(n: int, amount: str, **fields: object) -> dict[str, object]:
    return request(n, amount, event_id=f"oms-evt-{n:04d}-v2", version="2", **fields)


async def test_a_new_amount_in_another_tier_reroutes_the_case(
    client: Client, clock: FakeClock
) -> None:
    case_id = await submit(client, clock, request(1, "132.00"))
    assert (await load(client, case_id)).tier == "cs_lead"

    status, answer = await post_generic(client, v2(1, "4999.00"), clock)

    assert (status, answer) == (202, {"case_id": case_id, "duplicate": False})
    case = await load(client, case_id)
    assert (case.status, case.tier, case.amount_fen) == ("pending_approval", "director", 499900)
    assert [(s.seq, s.role, s.state) for s in case.steps] == [(1, "ops_director", "pending")]
    sent = await cards(client, case_id)
    old = [c for c in sent if c.recipient in ("王组长", "刘组长")]
    assert len(old) == 2 and {c.state for c in old} == {"closed"}
    assert all("已作废" in c.card["status"] and "¥4999.00" in c.card["status"] for c in old)
    assert [(c.recipient, c.state) for c in sent if c not in old] == [("李总监", "open")]
    await click(client, case_id, "王组长", old[0].step_id)  # the superseded card
    assert (await load(client, case_id)).status == "pending_approval"
    trail = await audit_trail(client, case_id)
    assert [a.action for a in trail] == ["created", "route", "reroute", "route"]
    reroute = json.loads(trail[2].detail)
    assert reroute["tier"] == ["cs_lead", "director"]
    assert reroute["changes"]["amount_fen"] == [13200, 499900]
    assert "¥132.00 → ¥4999.00" in reroute["why"]
    assert (trail[2].from_status, trail[2].to_status) == ("pending_approval", "requested")


async def test_a_new_amount_below_the_auto_limit_auto_approves(
    client: Client, clock: FakeClock
) -> None:
    case_id = await submit(client, clock, request(2, "132.00"))
    status, _ = await post_generic(client, v2(2, "30.00"), clock)
    assert status == 202
    case = await load(client, case_id)
    assert (case.status, case.tier, case.steps) == ("refund_pending", "auto", [])
    assert {c.state for c in await cards(client, case_id)} == {"closed"}


async def test_the_same_tier_keeps_its_step_and_resends_the_cards(
    client: Client, clock: FakeClock
) -> None:
    case_id = await submit(client, clock, request(3, "132.00"))
    due = (await load(client, case_id)).steps[0].due_at
    clock.advance(600)

    body = v2(3, "140.00", reason_text="开关失灵，另有划痕")
    status, _ = await post_generic(client, body, clock)

    assert status == 202
    case = await load(client, case_id)
    assert (case.tier, case.amount_fen, case.reason_text) == (
        "cs_lead",
        14000,
        "开关失灵，另有划痕",
    )
    assert [(s.role, s.state, s.due_at) for s in case.steps] == [("cs_lead", "pending", due)]
    sent = await cards(client, case_id)
    assert [(c.recipient, c.state) for c in sent] == [
        ("王组长", "closed"),
        ("刘组长", "closed"),
        ("王组长", "open"),
        ("刘组长", "open"),
    ]
    assert "¥140.00" in json.dumps(sent[2].card, ensure_ascii=False)
    async with client.app[CTX].db.read() as session:
        prices = list(await session.scalars(select(CaseItem.unit_price_fen)))
    assert prices == [14000]
    revised = (await audit_trail(client, case_id))[-1]
    assert revised.action == "revised" and "tier" not in json.loads(revised.detail)

    # A click on an old card (it showed ¥132.00) decides nothing; the new card does.
    await click(client, case_id, "王组长", sent[0].step_id)
    assert (await load(client, case_id)).status == "pending_approval"
    await click(client, case_id, "王组长", sent[2].step_id)
    assert (await load(client, case_id)).status == "refund_pending"


async def test_after_approval_a_new_amount_is_refused_and_nothing_changes(
    client: Client, clock: FakeClock
) -> None:
    case_id = await submit(client, clock, request(4, "132.00", kind="return_refund"))
    await approve(client, case_id, "王组长")
    assert (await load(client, case_id)).status == "awaiting_return"
    db = client.app[CTX].db
    before = await table_counts(db)

    status, answer = await post_generic(client, v2(4, "4999.00", kind="return_refund"), clock)

    assert status == 409
    assert answer["case_id"] == case_id
    assert "已过审批，不能再修改金额" in answer["error"] and "past approval" in answer["error"]
    assert await table_counts(db) == before
    case = await load(client, case_id)
    assert (case.amount_fen, case.channel_version, case.status) == (13200, "1", "awaiting_return")

    # The refusal stored no inbox key: the OMS can resend the event, corrected.
    fixed = v2(4, "132.00", kind="return_refund", reason_text="更正描述")
    status, answer = await post_generic(client, fixed, clock)
    assert (status, answer["duplicate"]) == (202, False)
    case = await load(client, case_id)
    assert (case.amount_fen, case.reason_text, case.channel_version) == (13200, "更正描述", "2")


async def test_after_approval_a_new_kind_is_refused(client: Client, clock: FakeClock) -> None:
    case_id = await submit(client, clock, request(5, "132.00", kind="return_refund"))
    await approve(client, case_id, "王组长")
    status, answer = await post_generic(client, v2(5, "132.00", kind="refund_only"), clock)
    assert status == 409 and "类型" in answer["error"]
    assert (await load(client, case_id)).kind == "return_refund"


async def test_a_reroute_mid_chain_starts_the_new_chain_afresh(
    client: Client, clock: FakeClock
) -> None:
    case_id = await submit(client, clock, request(6, "6000.00"))
    await approve(client, case_id, "李总监")
    assert [s.state for s in (await load(client, case_id)).steps] == ["approved", "pending"]

    status, _ = await post_generic(client, v2(6, "800.00"), clock)

    assert status == 202
    case = await load(client, case_id)
    assert (case.tier, case.status) == ("director", "pending_approval")
    assert [(s.seq, s.role, s.state) for s in case.steps] == [(1, "ops_director", "pending")]
    assert [c.recipient for c in await cards(client, case_id) if c.state == "open"] == ["李总监"]
    reroute = json.loads((await audit_trail(client, case_id))[-2].detail)
    assert reroute["steps"] == [
        {"role": "ops_director", "state": "approved", "actor": "李总监"},
        {"role": "finance_director", "state": "pending", "actor": None},
    ]
    await approve(client, case_id, "李总监")  # the new chain's step: the facts changed
    assert (await load(client, case_id)).status == "refund_pending"


async def test_after_approval_a_correction_is_stored_even_if_the_customer_was_flagged_since(
    client: Client, clock: FakeClock
) -> None:
    """Only the event's own changes are judged: flagging the buyer later re-decides nothing."""
    case_id = await submit(client, clock, request(7, "29.90"))
    assert (await load(client, case_id)).status == "refund_pending"
    async with client.app[CTX].db.transaction() as session:
        customer = (await session.scalars(select(Customer))).one()
        customer.flagged = True

    status, answer = await post_generic(
        client, v2(7, "29.90", reason_text="更正：开关失灵"), clock
    )

    assert (status, answer["duplicate"]) == (202, False)
    case = await load(client, case_id)
    assert (case.status, case.tier, case.reason_text) == (
        "refund_pending",
        "auto",
        "更正：开关失灵",
    )
    assert (await audit_trail(client, case_id))[-1].action == "revised"
