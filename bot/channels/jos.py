"""JD Open Service (JOS) calls: the signed request every JD POP API takes.

The recipe (channels.md §3.3; the JOS SDKs' `sign()`): system parameters
`method, app_key, access_token, timestamp (yyyy-MM-dd HH:mm:ss, China time),
v=2.0, format=json, sign_method=md5` and the business parameters JSON-encoded in
the single parameter `360buy_param_json`; all of them but `sign`, sorted by key
and joined `k1v1k2v2…`, wrapped in the app secret on both sides; MD5, upper hex.
The answer is `{"<method, dots as underscores>_responce": {...}}` (JOS's own
spelling; `_response` accepted too) or `{"error_response": {code, zh_desc,
en_desc}}`.

Error codes are UNCONFIRMED beyond the SDKs (channels.md §8), so they are read
tolerantly (bot/channels/api_errors.py): an access token that is invalid or
expired (code 19, or a message about the token) is SessionExpired; HTTP 5xx,
timeouts and messages saying busy, limited or timed out are Transient; anything
else is Refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import aiohttp

from bot.channels.api_errors import Refused, SessionExpired, Transient
from bot.channels.form_api import Alert, FormApi
from bot.channels.top import china_time

log = logging.getLogger(__name__)

PARAM_JSON = "360buy_param_json"
TOKEN_CODES = frozenset({"19"})
TRANSIENT_WORDS = ("超时", "繁忙", "限流", "稍后", "timeout", "busy", "limit")


def sign(params: Mapping[str, str], secret: str) -> str:
    text = "".join(f"{k}{v}" for k, v in sorted(params.items()) if k != "sign" and v != "")
    return hashlib.md5(f"{secret}{text}{secret}".encode()).hexdigest().upper()  # noqa: S324


class JosClient(FormApi):
    """One shop's calls: the app key and secret, the shop's access token."""

    def __init__(
        self,
        http: Callable[[], aiohttp.ClientSession],
        *,
        api_base: str,
        app_key: str,
        app_secret: str,
        access_token: str,
        clock: Callable[[], datetime],
        timeout: float = 10.0,
        alert: Alert | None = None,
        label: str = "",
    ) -> None:
        expired = (
            f"⚠ 京东店铺 {label or app_key} 的 access_token 已失效：请重新授权，"
            "并更新配置中的 access_token 后重启；期间的消息与操作会排队重试，不会丢失"
        )
        super().__init__(http, api_base, timeout=timeout, alert=alert, expired=expired)
        self.clock, self.app_key, self.label = clock, app_key, label
        self._secret, self._token = app_secret, access_token

    def signed(self, method: str, params: Mapping[str, Any]) -> dict[str, str]:
        form = {
            "method": method,
            "app_key": self.app_key,
            "access_token": self._token,
            "timestamp": china_time(self.clock()),
            "v": "2.0",
            "format": "json",
            "sign_method": "md5",
            PARAM_JSON: json.dumps(dict(params), ensure_ascii=False, separators=(",", ":")),
        }
        form["sign"] = sign(form, self._secret)
        return form

    def error(self, method: str, error: Mapping[str, Any]) -> Exception:
        return _error(method, error)

    def result(self, method: str, body: dict[str, Any]) -> dict[str, Any] | None:
        for key, value in body.items():
            if key.endswith(("_responce", "_response")) and isinstance(value, dict):
                return value
        return None


def _error(method: str, error: Mapping[str, Any]) -> Exception:
    code = str(error.get("code", ""))
    message = str(error.get("zh_desc") or error.get("en_desc") or error.get("msg") or "")
    text = f"{method}: {code} {message}"
    if code in TOKEN_CODES or "access_token" in message or "token" in message.lower():
        return SessionExpired(text)
    if any(word in message.lower() for word in TRANSIENT_WORDS):
        return Transient(text)
    log.warning("JOS %s refused: %s %s", method, code, message)
    return Refused(method, code, message)
