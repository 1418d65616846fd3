"""Card buttons and API cursors through HTTP, on both engines: a bad or misbound token
changes nothing; cards survive a restart without a configured secret; a rotated
secret keeps old cards and cursors working for the grace period, and no longer."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select

from bot.app import create_app
from bot.appkeys import CTX, WORKER
from storage.db import Database
from storage.models import AuditEvent, CardRecord, Case, ServerSecret
from tests.support import (
    SERVER_SECRET,
    Client,
    FakeClock,
    MakeClient,
    make_settings,
    post_generic,
    return_body,
)
from tests.unit.test_tokens import URLSAFE, b64, flip_unused_bit, mint

REFUSED = "该按钮无效或已过期"


async def start(
    aiohttp_client: MakeClient, tmp_path: Path, db: Database, clock: FakeClock, secret: str
) -> Client:
    """The app on `db` in demo mode (the console needs no login on loopback)."""
    settings = make_settings(tmp_path, db.url, demo=True, server_secret=secret)
    return await aiohttp_client(create_app(settings, clock=clock, background=False))


async def new_case(client: Client, clock: FakeClock, n: int) -> str:
    """A 132.00 refund: the cs_lead tier, so an approval card goes to 王组长."""
    item = {"sku": f"SKU-{n}", "name": "自动喂食器", "qty": 1, "unit_price": "132.00"}
    body = return_body(
        event_id=f"evt-{n}", external_id=f"AS{n:06d}", amount="132.00", items=[item]
    )
    status, answer = await post_generic(client, body, clock)
    assert status == 202, answer
    case_id: str = answer["case_id"]
    return case_id


async def card_of(client: Client, case_id: str) -> tuple[int, str]:
    """王组长's approval card for the case: (card id, the 同意 button's token)."""
    async with client.app[CTX].db.read() as session:
        record = (
            await session.scalars(
                select(CardRecord).where(
                    CardRecord.case_id == case_id, CardRecord.recipient == "王组长"
                )
            )
        ).one()
    [approve] = [b for b in record.card["buttons"] if b["action"] == "approve"]
    return record.id, approve["token"]


async def click(client: Client, token: str) -> str:
    """Click as 王组长; the bot's last reply in their chat."""
    body = {"user": "王组长", "token": token, "label": "同意", "uuid": str(uuid.uuid4())}
    resp = await client.post("/console/api/click", json=body)
    assert resp.status == 200, await resp.text()
    await client.app[WORKER].drain()
    chat = await client.get("/console/api/messages", params={"user": "王组长"})
    messages: list[dict[str, Any]] = (await chat.json())["messages"]
    return str(messages[-1].get("text", ""))


async def status(client: Client, case_id: str) -> tuple[str, int]:
    async with client.app[CTX].db.read() as session:
        case = await session.get(Case, case_id)
        audits = await session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.case_id == case_id)
        )
    assert case is not None
    return case.status, int(audits or 0)


async def test_malformed_tokens_are_refused_and_change_nothing(
    db: Database, tmp_path: Path, clock: FakeClock, aiohttp_client: MakeClient
) -> None:
    client = await start(aiohttp_client, tmp_path, db, clock, SERVER_SECRET)
    case_id = await new_case(client, clock, 1)
    card_id, token = await card_of(client, case_id)
    body, mac = token.split(".")
    # (The console trims its JSON fields and refuses control characters before a token
    # reaches the handler; tests/unit/test_tokens.py covers those spellings directly.)
    variants = [
        token + "==",
        f"{body}==.{mac}",
        f"{body[:4]} {body[4:]}.{mac}",
        flip_unused_bit(token),
        mint(SERVER_SECRET, f"v2.0{card_id}.{case_id}.approve"),
        mint(SERVER_SECRET, f"{card_id}.approve"),  # first format: no upgrade, no grace
        f"{b64(f'v2.{card_id}.RC-000000-0000.approve'.encode())}.{mac}",
    ]
    if token.translate(URLSAFE) != token:
        variants.append(token.translate(URLSAFE))
    before = await status(client, case_id)
    assert before[0] == "pending_approval"
    for variant in variants:
        assert await click(client, variant) == REFUSED, variant
        assert await status(client, case_id) == before, variant
    await click(client, token)
    assert (await status(client, case_id))[0] != "pending_approval"  # the real one works


