"""How a marketplace API's answer fails, for the outbox and the pollers to act on.

`Transient` is retried with backoff (a limit, the far side down or slow);
`Refused` never will succeed as sent and dead-letters. `SessionExpired` needs a
person (the seller authorizes the app again): the client alerts the admins once,
and the call stays retryable, so nothing is lost while they do (as the 抖店
client does, bot/channels/douyin_api.py).
"""

from __future__ import annotations

from bot.outbox import PermanentError, RetryableError


class Transient(RetryableError):
    """A fault that passes: rate limited, unavailable, timed out."""


class Refused(PermanentError):
    """The API refused the call; `code` and `detail` as it gave them."""

    def __init__(self, method: str, code: str, detail: str) -> None:
        super().__init__(f"{method}: {code} {detail}".strip())
        self.method, self.code, self.detail = method, code, detail


class SessionExpired(Transient):
    """The shop's session or access token is missing or expired: re-authorize."""
