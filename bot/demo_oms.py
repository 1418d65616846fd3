"""The demo's stand-in for a shop's OMS: it confirms refunds, as a real one would.

In production the OMS refunds the buyer when it gets `refund_released` and then
posts `status: "refunded"` to `/webhooks/generic`; only then is a case
`refunded`. `returnhub demo` has no OMS (and no `callback_url`), so without this
every demo case would wait in `refund_pending` forever. Each tick, cases of the
demo shop that have waited `delay` in `refund_pending` are confirmed: the body an
OMS would send is built, signed with the channel secret, verified and parsed by
the webhook's own code, and handed to the intake handler through the dispatcher,
as `POST /webhooks/generic` does. Only `returnhub demo` installs this
(bot/demo.py); `serve` never does.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from bot.appkeys import CTX, DISPATCH
from bot.channels.generic import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify
from bot.channels.generic_body import parse
from bot.money import yuan
from handlers.intake import on_return_request
from handlers.workflow import Status
from storage.models import Case

log = logging.getLogger(__name__)

DELAY_SECONDS = 20.0  # how long the "OMS" takes to refund, as a person watching sees it


def refunded_body(case: Case, now_iso: str) -> dict[str, Any]:
    """What an OMS posts once the money went back: the case as it knows it, one version on."""
    return {
        "event_id": f"demo-oms-refunded-{case.external_id}",
        "shop": case.shop,
        "external_id": case.external_id,
        "order_id": case.order_id,
        "kind": case.kind,
        "status": "refunded",
        "amount": yuan(case.amount_fen),
        "currency": case.currency,
        "buyer": {"ref": case.buyer_ref, "nick": case.buyer_nick},
        "items": [
            {"sku": i.sku, "name": i.name, "qty": i.qty, "unit_price": yuan(i.unit_price_fen)}
            for i in case.items
        ],
        "occurred_at": now_iso,
        "version": str(int(case.channel_version) + 1),
    }


async def confirm_refunds(app: web.Application, shop: str, delay: float) -> list[str]:
    """Confirm every refund of `shop` pending for at least `delay` seconds; their case ids."""
    ctx, dispatch = app[CTX], app[DISPATCH]
    conf = ctx.settings.channels.generic
    now = ctx.now()
    async with ctx.db.read() as session:
        due = list(
            await session.scalars(
                select(Case)
                .options(selectinload(Case.items))
                .where(
                    Case.channel == "generic",
                    Case.shop == shop,
                    Case.status == Status.REFUND_PENDING,
                    Case.updated_at <= now - timedelta(seconds=delay),
                )
                .order_by(Case.updated_at)
            )
        )
    confirmed = []
    for case in due:
        if not dispatch.accepting or not case.channel_version.isdigit():
            continue  # shutting down; or a version this stand-in cannot advance
        raw = json.dumps(refunded_body(case, ctx.clock().isoformat()), ensure_ascii=False)
        body = raw.encode("utf-8")
        timestamp = str(int(ctx.clock().timestamp()))
        headers = {
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(conf.secret, timestamp, body),
        }
        verify(conf.secret, headers, body, ctx.clock(), conf.replay_window_seconds)
        event = parse(body, default_shop=conf.shop, now=ctx.clock())
        result = await dispatch.run(on_return_request, event)
        log.info("demo OMS: refunded %s (%s) -> %s", case.id, case.external_id, result.status)
        confirmed.append(case.id)
    return confirmed
