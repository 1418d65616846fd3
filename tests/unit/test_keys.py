"""bot/keys.py: different events never share an idempotency key, and keys stay bounded."""

from __future__ import annotations

import itertools
import uuid

import pytest

from bot.events import CardAction
from bot.keys import KEY_MAX, key
from bot.platforms import console
from bot.platforms.wecom_events import parse
from tests.fakes.wecom_callbacks import CallbackSigner

# Parts chosen to break naive joining: separators, the escape character, escapes
# that look already applied, the digest marker, empty parts, Unicode, controls.
ATOMS = (
    "",
    ":",
    "::",
    "a",
    "a:",
    ":a",
    "a:b",
    "%",
    "%3A",
    "%253A",
    "#",
    "a#0",
    "售后",
    "售:后",
    " ",
    "\t",
    "\x00",
    "\u2028",
    "\ud800",
    "x" * 300,
    "x" * 299 + ":",
)


def test_every_tuple_of_parts_has_its_own_key() -> None:
    tuples = [
        combo
        for n in (1, 2, 3)
        for combo in itertools.product(ATOMS, repeat=n)
        if n < 3 or len({*combo}) == 3  # the three-part sample: distinct atoms only
    ]
    keys = {key(*parts): parts for parts in tuples}
    assert len(keys) == len(tuples)
    assert all(len(k) <= KEY_MAX for k in keys)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (("generic", "main", "k1:1"), ("generic", "main:k1", "1")),  # the pair from issue 6
        (("generic", "main", ""), ("generic", "main:")),
        (("generic", "a%3Ab"), ("generic", "a:b")),
        (("wecom", "card", "u", "1", "k:t", "t"), ("wecom", "card", "u", "1", "k", "t:t")),
        (("a",), ("a", "")),
    ],
)
def test_known_collisions_of_plain_joining_are_apart(
    left: tuple[str, ...], right: tuple[str, ...]
) -> None:
    assert key(*left) != key(*right)


def test_keys_stay_readable() -> None:
    assert key("generic", "main-store", "oms-evt-000123") == "generic:main-store:oms-evt-000123"
    assert key("generic", "main:k1", "1") == "generic:main%3Ak1:1"
    assert key("generic", "旗舰店", "退款 1") == "generic:旗舰店:退款 1"


def test_a_long_key_keeps_its_prefix_and_a_digest() -> None:
    long_a, long_b = key("wecom", "card", "x" * 400 + "a"), key("wecom", "card", "x" * 400 + "b")
    assert long_a != long_b
    assert len(long_a) == KEY_MAX and long_a.startswith("wecom:card:xxx")
    assert long_a.count("#") == 1
    assert key("wecom", "card", "x" * 400 + "a") == long_a  # deterministic across calls


def test_a_key_needs_a_part() -> None:
    with pytest.raises(ValueError, match="at least one part"):
        key()


def test_each_edge_escapes_its_parts() -> None:
    """WeCom button keys are opaque: a ":" or "#" in one cannot shift the other parts."""
    signer = CallbackSigner(lambda: 1_795_000_000)
    left = parse(signer.card_event("wangzuzhang", "tok:1", "rh-1-a", "C", created=7))
    right = parse(signer.card_event("wangzuzhang", "tok#1", "rh-1-a", "C", created=7))
    assert isinstance(left, CardAction) and isinstance(right, CardAction)
    assert left.key == "wecom:card:wangzuzhang:7:tok%3A1:rh-1-a"
    assert right.key == "wecom:card:wangzuzhang:7:tok%231:rh-1-a"
    page = str(uuid.UUID(int=1))
    chat = console.parse_chat({"user": "王组长", "text": "/帮助", "uuid": page})
    click = console.parse_click({"user": "王组长", "token": "t", "uuid": page})
    assert (chat.key, click.key) == (f"console:msg:{page}", f"console:click:{page}")
    assert console.event_uuid(click.key) == page
