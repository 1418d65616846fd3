"""Console sign-in as one member: admin-issued sign-in codes and the session cookie.

Outside demo mode the console acts as exactly one member, the one signed in. An
admin issues a sign-in code for a member (`returnhub console-login NAME`); the
member opens the link (or pastes the code into the login page), the code is
redeemed once, and the browser gets a session cookie naming that member. Both are
signed with keys derived from the server keyring (storage/secrets.py: shared by every
replica, kept across restarts, never seen by integrators; a rotated-out secret still
verifies for its grace period), each with its own label, so neither can pass for
the other nor for a card token. Both carry their expiry; the code also a nonce that the redemption
claims once (storage's inbox keys), so a code seen later in a chat log or a proxy's
log is worth nothing. The read-API token plays no part: it can never act as a member.

Format of both: `<base64url(JSON payload)>.<base64url(HMAC-SHA256)[:22]>`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from storage.secrets import Keyring

_CODE_LABEL = b"returnhub console sign-in code v1"
_SESSION_LABEL = b"returnhub console session v1"
CODE_DEFAULT = timedelta(hours=24)
CODE_MAX = timedelta(days=7)
SESSION_LIFETIME = timedelta(days=7)
MAX_LENGTH = 600  # a name of 64 characters, escaped, and the rest: far below


class BadSignin(ValueError):
    """A code or cookie that is malformed, forged, for another purpose, or expired."""


@dataclass(frozen=True, slots=True)
class Signin:
    member: str
    nonce: str
    expires: datetime


def _key(secret: str, label: bytes) -> bytes:
    return hmac.new(secret.encode(), label, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _mac(secret: str, label: bytes, payload: str) -> str:
    return _b64(hmac.new(_key(secret, label), payload.encode(), hashlib.sha256).digest())[:22]


def _seal(keyring: Keyring, label: bytes, data: list[object]) -> str:
    payload = _b64(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode())
    return f"{payload}.{_mac(keyring.signing(), label, payload)}"


def _open(keyring: Keyring, label: bytes, value: str, now: datetime, size: int) -> list[object]:
    """The payload's fields (the last is the expiry, unix seconds), checked; `now` aware."""
    bad = BadSignin("not a valid sign-in")
    value = value.strip()
    if not value.isascii() or len(value) > MAX_LENGTH:
        raise bad
    payload, _, mac = value.partition(".")
    secrets_now = keyring.verifying(now.astimezone(UTC).replace(tzinfo=None))
    if not any(
        hmac.compare_digest(mac.encode(), _mac(secret, label, payload).encode())
        for secret in secrets_now
    ):
        raise bad
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        raise bad from None
    if not (isinstance(data, list) and len(data) == size and type(data[-1]) is int):
        raise bad
    if data[-1] <= now.timestamp():
        raise BadSignin("expired")
    return data


def issue_code(
    keyring: Keyring, member: str, now: datetime, valid: timedelta = CODE_DEFAULT
) -> str:
    """A one-time sign-in code for `member`, redeemable until `now + valid` (at most
    CODE_MAX); `now` is aware, like every `now` here."""
    expires = int((now + min(valid, CODE_MAX)).timestamp())
    return _seal(keyring, _CODE_LABEL, [member, secrets.token_urlsafe(12), expires])


def read_code(keyring: Keyring, code: str, now: datetime) -> Signin:
    """The code's member, nonce and expiry; BadSignin if forged, malformed or expired."""
    member, nonce, expires = _open(keyring, _CODE_LABEL, code, now, 3)
    if not (isinstance(member, str) and member and isinstance(nonce, str) and nonce):
        raise BadSignin("not a valid sign-in")
    if not isinstance(expires, int):  # _open checked it; this tells the type checker
        raise BadSignin("not a valid sign-in")
    return Signin(member, nonce, datetime.fromtimestamp(expires, UTC))


def session_value(keyring: Keyring, member: str, now: datetime) -> str:
    """The session cookie's value: `member`, until `now + SESSION_LIFETIME`."""
    return _seal(keyring, _SESSION_LABEL, [member, int((now + SESSION_LIFETIME).timestamp())])


def session_member(keyring: Keyring, value: str, now: datetime) -> str | None:
    """The member a session cookie names, or None if it is absent, forged or expired."""
    if not value:
        return None
    try:
        member, _ = _open(keyring, _SESSION_LABEL, value, now, 2)
    except BadSignin:
        return None
    return member if isinstance(member, str) and member else None


_DASHBOARD_LABEL = b"returnhub dashboard session v1"
DASHBOARD_LIFETIME = timedelta(hours=12)


def _token_tag(token: str) -> str:
    """Which API token the dashboard cookie was got with: a new token ends old cookies."""
    return hashlib.sha256(b"returnhub dashboard token|" + token.encode()).hexdigest()[:16]


def dashboard_value(keyring: Keyring, token: str, now: datetime) -> str:
    """The dashboard cookie, got by entering the API token, until `now + DASHBOARD_LIFETIME`."""
    expires = int((now + DASHBOARD_LIFETIME).timestamp())
    return _seal(keyring, _DASHBOARD_LABEL, [_token_tag(token), expires])


def dashboard_ok(keyring: Keyring, token: str, value: str, now: datetime) -> bool:
    """The cookie is ours, unexpired, and was got with the API token configured now."""
    if not value or not token:
        return False
    try:
        tag, _ = _open(keyring, _DASHBOARD_LABEL, value, now, 2)
    except BadSignin:
        return False
    return isinstance(tag, str) and hmac.compare_digest(tag, _token_tag(token))
