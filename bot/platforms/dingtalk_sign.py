"""DingTalk's HMAC signatures: the robot callback's `sign` header and the custom
robot's signed webhook URL (加签). Both are base64(HMAC-SHA256(key=secret,
msg=timestamp + "\\n" + secret)), the timestamp in milliseconds, within 1 hour.

The robot callback's signature covers only the timestamp, not the body, so a
captured (timestamp, sign) pair can be replayed with any body inside the window:
the route therefore also dedupes on `msgId` and treats every body field as
untrusted (the sender must be a member, `robotCode` must be ours, a
`sessionWebhook` must point at DingTalk).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from urllib.parse import quote

from bot.platforms.inbound import CallbackRejected

_TIMESTAMP = re.compile(r"\d{10,16}")
SIGN_MAX = 128


def signature(secret: str, timestamp: str) -> str:
    """base64(HMAC-SHA256(secret, timestamp + "\\n" + secret)), as DingTalk computes it."""
    mac = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def verify(
    headers: Mapping[str, str], secret: str, *, now: Callable[[], float], window: int
) -> None:
    """Check the robot callback's `timestamp` (ms) and `sign` headers; raise if refused.

    Constant-time comparison; a timestamp more than `window` seconds from our clock
    is refused, so is a missing or malformed header.
    """
    timestamp = headers.get("timestamp", "")
    sign = headers.get("sign", "")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise CallbackRejected(400, "missing or malformed timestamp header")
    if not sign or len(sign) > SIGN_MAX or not sign.isascii():
        raise CallbackRejected(403, "missing or malformed sign header")
    skew = abs(now() - int(timestamp) / 1000)
    if skew > window:
        raise CallbackRejected(403, f"timestamp outside the replay window ({int(skew)} s)")
    if not hmac.compare_digest(signature(secret, timestamp).encode(), sign.encode()):
        raise CallbackRejected(403, "sign mismatch")


def signed_webhook(base: str, access_token: str, secret: str, now_ms: int) -> str:
    """A custom robot's send URL with `timestamp` and the URL-encoded `sign` appended."""
    url = f"{base.rstrip('/')}/robot/send?access_token={quote(access_token, safe='')}"
    if not secret:
        return url
    ts = str(now_ms)
    return f"{url}&timestamp={ts}&sign={quote(signature(secret, ts), safe='')}"
