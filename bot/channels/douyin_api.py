"""The 抖店 open API, signed: one shop's calls, its token refresh, its error codes.

A call is `POST {api_base}/{path}` (`afterSale/Detail` for `afterSale.Detail`) with
`app_key, method, timestamp, v=2, sign, sign_method=hmac-sha256, access_token` in
the query and the business parameters as the compact, key-sorted `param_json` in
the body; the sign is hex HMAC-SHA256(app_secret, secret + "app_key"… "v2" +
secret) over exactly that string (reference/channels.md §2.4 and addendum).

The envelope's `code` 10000 is success. Errors are sorted for the outbox
(bot/outbox.py): 20000/20001/50000 (platform unavailable or slow), 60000 (rate
limit) and 90000, an HTTP 429/5xx, a timeout or a dropped connection are
retryable; every other code (permissions, parameters, business refusals such as a
stale `update_time`) is permanent. An expired access token
(`isv.access-token-expired` / `-no-existed`) is refreshed with the refresh token
(`token/refresh`, no access token on that call) and the call made again once;
when the refresh fails too (`dop.token-generate-failed…`, no refresh token) a
person must re-authorise the shop: the admins are alerted once, and the call
stays retryable so nothing is lost while they do.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import aiohttp

from bot.channels.shops import DouyinShop
from bot.outbox import PermanentError, RetryableError
from storage import channel_state
from storage.db import Database

log = logging.getLogger(__name__)

OK = 10000
RETRYABLE_CODES = frozenset({20000, 20001, 50000, 60000, 90000})
TOKEN_EXPIRED = frozenset({"isv.access-token-expired", "isv.access-token-no-existed"})
Alert = Callable[[str], Awaitable[None]]


class DouyinError(Exception):
    """The platform answered with an error envelope."""

    def __init__(self, code: int, sub_code: str, message: str) -> None:
        super().__init__(f"{code} {sub_code}: {message}")
        self.code, self.sub_code, self.message = code, sub_code, message

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES


def param_json(params: dict[str, Any]) -> str:
    """Compact JSON with keys sorted at every depth: the exact string signed and sent."""
    return json.dumps(params, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def sign(app_key: str, app_secret: str, method: str, body: str, timestamp: str) -> str:
    """Hex HMAC-SHA256(secret, secret + app_key…method…param_json…timestamp…v2 + secret)."""
    text = f"{app_secret}app_key{app_key}method{method}param_json{body}timestamp{timestamp}v2"
    text += app_secret
    return hmac.new(app_secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def _method(path: str) -> str:
    return path.strip("/").replace("/", ".")


class DouyinApi:
    """One shop's API client; `access_token` is refreshed in place when it expires."""

    def __init__(
        self,
        shop: DouyinShop,
        base: str,
        http: Callable[[], aiohttp.ClientSession],
        clock: Callable[[], datetime],
        *,
        timeout: float = 10.0,
        alert: Alert | None = None,
        db: Database | None = None,
    ) -> None:
        self.shop = shop
        self.db = db
        self.state = f"token:douyin:{shop.shop_id or shop.app_key}"
        self._loaded = False
        self.base = (shop.api_base or base).rstrip("/")
        self.http = http
        self.clock = clock
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.alert = alert
        self.access_token = shop.access_token
        self.refresh_token = shop.refresh_token
        self._alerted = False
        # One refresh at a time: the outbox sends a shop's rows of different cases
        # concurrently, and each refresh spends the refresh token the others hold.
        self._refreshing = asyncio.Lock()

    async def call(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        """The envelope's `data` for a successful call; raises Retryable/PermanentError."""
        if not self._loaded:
            await self._stored_tokens()
            self._loaded = True
        used = self.access_token
        try:
            return await self._call(path, params, token=True)
        except DouyinError as exc:
            if exc.sub_code not in TOKEN_EXPIRED:
                raise _sorted(path, exc) from None
        async with self._refreshing:
            if self.access_token == used:  # else a call in flight with us refreshed it
                await self._refresh()
        try:
            return await self._call(path, params, token=True)
        except DouyinError as exc:
            raise _sorted(path, exc) from None

    async def _call(self, path: str, params: dict[str, Any], *, token: bool) -> dict[str, Any]:
        body = param_json(params)
        method = _method(path)
        timestamp = str(int(self.clock().timestamp()))
        query = {
            "app_key": self.shop.app_key,
            "method": method,
            "timestamp": timestamp,
            "v": "2",
            "sign_method": "hmac-sha256",
            "sign": sign(self.shop.app_key, self.shop.app_secret, method, body, timestamp),
        }
        if token:
            query["access_token"] = self.access_token
        url = f"{self.base}/{path.strip('/')}"
        headers = {"Content-Type": "application/json;charset=UTF-8"}
        try:
            async with self.http().post(
                url, params=query, data=body.encode(), headers=headers, timeout=self.timeout
            ) as response:
                status = response.status
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RetryableError(f"douyin {method}: {type(exc).__name__}: {exc}") from exc
        if status == 429 or status >= 500:
            raise RetryableError(f"douyin {method}: HTTP {status}")
        try:
            envelope = json.loads(text)
        except ValueError:
            raise PermanentError(f"douyin {method}: HTTP {status}, not JSON") from None
        code = envelope.get("code") if isinstance(envelope, dict) else None
        if code == OK:
            data = envelope.get("data")
            return data if isinstance(data, dict) else {}
        if not isinstance(code, int):
            raise PermanentError(f"douyin {method}: HTTP {status}, no code in the answer")
        message = str(envelope.get("sub_msg") or envelope.get("msg") or "")[:200]
        raise DouyinError(code, str(envelope.get("sub_code") or ""), message)

    async def _stored_tokens(self) -> bool:
        """Adopt the tokens a refresh stored (here or on another replica), unless the
        operator has configured a new access token since; True when they changed."""
        stored = await channel_state.get(self.db, self.state) if self.db else None
        if not stored or stored.get("configured") != self.shop.access_token:
            return False
        token, refresh = stored.get("access_token"), stored.get("refresh_token")
        if not isinstance(token, str) or token == self.access_token:
            return False
        self.access_token, self.refresh_token = token, str(refresh or self.refresh_token)
        return True

    async def _refresh(self) -> None:
        """New tokens from the refresh token; alert (once) when a person must step in.

        Another replica may have refreshed first (the old refresh token is then
        spent): its stored tokens are taken instead. New ones are stored for every
        replica and the next start."""
        shop = self.shop.label
        if await self._stored_tokens():
            return
        if not self.refresh_token:
            await self._need_person(f"抖店 {shop} 的 access_token 已过期，且未配置 refresh_token")
            raise RetryableError(f"douyin shop {shop}: access token expired, no refresh token")
        params = {"grant_type": "refresh_token", "refresh_token": self.refresh_token}
        try:
            data = await self._call("token/refresh", params, token=False)
        except DouyinError as exc:
            if exc.retryable:
                raise RetryableError(f"douyin token/refresh: {exc}") from None
            await self._need_person(f"抖店 {shop} 刷新 access_token 失败（{exc.message}）")
            raise RetryableError(f"douyin shop {shop}: token refresh refused: {exc}") from None
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise RetryableError("douyin token/refresh: no access_token in the answer")
        self.access_token = token
        self.refresh_token = str(data.get("refresh_token") or self.refresh_token)
        self._alerted = False
        if self.db is not None:
            record = {
                "configured": self.shop.access_token,
                "access_token": self.access_token,
                "refresh_token": self.refresh_token,
            }
            await channel_state.put(self.db, self.state, record, self.clock())
        log.info("douyin shop %s: access token refreshed", shop)

    async def _need_person(self, what: str) -> None:
        if self._alerted or self.alert is None:
            return
        self._alerted = True
        await self.alert(
            f"⚠ {what}：请在抖店后台重新授权，并更新配置中的 access_token / refresh_token 后"
            "重启；期间的消息与操作会排队重试，不会丢失"
        )

    async def detail(self, aftersale_id: str) -> dict[str, Any]:
        """`afterSale/Detail`: the authoritative state behind a thin notification."""
        return await self.call(
            "afterSale/Detail", {"after_sale_id": aftersale_id, "need_operation_record": False}
        )

    async def operate(self, kind: int, item: dict[str, Any]) -> None:
        """`afterSale/operate` for one after-sale; a per-item failure is the call's."""
        data = await self.call("afterSale/operate", {"type": kind, "items": [item]})
        for result in data.get("items") or []:
            code = result.get("status_code", 0) if isinstance(result, dict) else 0
            if code:
                raise PermanentError(
                    f"douyin afterSale/operate {kind}: {code} {result.get('status_msg', '')}"
                )

    async def updated(self, start: int, end: int, page: int, size: int = 50) -> dict[str, Any]:
        """`afterSale/List` by update time: the reconciliation poll's page."""
        return await self.call(
            "afterSale/List",
            {
                "update_start_time": start,
                "update_end_time": end,
                "order_by": ["update_time asc"],
                "page": page,
                "size": size,
            },
        )


def _sorted(path: str, exc: DouyinError) -> Exception:
    what = f"douyin {_method(path)}: {exc}"
    return RetryableError(what) if exc.retryable else PermanentError(what)
