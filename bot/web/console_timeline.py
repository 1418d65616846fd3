"""`GET /console/api/cases/{case_id}/timeline`: a case's events in order, for the panel
a card's 时间线 button opens (handlers/timeline.py reads them).

Any console member may read it, as any member may /查单 a case in chat.
"""

from __future__ import annotations

from aiohttp import web

from bot.appkeys import CTX
from bot.web.auth import console_member
from bot.web.console_poll import dumps, error
from handlers.command_grammar import CASE_ID
from handlers.timeline import timeline, when
from handlers.workflow import STATUS_ZH, Status


def setup(app: web.Application) -> None:
    app.router.add_get("/console/api/cases/{case_id}/timeline", case_timeline)


async def case_timeline(request: web.Request) -> web.Response:
    await console_member(request)
    case_id = request.match_info["case_id"].upper()
    if len(case_id) > 20 or not CASE_ID.fullmatch(case_id):
        return error(400, "售后单号格式不正确")
    ctx = request.app[CTX]
    async with ctx.db.read() as session:
        found = await timeline(session, case_id)
    if found is None:
        return error(404, f"没有售后单 {case_id}")
    case, entries = found
    status = STATUS_ZH[Status(case.status)] if case.status in set(Status) else case.status
    return web.json_response(
        {
            "case_id": case.id,
            "status": status,
            "order_id": case.order_id,
            "entries": [
                {
                    "time": when(ctx, e.at),
                    "label": e.label,
                    "actor": e.actor,
                    "detail": e.detail,
                    "tone": e.tone,
                }
                for e in entries
            ],
        },
        dumps=dumps,
    )
