"""Opaque signed button tokens: a card button carries no guessable id.

token = base64url(card_id "." action) "." base64url(HMAC-SHA256(secret, payload)[:16])
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(secret: str, card_id: int, action: str) -> str:
    """The token one button of card `card_id` carries (the platform echoes it back)."""
    payload = f"{card_id}.{action}".encode()
    mac = hmac.new(secret.encode(), payload, hashlib.sha256).digest()[:16]
    return f"{_b64(payload)}.{_b64(mac)}"


def verify(secret: str, token: str) -> tuple[int, str] | None:
    """(card_id, action) when the token is ours and intact, else None."""
    try:
        body, _, mac = token.partition(".")
        payload = _unb64(body)
        expected = hmac.new(secret.encode(), payload, hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(expected, _unb64(mac)):
            return None
        card, _, action = payload.decode().partition(".")
        return int(card), action
    except (ValueError, UnicodeDecodeError):
        return None
