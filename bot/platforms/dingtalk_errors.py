"""DingTalk API answers -> the outbox's two kinds of failure, and credential scrubbing.

Two generations answer differently:

- `api.dingtalk.com` (v1.0): HTTP status plus `{"code", "message", "requestid"}` on
  failure. 401 / `InvalidAuthentication` is token trouble (refresh once, retry
  once); 429 and `Throttling*` codes, 5xx and transport faults are retryable; a 403
  (a permission the app was not granted, `Forbidden.AccessDenied.*`) is retryable
  too, so nothing is lost while the admin grants it — the outbox dead-letters and
  alerts after `outbox.give_up_after_hours`; any other 4xx is permanent.
- `oapi.dingtalk.com` (legacy and the custom robot webhook): `{"errcode", "errmsg"}`;
  40014 / 42001 / 40001 are token trouble, -1 is busy, 130101 is a robot's
  20-a-minute limit (10 minutes of penalty), anything else is permanent.

Error texts never carry the access token, the app secret or a robot's token.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bot.outbox import PermanentError, RetryableError

TOKEN_ERRORS = frozenset({40001, 40014, 42001})
BUSY_ERRORS = frozenset({-1})
ROBOT_TOO_FAST = 130101  # "send too fast, exceed 20 times per minute": 10 minutes' penalty
TOKEN_CODES = frozenset({"InvalidAuthentication", "invalidAuthentication"})
_SECRETS = re.compile(r"(access_token|appsecret|appSecret|sign|session)=[^&\s'\"]+")


def scrub(text: str) -> str:
    """Remove credentials from anything that may end up in a log or `last_error`."""
    return _SECRETS.sub(r"\1=***", text)


class DingtalkApiError(PermanentError):
    """DingTalk refused the call for good (`code` kept for callers and tests)."""

    def __init__(self, path: str, code: str, message: str) -> None:
        super().__init__(f"dingtalk {path}: {code}: {scrub(message)[:200]}")
        self.code = code


class DingtalkBusy(RetryableError):
    def __init__(self, path: str, code: str, message: str) -> None:
        super().__init__(f"dingtalk {path}: {code} (retry later): {scrub(message)[:200]}")
        self.code = code


class TokenRejected(Exception):
    """The call failed because of its token; refresh once, retry once."""


def check_v1(path: str, status: int, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """An api.dingtalk.com answer: the JSON on 2xx, else the mapped error."""
    if 200 <= status < 300:
        return data
    code = str(data.get("code") or f"HTTP {status}")
    message = str(data.get("message") or "")
    if status == 401 or code in TOKEN_CODES:
        raise TokenRejected(code)
    if status in (403, 408, 429) or status >= 500 or code.startswith("Throttling"):
        raise DingtalkBusy(path, code, message)
    raise DingtalkApiError(path, code, message)


def check_oapi(path: str, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """An oapi.dingtalk.com answer (errcode 0 is success)."""
    errcode = data.get("errcode", 0)
    if not isinstance(errcode, int):
        raise RetryableError(f"dingtalk {path}: answer without an integer errcode")
    if errcode == 0:
        return data
    errmsg = str(data.get("errmsg", ""))
    if errcode in TOKEN_ERRORS:
        raise TokenRejected(str(errcode))
    if errcode in BUSY_ERRORS or errcode == ROBOT_TOO_FAST:
        raise DingtalkBusy(path, str(errcode), errmsg)
    raise DingtalkApiError(path, str(errcode), errmsg)
