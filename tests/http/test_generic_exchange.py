"""An exchange through the generic channel: the OMS is asked to reship (callback
`exchange_requested` with the SKUs) and reports the replacement's waybill back on the
return webhook (`exchange_shipped`), or that it failed (`exchange_failed`)."""

from __future__ import annotations

from sqlalchemy import select

from bot.appkeys import CTX
from bot.events import Sender
from handlers.inspection import inspect
from handlers.people import member_named
from handlers.scan import scan_text
from storage.models import AuditEvent, Case
from tests.fakes.oms import FakeOms
from tests.fakes.wecom_callbacks import settle
from tests.support import Client, FakeClock, post_generic, return_body

ITEM = {"sku": "SCRATCH-L", "name": "瓦楞纸猫抓板 大号", "qty": 1, "unit_price": "45.00"}


def exchange(status: str, version: str, **extra: object) -> dict[str, object]:
    extra.setdefault("event_id", f"ex-{status}-{version}")
    return return_body(
        kind="exchange", status=status, amount="0",
        items=[ITEM], version=version, return_waybill="SF5100000001", **extra,
    )  # fmt: skip


async def case_of(client: Client, case_id: str) -> Case:
    async with client.app[CTX].db.read() as session:
        case = await session.get(Case, case_id)
        assert case is not None
        return case


async def test_the_reshipment_round_trip(client: Client, clock: FakeClock, oms: FakeOms) -> None:
    status, answer = await post_generic(client, exchange("requested", "1"), clock)
    assert status == 202, answer
    case_id = answer["case_id"]
    assert (await case_of(client, case_id)).status == "awaiting_return"
    ctx = client.app[CTX]
    async with ctx.db.transaction() as session:
        member = await member_named(session, "小周")
        assert member is not None
        scanned = await scan_text(session, ctx, member, "SF5100000001", Sender("console", "小周"))
        assert scanned is not None and scanned.id == case_id
    async with ctx.db.transaction() as session:
        member = await member_named(session, "小周")
        assert member is not None
        await inspect(session, ctx, case_id, member, "ok", Sender("console", "小周"))
    await settle(client.app)
    assert (await case_of(client, case_id)).status == "exchange_pending"
    [asked] = [e for e in oms.of_case(case_id) if e["event"] == "exchange_requested"]
    assert asked["items"] == [{"sku": "SCRATCH-L", "name": "瓦楞纸猫抓板 大号", "qty": 1}]
    assert asked["return_waybill"] == "SF5100000001"

    failed = exchange("exchange_failed", "2", reason_text="大号缺货")
    assert (await post_generic(client, failed, clock))[0] == 202
    assert (await case_of(client, case_id)).status == "exchange_pending"
    shipped = exchange(
        "exchange_shipped", "3", exchange_waybill="YT7700001", exchange_carrier="YTO"
    )
    assert (await post_generic(client, shipped, clock))[0] == 202
    case = await case_of(client, case_id)
    assert (case.status, case.exchange_waybill, case.exchange_carrier) == (
        "exchange_shipped", "YT7700001", "YTO"
    )  # fmt: skip
    async with ctx.db.read() as session:
        actions = list(
            await session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.case_id == case_id)
                .order_by(AuditEvent.id)
            )
        )
    assert actions[-3:] == ["request_exchange", "exchange_failed", "ship_exchange"]
    again = exchange("exchange_shipped", "3", exchange_waybill="YT7700001", event_id="ex-dup")
    status, answer = await post_generic(client, again, clock)
    assert status == 202 and answer["duplicate"], "an old version changes nothing"


async def test_a_shipment_report_for_an_unknown_case_opens_nothing(
    client: Client, clock: FakeClock
) -> None:
    shipped = exchange("exchange_shipped", "1", exchange_waybill="YT1", external_id="NOPE")
    status, answer = await post_generic(client, shipped, clock)
    assert (status, answer["case_id"]) == (202, None)
    async with client.app[CTX].db.read() as session:
        assert (await session.scalars(select(Case))).first() is None