async def test_a_token_for_another_case_is_refused(
    db: Database, tmp_path: Path, clock: FakeClock, aiohttp_client: MakeClient
) -> None:
    """Correctly signed, but naming case A while its card belongs to case B (what a card
    id reused under the same secret, e.g. after the database was recreated, looks like)."""
    client = await start(aiohttp_client, tmp_path, db, clock, SERVER_SECRET)
    first, second = await new_case(client, clock, 1), await new_case(client, clock, 2)
    card_b, _ = await card_of(client, second)
    misbound = mint(SERVER_SECRET, f"v2.{card_b}.{first}.approve")
    before = (await status(client, first), await status(client, second))
    assert await click(client, misbound) == REFUSED
    assert (await status(client, first), await status(client, second)) == before


async def test_a_card_sent_before_a_restart_works_after_it_without_a_configured_secret(
    db: Database, tmp_path: Path, clock: FakeClock, aiohttp_client: MakeClient
) -> None:
    client = await start(aiohttp_client, tmp_path, db, clock, secret="")
    case_id = await new_case(client, clock, 1)
    _, token = await card_of(client, case_id)
    await client.close()
    restarted = await start(aiohttp_client, tmp_path, db, clock, secret="")
    assert await click(restarted, token) != REFUSED
    assert (await status(restarted, case_id))[0] != "pending_approval"


async def page(client: Client, cursor: str | None = None) -> tuple[int, dict[str, Any]]:
    params = {"limit": "1", **({"cursor": cursor} if cursor else {})}
    resp = await client.get("/api/cases", params=params)
    return resp.status, await resp.json()


async def test_a_rotated_secret_keeps_old_cards_and_cursors_for_the_grace_only(
    db: Database, tmp_path: Path, clock: FakeClock, aiohttp_client: MakeClient
) -> None:
    client = await start(aiohttp_client, tmp_path, db, clock, "secret-before")
    cases = [await new_case(client, clock, n) for n in (1, 2, 3)]
    tokens = [(await card_of(client, case_id))[1] for case_id in cases]
    code, first = await page(client)
    assert code == 200 and first["next_cursor"]
    await client.close()

    clock.advance(3600)
    rotated = await start(aiohttp_client, tmp_path, db, clock, "secret-after")
    assert await click(rotated, tokens[0]) != REFUSED
    assert (await status(rotated, cases[0]))[0] != "pending_approval"
    code, second = await page(rotated, first["next_cursor"])
    assert code == 200 and second["cases"][0]["id"] != first["cases"][0]["id"]
    new_card, new_token = await card_of(rotated, cases[1])
    assert new_token == tokens[1]  # the card as sent is unchanged; it is the grace that counts

    clock.advance(timedelta(days=7).total_seconds())  # grace over: retired an hour + 7 days ago
    assert await click(rotated, tokens[1]) == REFUSED
    assert (await status(rotated, cases[1]))[0] == "pending_approval"
    code, refused = await page(rotated, first["next_cursor"])
    assert code == 400 and "cursor" in refused["error"]
    assert (await page(rotated, second["next_cursor"]))[0] == 200  # signed with the new one
    fresh = mint("secret-after", f"v2.{new_card}.{cases[1]}.approve")
    assert await click(rotated, fresh) != REFUSED  # the card re-signed today would work


async def test_cards_sent_before_the_upgrade_keep_working_for_the_grace(
    db: Database, tmp_path: Path, clock: FakeClock, aiohttp_client: MakeClient
) -> None:
    """A deployment upgrading to the case-bound tokens: its database has cards and no
    stored secret yet, and the buttons in people's chats carry first-format tokens."""
    client = await start(aiohttp_client, tmp_path, db, clock, SERVER_SECRET)
    first, second = await new_case(client, clock, 1), await new_case(client, clock, 2)
    in_chats = [
        mint(SERVER_SECRET, f"{(await card_of(client, c))[0]}.approve") for c in (first, second)
    ]
    await client.close()
    async with db.transaction() as session:  # as the previous version left it
        await session.execute(delete(ServerSecret))

    upgraded = await start(aiohttp_client, tmp_path, db, clock, SERVER_SECRET)
    assert await click(upgraded, in_chats[0]) != REFUSED
    assert (await status(upgraded, first))[0] != "pending_approval"
    clock.advance(timedelta(days=7).total_seconds())
    assert await click(upgraded, in_chats[1]) == REFUSED
    assert (await status(upgraded, second))[0] == "pending_approval"
