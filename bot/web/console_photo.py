"""`POST /console/api/photo?user=…&uuid=…`: a photo uploaded in the console.

What WeCom and DingTalk deliver as a media handle the console has in hand: the
body is the image itself (`Content-Type: image/jpeg` or `image/png`), read up to
`photos.max_bytes` and no further. It is kept in the evidence store (in a
thread) and handled as the `PhotoStored` event the chat platforms' download
raises, by the same handler (handlers/photos.py): decoded, then a scan or
evidence. An oversized or non-image body gets a 4xx with a Chinese message and
changes nothing; so does a store that cannot write (507, the admins alerted:
bot/platforms/evidence.py `Keeper`). The page's uuid keys the event, so a double
post is one photo.
"""

from __future__ import annotations

import logging

from aiohttp import web

from bot.appkeys import CTX, DISPATCH, KEEPER
from bot.platforms.console import ConsoleInputError, is_member, parse_photo
from bot.platforms.evidence import UPLOAD_FULL_ZH, StoreFull
from bot.web.auth import acting_as, console_member, require_same_origin
from bot.web.body import BodyTooLarge, read_body
from bot.web.console_poll import error
from bot.web.console_post import deliver
from handlers.photos import on_photo_stored, size_zh

log = logging.getLogger(__name__)

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


def setup(app: web.Application) -> None:
    app.router.add_post("/console/api/photo", upload)


async def upload(request: web.Request) -> web.Response:
    """Origin, member, type and size first; then the photo in the timeline and the handler."""
    require_same_origin(request)
    me = await console_member(request)
    ctx = request.app[CTX]
    limit = ctx.settings.photos.max_bytes
    try:
        sender, key, uuid = parse_photo(dict(request.query))
        acting_as(me, sender.user_id)
        if not await is_member(ctx.db, sender.user_id):
            raise ConsoleInputError(f"未知成员：{sender.user_id}")
    except ConsoleInputError as exc:
        log.info("console photo rejected: %s", exc)
        return error(400, str(exc))
    if request.content_type not in IMAGE_TYPES:
        return error(415, "只能上传 JPG、PNG、GIF 或 WebP 照片")
    try:
        content = await read_body(request, limit)
    except BodyTooLarge as exc:
        log.info("console photo from %s over %d bytes (%d)", sender.user_id, limit, exc.size)
        return error(413, f"照片过大（上限 {size_zh(limit)}），请压缩后重发")
    if not content:
        return error(400, "照片内容为空")
    try:
        event = await request.app[KEEPER].keep(content, request.content_type, key, sender)
    except StoreFull:
        return error(507, UPLOAD_FULL_ZH)  # nothing shown, nothing stored: upload again
    note = {"type": "photo", "sha256": event.sha256, "uuid": uuid}
    dispatch = request.app[DISPATCH]
    return await deliver(
        request, sender.user_id, note, lambda: dispatch.run(on_photo_stored, event)
    )
