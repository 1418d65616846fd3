"""WeCom's opaque callback values: any printable value within a generous bound is taken;
a control character, a line break, an empty or over-long value is refused, saying which."""

from __future__ import annotations

import pytest

from bot.events import CardAction, ChatMessage, ImageMessage
from bot.platforms.inbound import CallbackRejected
from bot.platforms.wecom_events import parse, split_ref
from tests.fakes.wecom_callbacks import CallbackSigner

SIGNER = CallbackSigner(lambda: 1_795_000_000)


@pytest.mark.parametrize(
    ("user", "key", "task_id", "code"),
    [
        ("wangzuzhang", "tok.approve", "rh-5-aa", "A" * 1024),  # a 1,024-char code
        ("ww0123456789abcdef/wangzuzhang", "k", "t", "c"),  # a linked corp's member
        ("Wang.ZuZhang@shop", "键=值&x=1", "task id with spaces", "code+/=~!中文"),
        ("u" * 120, "k" * 1024, "T" * 1024, "rc_" + "-" * 500),
    ],
)
def test_odd_but_valid_card_events_are_taken(user: str, key: str, task_id: str, code: str) -> None:
    event = parse(SIGNER.card_event(user, key, task_id, code, created=1_795_000_100))
    assert isinstance(event, CardAction)
    assert (event.sender.user_id, event.token) == (user, key)
    assert split_ref(event.platform_ref) == (task_id, code)
    assert len(event.key) <= 255


def test_odd_media_ids_and_userids_in_messages_are_taken() -> None:
    image = parse(SIGNER.image("ww0123456789abcdef/xiaozhou", "3a-Ω_媒体#1~" * 40, msg_id=7))
    assert isinstance(image, ImageMessage) and image.media_id == "3a-Ω_媒体#1~" * 40
    text = parse(SIGNER.text("Li.Zong-Jian@x", "/帮助", msg_id=8))
    assert isinstance(text, ChatMessage) and text.sender.user_id == "Li.Zong-Jian@x"


@pytest.mark.parametrize(
    ("inner", "reason"),
    [
        (SIGNER.card_event("u1", "k", "t", "c" * 1025), "ResponseCode: 1025 characters"),
        (SIGNER.card_event("u1", "", "t", "c"), "no EventKey"),
        (SIGNER.card_event("u1", "k", "t1\nt2", "c"), "TaskId: has a control character"),
        (SIGNER.card_event("u1", "k", "a|b", "c"), "TaskId: contains '|'"),
        (SIGNER.card_event("u" * 121, "k", "t", "c"), "FromUserName: 121 characters"),
        (SIGNER.image("u1", "m\x7fid", msg_id=1), "MediaId: has a control character"),
        (SIGNER.text("u\u2028v", "hi", msg_id=1), "FromUserName: has a control character"),
    ],
)
def test_truly_malformed_values_are_refused_naming_the_field(inner: str, reason: str) -> None:
    with pytest.raises(CallbackRejected) as caught:
        parse(inner)
    assert caught.value.status == 400 and reason in caught.value.reason
