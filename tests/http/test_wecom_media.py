"""media/get against the fake WeCom, and against servers whose Range answers are odd.

A JSON answer is an error and never saved; files come in Range chunks; every 206
must move on from where the last ended, so no server can keep the client looping.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web

from bot.outbox import PermanentError, RetryableError
from bot.platforms.wecom_client import WecomApiError, WecomClient
from bot.platforms.wecom_media import download
from bot.platforms.wecom_outage import WecomSetupError
from tests.fakes.wecom import FakeWecom, running
from tests.fakes.wecom_callbacks import api_client


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        yield session


@pytest.fixture
async def fake() -> AsyncIterator[FakeWecom]:
    async with running(FakeWecom()) as server:
        yield server


@pytest.fixture
def client(fake: FakeWecom, http: aiohttp.ClientSession) -> WecomClient:
    return api_client(fake.url, http)


async def test_media_json_error_raises(client: WecomClient, fake: FakeWecom) -> None:
    with pytest.raises(WecomApiError) as caught:
        await download(client, "NO_SUCH_MEDIA")
    assert caught.value.errcode == 40007


async def test_an_odd_but_valid_media_id_downloads(client: WecomClient, fake: FakeWecom) -> None:
    odd = "MEDIA~1!*()#=+/" + "y" * 600  # printable, 615 chars: was refused as malformed
    fake.add_media(odd, b"photo-bytes")
    assert (await download(client, odd)).content == b"photo-bytes"
    with pytest.raises(PermanentError, match="printable"):
        await download(client, "bad\nid")
    assert fake.calls.count("media/get") == 1


async def test_an_untrusted_ip_on_media_get_is_a_retryable_setup_fault(
    fake: FakeWecom, http: aiohttp.ClientSession
) -> None:
    alerts: list[str] = []

    async def alert(text: str) -> None:
        alerts.append(text)

    client = WecomClient(api_client(fake.url, http).settings, lambda: http, alert=alert)
    fake.add_media("MEDIA_1", b"x")
    fake.distrust_ip()
    with pytest.raises(WecomSetupError) as caught:
        await download(client, "MEDIA_1")
    assert caught.value.errcode == 60020 and isinstance(caught.value, RetryableError)
    assert len(alerts) == 1 and "企业可信IP" in alerts[0]


async def test_media_downloads_in_ranges(client: WecomClient, fake: FakeWecom) -> None:
    photo = bytes(range(256)) * 14  # 3584 bytes
    fake.add_media("MEDIA_1", photo, "image/png")
    media = await download(client, "MEDIA_1", chunk=1000)
    assert media.content == photo and media.content_type == "image/png"
    assert media.filename == "MEDIA_1.jpg"
    assert fake.ranges == [f"bytes={n}-{n + 999}" for n in (0, 1000, 2000, 3000)]
    with pytest.raises(PermanentError, match="over the limit"):
        await download(client, "MEDIA_1", chunk=1000, max_bytes=2000)


@dataclasses.dataclass
class OddRanges(FakeWecom):
    """A media server whose 206 answers carry the Content-Range `content_range` makes."""

    content_range: Callable[[int, int], str] = lambda first, last: ""
    served: bytes = bytes(range(250))

    async def _media(self, request: web.Request) -> web.Response:
        self.ranges.append(request.headers["Range"])
        if len(self.ranges) > 20:  # the client should have stopped long ago
            return web.Response(status=500)
        first, last = (int(n) for n in request.headers["Range"][6:].split("-"))
        if first >= len(self.served):
            return web.Response(status=416, headers={"Content-Range": "bytes */*"})
        header = self.content_range(first, min(last, len(self.served) - 1))
        start, end = (int(n) for n in header[6:].split("/")[0].split("-"))
        body = self.served[start : end + 1]  # what the header claims, however odd
        return web.Response(status=206, body=body, headers={"Content-Range": header})


async def test_media_stops_on_a_206_that_makes_no_progress(http: aiohttp.ClientSession) -> None:
    def no_progress(first: int, last: int) -> str:  # the 2nd answer is "bytes 100-99/250"
        return f"bytes {first}-{last if first == 0 else first - 1}/250"

    stuck = OddRanges(content_range=no_progress)
    async with running(stuck) as server:
        with pytest.raises(RetryableError, match="Content-Range"):
            await download(api_client(server.url, http), "MEDIA_ODD", chunk=100)
    assert stuck.ranges == ["bytes=0-99", "bytes=100-199"]


@pytest.mark.parametrize("size", [250, 200])  # 200: ends on a chunk edge, then 416
async def test_media_of_unknown_length_is_read_to_its_end(
    http: aiohttp.ClientSession, size: int
) -> None:
    unknown = OddRanges(
        served=bytes(range(size)), content_range=lambda first, last: f"bytes {first}-{last}/*"
    )
    async with running(unknown) as server:
        media = await download(api_client(server.url, http), "MEDIA_ODD", chunk=100)
    assert media.content == unknown.served
    assert unknown.ranges == ["bytes=0-99", "bytes=100-199", "bytes=200-299"]


async def test_a_plain_text_file_is_a_file_not_an_error(
    client: WecomClient, fake: FakeWecom
) -> None:
    fake.add_media("NOTE_1", b"carrier: SF, waybill SF1234567890", "text/plain")
    media = await download(client, "NOTE_1")
    assert media.content == b"carrier: SF, waybill SF1234567890"


async def test_media_refreshes_an_expired_token_once(client: WecomClient, fake: FakeWecom) -> None:
    fake.add_media("MEDIA_2", b"\xff\xd8jpeg")
    await client.access_token()
    fake.expire_tokens()
    assert (await download(client, "MEDIA_2")).content == b"\xff\xd8jpeg"
    assert fake.token_fetches == 2
