"""Card-button tokens: bound to card and case, one canonical encoding, verified by keyring.

Tokens are minted here from the format in handlers/tokens.py's docstring, written out
on purpose (not through the module's private helpers), so the test pins the format.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from handlers import tokens
from handlers.tokens import Click
from storage.secrets import Keyring

SECRET = "current-secret-0123456789"
OLD = "retired-secret-0123456789"
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC).replace(tzinfo=None)  # as ctx.now() gives
CASE = "RC-261123-0001"
KEYS = Keyring(SECRET)
URLSAFE = str.maketrans("-_", "+/")


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def mint(secret: str, payload: str) -> str:
    mac = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()[:16]
    return f"{b64(payload.encode())}.{b64(mac)}"


def flip_unused_bit(token: str) -> str:
    """The same bytes in another spelling: the MAC's last base64 digit carries 2 bits
    of 6, so its lowest bit is ignored by a decoder."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token[-1])
    return token[:-1] + alphabet[last ^ 1]


def test_a_token_names_its_card_case_and_action() -> None:
    token = tokens.sign(KEYS, 42, CASE, "approve")
    assert token == mint(SECRET, f"v2.42.{CASE}.approve")
    assert tokens.verify(KEYS, token, NOW) == Click(42, CASE, "approve")


def test_the_click_belongs_only_to_the_signed_case() -> None:
    click = tokens.verify(KEYS, tokens.sign(KEYS, 42, CASE, "approve"), NOW)
    assert click is not None
    assert click.belongs_to(CASE)
    assert not click.belongs_to("RC-261123-0002")


def _urlsafe_token() -> str:
    """A genuine token whose encoding uses '-' or '_', to respell with '+' or '/'."""
    for card in range(1, 500):
        token = tokens.sign(KEYS, card, CASE, "approve")
        if "-" in token or "_" in token:
            return token
    raise AssertionError("no token with - or _ in 500 tries")


GOOD = tokens.sign(KEYS, 42, CASE, "approve")
BODY, MAC = GOOD.split(".")
MALFORMED = {
    "== appended": GOOD + "==",
    "= appended": GOOD + "=",
    "padded body": f"{BODY}==.{MAC}",
    "leading space": " " + GOOD,
    "trailing newline": GOOD + "\n",
    "space inside": f"{BODY[:5]} {BODY[5:]}.{MAC}",
    "tab inside mac": f"{BODY}.{MAC[:3]}\t{MAC[3:]}",
    "standard alphabet": _urlsafe_token().translate(URLSAFE),
    "unused bits set": flip_unused_bit(GOOD),
    "leading zero in card id": mint(SECRET, f"v2.042.{CASE}.approve"),
    "plus sign in card id": mint(SECRET, f"v2.+42.{CASE}.approve"),
    "underscore in card id": mint(SECRET, f"v2.4_2.{CASE}.approve"),
    "non-ascii digit": mint(SECRET, f"v2.４２.{CASE}.approve"),
    "empty case": mint(SECRET, "v2.42..approve"),
    "empty action": mint(SECRET, f"v2.42.{CASE}."),
    "extra field": mint(SECRET, f"v2.42.{CASE}.approve.x"),
    "unknown version": mint(SECRET, f"v3.42.{CASE}.approve"),
    "extra segment": GOOD + ".AAAA",
    "no mac": BODY,
    "empty mac": BODY + ".",
    "truncated mac": GOOD[:-2],
    "empty": "",
    "dot": ".",
    "case edited": f"{b64(b'v2.42.RC-261123-0002.approve')}.{MAC}",
    "wrong secret": mint("not-our-secret", f"v2.42.{CASE}.approve"),
    "first format without grace": mint(SECRET, "42.approve"),
    "non-ascii": GOOD + "é",
    "too long": GOOD + "A" * 300,
}


@pytest.mark.parametrize("token", MALFORMED.values(), ids=MALFORMED.keys())
def test_anything_but_the_canonical_encoding_is_refused(token: str) -> None:
    assert tokens.verify(KEYS, token, NOW) is None


def test_the_malformed_table_is_made_of_near_misses() -> None:
    """Each respelled variant still decodes to what the real token says: without the
    canonical check these would verify."""
    assert MALFORMED["standard alphabet"] != _urlsafe_token()
    assert base64.b64decode(MALFORMED["standard alphabet"].split(".")[1] + "==") == (
        base64.urlsafe_b64decode(_urlsafe_token().split(".")[1] + "==")
    )
    assert base64.urlsafe_b64decode(MALFORMED["unused bits set"].split(".")[1] + "==") == (
        base64.urlsafe_b64decode(MAC + "==")
    )


def test_a_retired_secret_verifies_during_its_grace_only() -> None:
    retired_at = NOW - timedelta(days=2)
    keys = Keyring(SECRET, ((OLD, retired_at),), timedelta(days=7))
    old = mint(OLD, f"v2.42.{CASE}.approve")
    assert tokens.verify(keys, old, NOW) == Click(42, CASE, "approve")
    end = retired_at + timedelta(days=7)
    assert tokens.verify(keys, old, end - timedelta(seconds=1)) is not None
    assert tokens.verify(keys, old, end) is None
    # New tokens are always signed with the current secret.
    assert tokens.sign(keys, 42, CASE, "approve") == mint(SECRET, f"v2.42.{CASE}.approve")


def test_first_format_tokens_verify_only_while_the_keyring_allows() -> None:
    legacy = Keyring(SECRET, legacy_since=NOW, grace=timedelta(days=7))
    first = mint(SECRET, "42.approve")
    assert tokens.verify(legacy, first, NOW) == Click(42, None, "approve")
    click = tokens.verify(legacy, first, NOW + timedelta(days=7) - timedelta(seconds=1))
    assert click is not None and click.belongs_to(CASE)  # it carries no case to check
    assert tokens.verify(legacy, first, NOW + timedelta(days=7)) is None
    # The canonical rule applies to them too.
    assert tokens.verify(legacy, first + "==", NOW) is None
    assert tokens.verify(legacy, mint(SECRET, "042.approve"), NOW) is None
    assert tokens.verify(legacy, mint("not-our-secret", "42.approve"), NOW) is None


def test_an_unloaded_keyring_signs_nothing_and_verifies_nothing() -> None:
    with pytest.raises(RuntimeError, match="not loaded"):
        tokens.sign(Keyring(), 42, CASE, "approve")
    assert tokens.verify(Keyring(), GOOD, NOW) is None


def test_the_keyring_never_shows_its_secrets() -> None:
    keys = Keyring(SECRET, ((OLD, NOW),))
    assert SECRET not in repr(keys) and OLD not in repr(keys)
