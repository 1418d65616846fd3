"""WeCom API answers -> the outbox's two kinds of failure, and credential scrubbing.

`check` maps a JSON answer's errcode: 0 is the answer; 60020/43012 are setup
faults (`SetupFault`, see wecom_outage.py); 40001/40014/42001 are token trouble
(`TokenRejected`: refresh once, retry once); -1 and the frequency limits are
`WecomBusy` (retryable); anything else is a `WecomApiError` (permanent).
Error texts never carry the access token, the corp secret or a robot key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bot.outbox import PermanentError, RetryableError
from bot.platforms.wecom_outage import kind_of

TOKEN_ERRORS = frozenset({40001, 40014, 42001})  # invalid credential / token, expired
BUSY_ERRORS = frozenset({-1, 45009, 45011, 45033})  # system busy, frequency, concurrency
_SECRETS = re.compile(r"(access_token|corpsecret|key)=[^&\s'\"]+")


def scrub(text: str) -> str:
    """Remove credentials from anything that may end up in a log or `last_error`."""
    return _SECRETS.sub(r"\1=***", text)


class WecomApiError(PermanentError):
    """WeCom refused the call for good (`errcode` kept for callers and tests)."""

    def __init__(self, path: str, errcode: int, errmsg: str) -> None:
        super().__init__(f"wecom {path}: errcode {errcode}: {scrub(errmsg)[:200]}")
        self.errcode = errcode


class WecomBusy(RetryableError):
    def __init__(self, path: str, errcode: int, errmsg: str) -> None:
        super().__init__(f"wecom {path}: errcode {errcode} (busy): {scrub(errmsg)[:200]}")
        self.errcode = errcode


class TokenRejected(Exception):
    """The call failed because of its token (40001/40014/42001); refresh once, retry once."""


class SetupFault(RetryableError):
    """60020 / 43012 in an answer; `WecomClient.fault` turns it into a `WecomSetupError`
    (parked, alerted); one that escapes elsewhere is still retried."""

    def __init__(self, errcode: int, errmsg: str, kind: str) -> None:
        super().__init__(errcode)
        self.errcode, self.errmsg, self.kind = errcode, errmsg, kind


def check(path: str, data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Map a JSON answer's errcode onto our errors (token errors are raised separately)."""
    errcode = data.get("errcode", 0)
    if not isinstance(errcode, int):
        raise RetryableError(f"wecom {path}: answer without an integer errcode")
    errmsg = str(data.get("errmsg", ""))
    if errcode == 0:
        return data
    if (kind := kind_of(errcode, gettoken=False)) is not None:
        raise SetupFault(errcode, scrub(errmsg)[:200], kind)
    if errcode in TOKEN_ERRORS:
        raise TokenRejected(errcode)
    if errcode in BUSY_ERRORS:
        raise WecomBusy(path, errcode, errmsg)
    raise WecomApiError(path, errcode, errmsg)
