"""DingTalk server API on aiohttp: the new-style token, robot sends, cards, files.

dingtalk-sdk's clients are synchronous (`requests`), send the token of new-style
APIs as a query parameter instead of the `x-acs-dingtalk-access-token` header,
and re-invoke themselves without a bound on token errors. Here:

- the token comes from `POST /v1.0/oauth2/accessToken` (`{appKey, appSecret}` ->
  `{accessToken, expireIn}`), cached until 5 minutes before it runs out, fetched
  under an `asyncio.Lock` so N concurrent sends cause one fetch; a failed fetch
  parks fetching for a backoff (5 s, doubling to 5 min) so a wrong secret costs one
  call per window, not one per waiting delivery;
- a call refused for its token refreshes it once (unless another call already did)
  and is retried once; a second refusal is retryable, left to the outbox's backoff;
- every failure is a `RetryableError` or a `PermanentError` (dingtalk_errors.py),
  and error texts never carry a credential.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from bot.outbox import PermanentError, RetryableError
from bot.platforms.dingtalk_errors import TokenRejected, check_oapi, check_v1, scrub
from bot.platforms.outbound import Upload, exchange, http_status, json_object
from bot.settings import DingtalkSettings

log = logging.getLogger(__name__)

TOKEN_HEADER = "x-acs-dingtalk-access-token"  # noqa: S105 - a header name
REFRESH_EARLY = 300.0
FETCH_BACKOFF_FIRST = 5.0
FETCH_BACKOFF_MOST = 300.0
MAX_JSON = 1 << 20
FILE_MAX = 20 << 20
FILE_TIMEOUT = aiohttp.ClientTimeout(total=60, connect=5)


@dataclass(frozen=True, slots=True)
class FileData:
    """A downloaded chat file (MediaFile for bot/platforms/evidence.py)."""

    content: bytes
    content_type: str


class DingtalkClient:
    """The API of one internal app (app key + secret). `http()` gives the shared session;
    `clock` (seconds) times the token's life and the fetch backoff."""

    def __init__(
        self,
        settings: DingtalkSettings,
        http: Callable[[], aiohttp.ClientSession],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.http = http
        self.clock = clock
        self.api_base = settings.api_base.rstrip("/")
        self.oapi_base = settings.oapi_base.rstrip("/")
        self._token = ""
        self._fresh_until = 0.0
        self._parked_until = 0.0
        self._backoff = FETCH_BACKOFF_FIRST
        self._fetch_error = ""
        self._lock = asyncio.Lock()
        self.token_fetches = 0

    # --- access token -------------------------------------------------------------------

    async def access_token(self, *, stale: str | None = None) -> str:
        """The cached token, fetched when missing, expiring, or equal to `stale`."""
        async with self._lock:
            usable = self._token and self.clock() < self._fresh_until
            if usable and (stale is None or self._token != stale):
                return self._token
            if self.clock() < self._parked_until:
                wait = int(self._parked_until - self.clock())
                raise RetryableError(f"{self._fetch_error} (next fetch in {wait} s)")
            try:
                return await self._fetch_token()
            except (RetryableError, PermanentError, TokenRejected) as exc:
                self._parked_until = self.clock() + self._backoff
                self._backoff = min(self._backoff * 2, FETCH_BACKOFF_MOST)
                self._fetch_error = (
                    f"dingtalk accessToken refused ({exc}); check dingtalk.app_key and "
                    "RETURNHUB__DINGTALK__APP_SECRET"
                )
                raise RetryableError(self._fetch_error) from None

    async def _fetch_token(self) -> str:
        self.token_fetches += 1
        body = {"appKey": self.settings.app_key, "appSecret": self.settings.app_secret}
        url = f"{self.api_base}/v1.0/oauth2/accessToken"
        status, _, raw = await self.fetch("POST", url, "oauth2/accessToken", body=body)
        data = check_v1("oauth2/accessToken", status, self.decode("oauth2/accessToken", raw))
        token = data.get("accessToken")
        if not isinstance(token, str) or not token:
            raise RetryableError("dingtalk accessToken: answer has no accessToken")
        expires = float(data.get("expireIn") or 7200)
        self._token = token
        self._fresh_until = self.clock() + expires - min(REFRESH_EARLY, expires / 2)
        self._backoff = FETCH_BACKOFF_FIRST
        log.info("dingtalk access token refreshed (valid %d s)", int(expires))
        return token

    # --- JSON APIs ------------------------------------------------------------------------

    async def call(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> Mapping[str, Any]:
        """A new-style API (`api_base` + path, token in the header); one refresh and retry."""
        token = await self.access_token()
        for attempt in (1, 2):
            status, _, raw = await self.fetch(
                method, self.api_base + path, path, body=body, headers={TOKEN_HEADER: token}
            )
            data = self.decode(path, raw) if raw.strip() else {}
            try:
                return check_v1(path, status, data)
            except TokenRejected as exc:
                if attempt == 2:
                    raise RetryableError(
                        f"dingtalk {path}: token refused again after a refresh ({exc})"
                    ) from None
                log.warning("dingtalk %s: token refused (%s); refreshing once", path, exc)
                token = await self.access_token(stale=token)
        raise AssertionError("unreachable")

    # --- robot messages -------------------------------------------------------------------

    async def send_to_users(
        self, user_ids: list[str], msg_key: str, param: Mapping[str, Any]
    ) -> None:
        """`robot/oToMessages/batchSend`: the robot's 1:1 chat with each user.

        A user DingTalk names invalid is a permanent failure; one it flow-controls
        is retried later (the message was not sent to them).
        """
        answer = await self.call(
            "POST",
            "/v1.0/robot/oToMessages/batchSend",
            {
                "robotCode": self.settings.robot_code,
                "userIds": user_ids,
                "msgKey": msg_key,
                "msgParam": json.dumps(param, ensure_ascii=False),
            },
        )
        invalid = answer.get("invalidStaffIdList") or []
        if invalid:
            raise PermanentError(f"dingtalk batchSend: not a user of this app: {invalid[:5]}")
        limited = answer.get("flowControlledStaffIdList") or []
        if limited:
            raise RetryableError(f"dingtalk batchSend: flow-controlled for {limited[:5]}")

    async def send_to_group(
        self, conversation_id: str, msg_key: str, param: Mapping[str, Any]
    ) -> None:
        """`robot/groupMessages/send`: a group the robot was added to."""
        await self.call(
            "POST",
            "/v1.0/robot/groupMessages/send",
            {
                "robotCode": self.settings.robot_code,
                "openConversationId": conversation_id,
                "msgKey": msg_key,
                "msgParam": json.dumps(param, ensure_ascii=False),
            },
        )

    # --- interactive cards ----------------------------------------------------------------

    async def create_and_deliver(self, body: Mapping[str, Any]) -> list[tuple[str, str]]:
        """`card/instances/createAndDeliver`; the (spaceId, error) of each failed recipient.

        A 200 does not mean delivered: each `result.deliverResults[]` says so itself.
        """
        answer = await self.call("POST", "/v1.0/card/instances/createAndDeliver", body)
        return _failed_spaces(answer)

    async def deliver(self, body: Mapping[str, Any]) -> list[tuple[str, str]]:
        """`card/instances/deliver`: an existing instance to its space again."""
        answer = await self.call("POST", "/v1.0/card/instances/deliver", body)
        return _failed_spaces(answer)

    async def update_card(self, out_track_id: str, param_map: Mapping[str, str]) -> None:
        """`PUT card/instances`: every copy of the instance shows the new data."""
        await self.call(
            "PUT",
            "/v1.0/card/instances",
            {
                "outTrackId": out_track_id,
                "cardData": {"cardParamMap": dict(param_map)},
                "cardUpdateOptions": {"updateCardDataByKey": True},
            },
        )

    async def register_callback(self, route_key: str, url: str, api_secret: str) -> None:
        """`card/callbacks/register`: where HTTP-mode card clicks are posted."""
        await self.call(
            "POST",
            "/v1.0/card/callbacks/register",
            {
                "callbackRouteKey": route_key,
                "callbackUrl": url,
                "apiSecret": api_secret,
                "forceUpdate": True,
            },
        )

    async def post_oapi(self, url: str, label: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """POST to a URL that answers `{errcode, errmsg}` (sessionWebhook, custom robot)."""
        status, _, raw = await self.fetch("POST", url, label, body=body)
        self.http_status(label, status)
        return check_oapi(label, self.decode(label, raw))

    # --- files ----------------------------------------------------------------------------

    async def download(self, download_code: str, *, max_bytes: int = FILE_MAX) -> FileData:
        """A picture a robot message named: `messageFiles/download` -> a URL -> the bytes."""
        answer = await self.call(
            "POST",
            "/v1.0/robot/messageFiles/download",
            {"downloadCode": download_code, "robotCode": self.settings.robot_code},
        )
        url = answer.get("downloadUrl")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise PermanentError("dingtalk messageFiles/download: answer has no downloadUrl")
        status, head, raw = await self.fetch(
            "GET", url, "downloadUrl", limit=max_bytes, client_timeout=FILE_TIMEOUT
        )
        self.http_status("downloadUrl", status)
        content_type = head.get("Content-Type", "application/octet-stream")
        if content_type.split(";")[0].strip().lower() in ("application/json", "text/json"):
            raise PermanentError("dingtalk downloadUrl: a JSON answer instead of the file")
        return FileData(raw, content_type)

    async def upload_media(self, upload: Upload) -> str:
        """`oapi media/upload?type=image` -> a media_id ("@…") for `sampleImageMsg`.

        UNCONFIRMED: that oapi takes the new-style token as `access_token` (DingTalk's
        docs say the two tokens are interchangeable); a refusal is retryable."""
        token = await self.access_token()
        for attempt in (1, 2):
            url = f"{self.oapi_base}/media/upload?" + urlencode(
                {"access_token": token, "type": "image"}
            )
            status, _, raw = await self.fetch("POST", url, "media/upload", upload=upload)
            self.http_status("media/upload", status)
            try:
                answer = check_oapi("media/upload", self.decode("media/upload", raw))
                break
            except TokenRejected as exc:
                if attempt == 2:
                    raise RetryableError(
                        f"dingtalk media/upload: token refused again after a refresh ({exc})"
                    ) from None
                log.warning("dingtalk media/upload: token refused (%s); refreshing once", exc)
                token = await self.access_token(stale=token)
        media_id = answer.get("media_id")
        if not isinstance(media_id, str) or not media_id:
            raise RetryableError("dingtalk media/upload: answer has no media_id")
        return media_id

    # --- transport ------------------------------------------------------------------------

    async def fetch(
        self,
        method: str,
        url: str,
        label: str,
        *,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        limit: int = MAX_JSON,
        client_timeout: aiohttp.ClientTimeout | None = None,
        upload: Upload | None = None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One HTTP exchange; transport failures are retryable."""
        return await exchange(
            self.http(),
            method,
            url,
            f"dingtalk {label}",
            scrub=scrub,
            body=body,
            headers=headers,
            limit=limit,
            client_timeout=client_timeout,
            upload=upload,
        )

    @staticmethod
    def http_status(label: str, status: int) -> None:
        http_status(f"dingtalk {label}", status)

    @staticmethod
    def decode(label: str, raw: bytes) -> Mapping[str, Any]:
        return json_object(f"dingtalk {label}", raw)


def _failed_spaces(answer: Mapping[str, Any]) -> list[tuple[str, str]]:
    result = answer.get("result")
    results = result.get("deliverResults") if isinstance(result, dict) else None
    if not isinstance(results, list) or not results:
        raise RetryableError("dingtalk card deliver: answer has no deliverResults")
    return [
        (str(r.get("spaceId", "")), scrub(str(r.get("errorMsg", "")))[:200])
        for r in results
        if not (isinstance(r, dict) and r.get("success") is True)
    ]
