"""Taobao Open Platform (TOP) calls: the signed form POST every Taobao/Tmall API takes.

The recipe (channels.md §1.4; the official SDK's `top/api/base.py`): the system
parameters (`method, app_key, session, timestamp, format=json, v=2.0,
sign_method`) and the business ones, empty values dropped, sorted by key in ASCII
order and joined as `k1v1k2v2…`; then, over its UTF-8 bytes,
- `md5`: upper hex of MD5(secret + string + secret),
- `hmac`: upper hex of HMAC-MD5(secret, string),
- `hmac-sha256`: upper hex of HMAC-SHA256(secret, string).
The timestamp is `yyyy-MM-dd HH:mm:ss` in China time (the gateway's window is
about 10 minutes). The answer is JSON: `{"<method without 'taobao.', dots as
underscores>_response": {...}}`, or `{"error_response": {code, msg, sub_code,
sub_msg}}`.

Errors are sorted as bot/channels/api_errors.py says: the gateway's own
transient faults (code 7 call limit, 10 unavailable, 15 with an `isp.*` remote
fault from the SDK's retry list, HTTP 5xx, timeouts) are Transient; a dead
session (26/27: the seller must authorize again) is SessionExpired; anything
else (`isv.*` business refusals, bad arguments, missing permissions) is Refused.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import aiohttp

from bot.channels.api_errors import Refused, SessionExpired, Transient
from bot.channels.form_api import Alert, FormApi
from bot.channels.values import SHANGHAI as CHINA

log = logging.getLogger(__name__)

SIGN_METHODS = ("md5", "hmac", "hmac-sha256")
RETRY_CODES = frozenset({"7", "10"})  # App Call Limited; Service Currently Unavailable
SESSION_CODES = frozenset({"26", "27"})  # Missing Session; Invalid Session
# The official SDK retries these sub-codes (gateway-side faults of the remote service).
RETRY_SUB_CODES = frozenset(
    {
        "isp.top-remote-connection-timeout",
        "isp.top-remote-connection-timeout-tmall",
        "isp.top-remote-service-unavailable",
        "isp.top-remote-service-unavailable-tmall",
        "isp.top-remote-unknown-error",
        "isp.top-remote-unknown-error-tmall",
        "isp.remote-connection-error",
        "isp.remote-connection-error-tmall",
        "isp.refund-service-unavailable",
    }
)


def sign_string(params: Mapping[str, str]) -> str:
    return "".join(f"{k}{v}" for k, v in sorted(params.items()) if k != "sign" and v != "")


def sign(params: Mapping[str, str], secret: str, method: str = "md5") -> str:
    """The `sign` parameter for `params` (which must include `sign_method`)."""
    text = sign_string(params).encode("utf-8")
    key = secret.encode("utf-8")
    if method == "md5":
        return hashlib.md5(key + text + key).hexdigest().upper()  # noqa: S324 - TOP's recipe
    if method == "hmac":
        return hmac.new(key, text, hashlib.md5).hexdigest().upper()
    if method == "hmac-sha256":
        return hmac.new(key, text, hashlib.sha256).hexdigest().upper()
    raise ValueError(f"sign_method must be one of {', '.join(SIGN_METHODS)}: {method!r}")


def china_time(moment: datetime) -> str:
    return moment.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")


def response_key(method: str) -> str:
    """`taobao.refund.get` -> `refund_get_response`."""
    name = method.removeprefix("taobao.")
    return name.replace(".", "_") + "_response"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(_text(v) for v in value)
    return "" if value is None else str(value)


class TopClient(FormApi):
    """One seller's calls: app key and secret of the app, the seller's session key.

    `http` gives the shared client session (made at start-up); `label` names the
    shop in the one alert an expired session raises.
    """

    def __init__(
        self,
        http: Callable[[], aiohttp.ClientSession],
        *,
        api_base: str,
        app_key: str,
        app_secret: str,
        session: str,
        clock: Callable[[], datetime],
        sign_method: str = "hmac-sha256",
        timeout: float = 10.0,
        alert: Alert | None = None,
        label: str = "",
    ) -> None:
        if sign_method not in SIGN_METHODS:
            raise ValueError(f"sign_method must be one of {', '.join(SIGN_METHODS)}")
        expired = (
            f"⚠ 淘宝店铺 {label or app_key} 的 session 已失效：请卖家重新授权，"
            "并更新配置中的 session 后重启；期间的消息与操作会排队重试，不会丢失"
        )
        super().__init__(http, api_base, timeout=timeout, alert=alert, expired=expired)
        self.clock, self.app_key, self.sign_method, self.label = clock, app_key, sign_method, label
        self._secret, self._session = app_secret, session

    def signed(self, method: str, params: Mapping[str, Any]) -> dict[str, str]:
        """The form a call posts: system and business parameters and their `sign`."""
        form = {
            "method": method,
            "app_key": self.app_key,
            "session": self._session,
            "timestamp": china_time(self.clock()),
            "format": "json",
            "v": "2.0",
            "sign_method": self.sign_method,
            **{k: _text(v) for k, v in params.items()},
        }
        form = {k: v for k, v in form.items() if v != ""}
        form["sign"] = sign(form, self._secret, self.sign_method)
        return form

    def error(self, method: str, error: Mapping[str, Any]) -> Exception:
        return _error(method, error)

    def result(self, method: str, body: dict[str, Any]) -> dict[str, Any] | None:
        found = body.get(response_key(method))
        return found if isinstance(found, dict) else None


def _error(method: str, error: Mapping[str, Any]) -> Exception:
    code, msg = str(error.get("code", "")), str(error.get("msg", ""))
    sub_code, sub_msg = str(error.get("sub_code", "")), str(error.get("sub_msg", ""))
    detail = f"{msg} ({sub_code}: {sub_msg})" if sub_code or sub_msg else msg
    if code in RETRY_CODES or sub_code in RETRY_SUB_CODES:
        return Transient(f"{method}: {code} {detail}")
    if code in SESSION_CODES:
        return SessionExpired(f"{method}: {code} {detail}")
    log.warning("TOP %s refused: %s %s", method, code, detail)
    return Refused(method, code, detail)
