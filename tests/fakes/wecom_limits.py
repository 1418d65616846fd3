"""What the real WeCom does with time, for the fake server (tests/fakes/wecom.py).

- Per-member app message limits (doc path/90236 "频率限制"): an app may send one
  member at most 30 messages a minute and 1,000 an hour; "超过部分会被丢弃不下发" —
  the excess is answered errcode 0 and never delivered. Group chats (appchat/send,
  doc path/90248): 200 a minute and 10,000 a day per member, dropped the same way.
- response_code (doc path/94945, im-protocols.md 7a): every interactive card send and
  every click issues one; each is usable once and for 72 hours, else errcode 60140.

Everything runs on the fake's injectable `clock` (seconds), never on wall time.
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.wecom_checks import CODE_INVALID, INVALID_PARAM, Refusal

CODE_LIFETIME = 72 * 3600.0
APP_LIMITS = ((60.0, 30), (3600.0, 1000))  # (window seconds, messages) per member per app
CHAT_LIMITS = ((60.0, 200), (86400.0, 10_000))  # per member, over all the app's group chats


@dataclass
class MemberWindows:
    """Sliding windows of delivered messages per member; `admit` says whether one more fits."""

    limits: tuple[tuple[float, int], ...] = APP_LIMITS
    sent: dict[str, deque[float]] = field(default_factory=dict)

    def admit(self, member: str, now: float) -> bool:
        """Record a delivery to `member` at `now` and return True, or False (dropped)."""
        times = self.sent.setdefault(member.lower(), deque())  # userids: case-insensitive
        longest = max(window for window, _ in self.limits)
        while times and now - times[0] >= longest:
            times.popleft()
        for window, most in self.limits:
            if sum(1 for t in times if now - t < window) >= most:
                return False
        times.append(now)
        return True


def issue_code(
    codes: dict[str, dict[str, Any]],
    userid: str,
    task_id: str,
    now: float,
    *,
    code: str | None = None,
) -> str:
    """A fresh single-use response_code for `userid`'s copy of card `task_id`."""
    code = code or "rc_" + secrets.token_urlsafe(24)
    codes[code] = {"userid": userid, "task_id": task_id, "used": False, "issued": now}
    return code


def use_code(
    codes: dict[str, dict[str, Any]], code: str, userids: list[str], now: float
) -> dict[str, Any]:
    """The code's record if `code` may update `userids`' card now (not yet marked used)."""
    record = codes.get(code)
    if record is None or record["used"]:
        raise Refusal(CODE_INVALID, "invalid response_code: unknown or already used")
    if now - record["issued"] >= CODE_LIFETIME:
        raise Refusal(CODE_INVALID, "invalid response_code: expired (72 h)")
    if any(u.lower() != record["userid"].lower() for u in userids):
        # A code updates the card it came with; WeCom's errcode for this is UNCONFIRMED.
        raise Refusal(INVALID_PARAM, "response_code is for another member's card")
    return record
