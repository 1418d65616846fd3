"""Opaque signed button tokens: a card button carries no guessable id.

token = base64url(payload) "." base64url(HMAC-SHA256(secret, payload)[:16]), unpadded,
payload = "v2." card_id "." case_id "." action

The case id is signed too, so a token can only act on the case its card belongs
to, even if card ids repeat (a restored or recreated database under the same
secret). Only the exact encoding we issue is accepted: a token is re-encoded from
what it decodes to and must come out identical, so padding, standard-alphabet or
stray characters, whitespace and leading zeros are all refused.

The first format (payload = card_id "." action, no case id) is still accepted
while the keyring says so: for the grace period after an upgrade, on a database
that had cards then (storage/secrets.py), so a deploy does not break cards in flight.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from storage.secrets import Keyring

VERSION = "v2"
MAX_TOKEN = 256  # ours are under 100 characters; WeCom allows a button key of 1024 bytes


@dataclass(frozen=True, slots=True)
class Click:
    """What a verified token names; `case_id` is None for a first-format token."""

    card_id: int
    case_id: str | None
    action: str

    def belongs_to(self, case_id: str) -> bool:
        return self.case_id is None or self.case_id == case_id


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _encode(secret: str, payload: str) -> str:
    raw = payload.encode()
    mac = hmac.new(secret.encode(), raw, hashlib.sha256).digest()[:16]
    return f"{_b64(raw)}.{_b64(mac)}"


def _payload(click: Click) -> str:
    if click.case_id is None:
        return f"{click.card_id}.{click.action}"
    return f"{VERSION}.{click.card_id}.{click.case_id}.{click.action}"


def sign(keyring: Keyring, card_id: int, case_id: str, action: str) -> str:
    """The token one button of card `card_id` (of case `case_id`) carries."""
    return _encode(keyring.signing(), _payload(Click(card_id, case_id, action)))


def _parse(token: str, legacy: bool) -> Click | None:
    body = token.partition(".")[0]
    try:
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    parts = payload.split(".")
    if len(parts) == 4 and parts[0] == VERSION:
        card, case_id, action = parts[1:]
    elif len(parts) == 2 and legacy:
        (card, action), case_id = parts, None
    else:
        return None
    if not (card.isascii() and card.isdigit()) or not action or case_id == "":
        return None
    return Click(int(card), case_id, action)


def verify(keyring: Keyring, token: str, now: datetime) -> Click | None:
    """What the token names when we issued it with a secret still valid at `now`, else None.

    `now` is naive UTC (ctx.now()).
    """
    if len(token) > MAX_TOKEN or not token.isascii():
        return None
    click = _parse(token, keyring.accepts_legacy(now))
    if click is None:
        return None
    payload = _payload(click)  # the canonical form: leading zeros etc. do not survive it
    for secret in keyring.verifying(now):
        if hmac.compare_digest(_encode(secret, payload), token):
            return click
    return None
