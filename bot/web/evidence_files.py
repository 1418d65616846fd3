"""The evidence photos themselves: `GET /api/cases/{id}/evidence/{sha256}` (Bearer) and
`GET /console/api/evidence/{sha256}` (a console session).

A photo is named by its SHA-256 (storage/evidence.py) and served only when an
evidence row names it: the route's pattern admits 64 hex digits and nothing else,
so no path (`..`, `%2F`, an absolute name) reaches the file system. The content
type is the stored one, never sniffed by the browser (nosniff), and the answer
is private: a photo of a buyer's parcel must not sit in a shared cache.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.appkeys import CTX
from bot.web.auth import console_member, require_api
from bot.web.console_pages import NOSNIFF
from storage.evidence import EvidenceStore
from storage.models import Evidence

SHA = "{sha256:[0-9a-f]{64}}"
SAFE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


def setup(app: web.Application) -> None:
    app.router.add_get(f"/api/cases/{{id}}/evidence/{SHA}", api_file)


def setup_console(app: web.Application) -> None:
    app.router.add_get(f"/console/api/evidence/{SHA}", console_file)


async def api_file(request: web.Request) -> web.Response:
    require_api(request)
    return await _serve(request, request.match_info["id"])


async def console_file(request: web.Request) -> web.Response:
    await console_member(request)
    return await _serve(request, None)


async def stored_type(session: AsyncSession, sha256: str, case_id: str | None) -> str | None:
    """The content type an evidence row (of `case_id`, if given) stored `sha256` with."""
    query = select(Evidence.content_type).where(Evidence.sha256 == sha256)
    if case_id is not None:
        query = query.where(Evidence.case_id == case_id)
    return (await session.scalars(query.limit(1))).first()


async def _serve(request: web.Request, case_id: str | None) -> web.Response:
    ctx = request.app[CTX]
    sha256 = request.match_info["sha256"]
    async with ctx.db.read() as session:
        content_type = await stored_type(session, sha256, case_id)
    if content_type is None:
        raise web.HTTPNotFound(
            text='{"error": "evidence not found"}', content_type="application/json"
        )
    store = EvidenceStore(Path(ctx.settings.files.evidence))
    content = await asyncio.to_thread(store.read, sha256, content_type)
    if content is None:
        raise web.HTTPNotFound(
            text='{"error": "evidence file missing"}', content_type="application/json"
        )
    kind = content_type if content_type in SAFE_TYPES else "application/octet-stream"
    headers = {"Cache-Control": "private, max-age=86400", "ETag": f'"{sha256}"', **NOSNIFF}
    return web.Response(body=content, content_type=kind, headers=headers)
