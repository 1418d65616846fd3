"""Photos in the console and the evidence they become, over HTTP: the upload button's
route, the case API's evidence list, and the authenticated file routes."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from bot.app import create_app
from bot.appkeys import CTX, WORKER
from bot.settings import PhotoSettings, Settings
from handlers.intake import on_return_request
from storage.models import Case, ConsoleMessage, Evidence, InboxKey
from tests.fakes.labels import huge_png, label_photo, plain_photo
from tests.http.test_console import TOKEN, settings  # noqa: F401  (the demo's settings)
from tests.unit.warehouse_support import parcel

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]
SF = "SF7700112233445"


@pytest.fixture
def photo_settings(settings: Settings) -> Settings:  # noqa: F811
    """The console tests' demo settings, with small photo bounds."""
    return dataclasses.replace(
        settings, photos=PhotoSettings(max_bytes=200_000, max_pixels=4_000_000)
    )


@pytest.fixture
async def client(photo_settings: Settings, aiohttp_client: MakeClient) -> Client:
    return await aiohttp_client(create_app(photo_settings, background=False))


async def upload(
    client: Client, content: bytes, *, user: str = "小周", kind: str = "image/jpeg", **q: str
) -> tuple[int, dict[str, Any]]:
    params = {"user": user, "uuid": str(uuid.uuid4()), **q}
    resp = await client.post(
        "/console/api/photo", params=params, data=content, headers={"Content-Type": kind}
    )
    body = await resp.json()
    await client.app[WORKER].drain()
    return resp.status, body


async def texts(client: Client, user: str = "小周") -> list[str]:
    resp = await client.get("/console/api/messages", params={"user": user, "after": "0"})
    return [m.get("text", "") for m in (await resp.json())["messages"] if m["direction"] == "out"]


async def state(client: Client) -> tuple[int, int, int]:
    async with client.app[CTX].db.read() as session:
        return (
            int(await session.scalar(select(func.count(ConsoleMessage.id))) or 0),
            int(await session.scalar(select(func.count()).select_from(InboxKey)) or 0),
            int(await session.scalar(select(func.count(Evidence.id))) or 0),
        )


async def open_case(client: Client) -> str:
    result = await on_return_request(parcel(1, SF), client.app[CTX])
    assert result.case_id
    await client.app[WORKER].drain()
    return result.case_id


async def test_a_label_photo_uploaded_in_the_console_receives_the_case(client: Client) -> None:
    case_id = await open_case(client)
    picture = label_photo(SF, angle=3, width=800, quality=50)
    status, body = await upload(client, picture)
    assert status == 200 and body["ok"] is True
    async with client.app[CTX].db.read() as session:
        case = await session.get(Case, case_id)
        assert case is not None and case.status == "received"
    assert f"已签收 {case_id}，请验货" in await texts(client)
    resp = await client.get("/console/api/messages", params={"user": "小周", "after": "0"})
    mine = [m for m in (await resp.json())["messages"] if m["direction"] == "in"]
    digest = hashlib.sha256(picture).hexdigest()
    assert mine[-1]["type"] == "photo" and mine[-1]["sha256"] == digest
    shown = await client.get(f"/console/api/evidence/{digest}")
    assert shown.status == 200 and await shown.read() == picture
    assert shown.content_type == "image/jpeg"
    assert shown.headers["X-Content-Type-Options"] == "nosniff"


async def test_evidence_is_listed_by_the_case_api_and_fetched_with_the_token(
    client: Client, photo_settings: Settings, aiohttp_client: MakeClient
) -> None:
    case_id = await open_case(client)
    await upload(client, label_photo(SF))
    damage = plain_photo(4)
    await upload(client, damage)
    await upload(client, damage)  # the same bytes again: one row
    assert "这张照片已附加到" in (await texts(client))[-1]
    private = dataclasses.replace(
        photo_settings, server=dataclasses.replace(photo_settings.server, demo=False)
    )
    api = await aiohttp_client(create_app(private, background=False, migrate=False))
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    resp = await api.get(f"/api/cases/{case_id}", headers=bearer)
    evidence = (await resp.json())["evidence"]
    digest = hashlib.sha256(damage).hexdigest()
    assert [(e["kind"], e["added_by"], e["content_type"]) for e in evidence] == [
        ("photo", "小周", "image/jpeg")
    ] * 2
    last = evidence[-1]
    assert last["sha256"] == digest and last["size"] == len(damage) and last["at"]
    assert last["url"] == f"/api/cases/{case_id}/evidence/{digest}"
    assert (await api.get(last["url"])).status == 401  # the token is needed
    got = await api.get(last["url"], headers=bearer)
    assert got.status == 200 and await got.read() == damage
    assert "private" in got.headers["Cache-Control"]
    assert (await api.get(f"/console/api/evidence/{digest}")).status == 401  # no session
    # Another case's id does not reach this case's photo.
    other = f"/api/cases/RC-000000-0000/evidence/{digest}"
    assert (await api.get(other, headers=bearer)).status == 404


@pytest.mark.parametrize(
    "tail",
    [
        "..%2F..%2Fvar%2Freturnhub.toml",
        "../../var/returnhub.toml",
        "%2e%2e%2f%2e%2e%2freturnhub.toml",
        "0" * 64 + "%2F..%2F..",
        "A" * 64,
        "0" * 63,
        "0" * 64,  # well-formed, but no evidence row names it
    ],
)
async def test_the_file_routes_admit_a_known_digest_only(client: Client, tail: str) -> None:
    case_id = await open_case(client)
    for path in (f"/api/cases/{case_id}/evidence/{tail}", f"/console/api/evidence/{tail}"):
        resp = await client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
        assert resp.status == 404, path
        assert b"returnhub" not in await resp.read()


async def test_bad_uploads_are_refused_and_change_nothing(client: Client) -> None:
    await open_case(client)
    before = await state(client)
    too_big = await upload(client, b"\xff\xd8" + b"0" * 200_001)
    assert too_big == (413, {"error": "照片过大（上限 195 KB），请压缩后重发"})
    assert (await upload(client, b"GIF89a", kind="text/plain"))[0] == 415
    assert (await upload(client, b"", kind="image/png"))[0] == 400
    assert (await upload(client, plain_photo(), user="路人"))[0] == 400
    resp = await client.post(
        "/console/api/photo",
        params={"user": "小周", "uuid": "not-a-uuid"},
        data=plain_photo(),
        headers={"Content-Type": "image/jpeg"},
    )
    assert resp.status == 400
    cross = await client.post(
        "/console/api/photo",
        params={"user": "小周", "uuid": str(uuid.uuid4())},
        data=plain_photo(),
        headers={"Content-Type": "image/jpeg", "Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status == 403
    assert await state(client) == before


async def test_too_many_pixels_is_told_in_the_chat(client: Client) -> None:
    case_id = await open_case(client)
    status, _ = await upload(client, huge_png(3000, 2000), kind="image/png")
    assert status == 200
    assert (await texts(client))[-1].startswith("照片像素过多（3000×2000")
    async with client.app[CTX].db.read() as session:
        case = await session.get(Case, case_id)
        assert case is not None and case.status == "awaiting_return"
        assert await session.scalar(select(func.count(Evidence.id))) == 0


async def test_the_page_offers_the_upload_button(client: Client) -> None:
    html = await (await client.get("/console")).text()
    assert 'id="photo"' in html and 'data-photo-max="200000"' in html
    script = await (await client.get("/console/static/console.js")).text()
    assert "/console/api/photo" in script and "/console/api/evidence/" in script
