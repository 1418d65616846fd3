"""What an unsigned robot-message body must not be trusted for, kept per process.

DingTalk's robot callback signs only its timestamp (dingtalk_sign.py). So the
`sessionWebhook` a message carries is used for replies only when it is
DingTalk's own reply URL (`Sessions`), and one (timestamp, sign) pair is accepted
for one message only (`SignGuard`): a captured pair replayed with another body
is refused. Both live in memory: another replica, or a restart, falls back to the
OpenAPI for replies, and relies on the 1-hour window and the msgId dedupe.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from urllib.parse import urlsplit

from bot.platforms.dingtalk_events import WEBHOOK_PATH, Session
from bot.platforms.inbound import CallbackRejected

log = logging.getLogger(__name__)

SESSION_MARGIN_MS = 60_000  # a session webhook this close to expiry is not used
SEEN_SIGNS = 50_000


class Sessions:
    """Each member's latest 1:1 `sessionWebhook`, kept only if it points at DingTalk.

    Per process: another replica, or this one after a restart, replies through the
    OpenAPI instead, which always works.
    """

    def __init__(self, oapi_base: str, now_ms: Callable[[], int]) -> None:
        base = urlsplit(oapi_base)
        self.origin = (base.scheme, base.netloc)
        self.now_ms = now_ms
        self._by_user: dict[str, Session] = {}

    def remember(self, session: Session) -> None:
        """Keep `session` for its user, unless it is not a DingTalk reply URL (the
        body is unsigned: a forged one must not make us post replies elsewhere)."""
        url = urlsplit(session.url)
        if (url.scheme, url.netloc) != self.origin or url.path != WEBHOOK_PATH:
            log.warning("dingtalk sessionWebhook for %s ignored: not DingTalk's", session.user_id)
            return
        self._by_user[session.user_id] = session

    def url_for(self, user_id: str) -> str | None:
        session = self._by_user.get(user_id)
        if session is None or session.expires_ms - SESSION_MARGIN_MS <= self.now_ms():
            self._by_user.pop(user_id, None)
            return None
        return session.url

    def forget(self, user_id: str) -> None:
        self._by_user.pop(user_id, None)


class SignGuard:
    """One (timestamp, sign) pair, one message: the signature covers no body, so a
    captured pair replayed with another body (another msgId) is refused. Per process,
    bounded; entries older than the window are dropped."""

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._seen: OrderedDict[tuple[str, str], str] = OrderedDict()

    def claim(self, timestamp: str, sign: str, msg_id: str) -> bool:
        """Raise if the pair signed another message; True if this call recorded it."""
        cutoff = int(timestamp) - 2 * self.window_ms
        while self._seen and (
            len(self._seen) > SEEN_SIGNS or int(next(iter(self._seen))[0]) < cutoff
        ):
            self._seen.popitem(last=False)
        pair = (timestamp, sign)
        seen = self._seen.get(pair)
        if seen is not None and seen != msg_id:
            raise CallbackRejected(403, "sign already used for another message (replay)")
        self._seen[pair] = msg_id
        return seen is None

    def release(self, timestamp: str, sign: str) -> None:
        """Forget a pair whose message was refused: it signed nothing we took."""
        self._seen.pop((timestamp, sign), None)
