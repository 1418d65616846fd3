"""Media on the fake WeCom: media/get (Range honoured) and media/upload; part of
`FakeWecom` (tests/fakes/wecom.py), whose fields these methods use."""

from __future__ import annotations

import secrets

from aiohttp import web

from tests.fakes.wecom_checks import APP_IMAGE_BYTES, INVALID_MEDIA, err, image_kind, media_answer


class Media:
    """The media endpoints of `FakeWecom`."""

    def add_media(self, media_id: str, content: bytes, content_type: str = "image/jpeg") -> None:
        self.media[media_id] = (content, content_type, f"{media_id}.jpg")

    async def _media(self, request: web.Request) -> web.Response:
        if (refused := self._token_error(request)) is not None:
            self.calls.append("media/get")
            return refused
        if (injected := await self._before("media/get")) is not None:
            return injected
        found = self.media.get(request.query.get("media_id", ""))
        if found is None:
            return err(INVALID_MEDIA, "invalid media_id")
        self.ranges.extend(request.headers.getall("Range", []))
        return media_answer(*found, request.headers.get("Range"), self.range_required_over)

    async def _upload(self, request: web.Request) -> web.Response:
        """media/upload?type=image: one multipart field `media`, a JPG/PNG of at most
        10 MB; the media_id it answers is what message/send's `image` takes."""
        if (refused := self._token_error(request)) is not None:
            self.calls.append("media/upload")
            return refused
        if (injected := await self._before("media/upload")) is not None:
            return injected
        if request.query.get("type") != "image":
            return err(40004, "invalid media type")
        if not request.content_type.startswith("multipart/form-data"):
            return err(41006, "media data missing")  # UNCONFIRMED errcode
        form = await request.post()
        part = form.get("media")
        if not isinstance(part, web.FileField):
            return err(41006, "media data missing")
        raw = part.file.read()
        if not 5 <= len(raw) <= APP_IMAGE_BYTES:
            return err(40006, "invalid file size")
        if image_kind(raw) is None:
            return err(40005, "invalid file type")
        media_id = "3" + secrets.token_urlsafe(24)
        self.media[media_id] = (raw, part.content_type, part.filename)
        self.uploads.append(media_id)
        return web.json_response(
            {"errcode": 0, "errmsg": "ok", "type": "image", "media_id": media_id,
             "created_at": str(int(self.clock()))}
        )  # fmt: skip
