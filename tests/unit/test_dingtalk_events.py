"""Robot messages and card callbacks -> neutral events; the card's parameter map;
the robot callback signature; session webhooks kept only when they are DingTalk's."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from bot.cards import Button, Card, CardRenderer
from bot.events import CardAction, ChatMessage, ImageMessage
from bot.platforms import dingtalk_cards
from bot.platforms.dingtalk_events import (
    Session,
    Unsupported,
    join_tokens,
    parse_card_callback,
    parse_message,
)
from bot.platforms.dingtalk_sessions import Sessions
from bot.platforms.dingtalk_sign import signed_webhook, verify
from bot.platforms.inbound import CallbackRejected

ROBOT = "dingrobot1"
RENDERER_ROOT = Path(__file__).resolve().parents[2] / "templates"
RENDERER = CardRenderer(RENDERER_ROOT)


def msg(msgtype: str, **body: Any) -> dict[str, Any]:
    return {
        "msgtype": msgtype,
        "msgId": "msgA1",
        "senderStaffId": "staff2001",
        "conversationType": "1",
        "conversationId": "cid1",
        "robotCode": ROBOT,
        "sessionWebhook": "https://oapi.dingtalk.com/robot/sendBySession?session=s1",
        "sessionWebhookExpiredTime": 1_800_000_000_000,
        **body,
    }


def test_text_picture_rich_text_and_audio() -> None:
    (text,) = parse_message(msg("text", text={"content": " SF7001 "}), robot_code=ROBOT).events
    assert isinstance(text, ChatMessage) and text.text == "SF7001"
    assert text.key == "dingtalk:msg:msgA1" and text.sender.user_id == "staff2001"
    picture = msg("picture", content={"downloadCode": "DL1", "pictureDownloadCode": "P"})
    (image,) = parse_message(picture, robot_code=ROBOT).events
    assert isinstance(image, ImageMessage) and image.media_id == "DL1"
    parts = [
        {"text": "外箱"},
        {"type": "picture", "downloadCode": "DL2"},
        {"text": "破损"},
        {"type": "picture", "downloadCode": "DL3"},
    ]
    events = parse_message(msg("richText", content={"richText": parts}), robot_code=ROBOT).events
    assert [type(e).__name__ for e in events] == ["ChatMessage", "ImageMessage", "ImageMessage"]
    assert isinstance(events[0], ChatMessage) and events[0].text == "外箱破损"
    assert len({e.key for e in events}) == 3
    voice = msg("audio", content={"downloadCode": "A", "duration": 2, "recognition": "/帮助"})
    (spoken,) = parse_message(voice, robot_code=ROBOT).events
    assert isinstance(spoken, ChatMessage) and spoken.text == "/帮助"


def test_groups_need_an_at_and_keep_no_session() -> None:
    group = msg("text", text={"content": "/帮助"}, conversationType="2", isInAtList=True)
    parsed = parse_message(group, robot_code=ROBOT)
    assert len(parsed.events) == 1 and parsed.session is None
    assert isinstance(parsed.events[0], ChatMessage) and parsed.events[0].chat_id == "cid1"
    quiet = {**group, "isInAtList": False}
    assert parse_message(quiet, robot_code=ROBOT).events == ()
    one = parse_message(msg("text", text={"content": "hi"}), robot_code=ROBOT)
    assert one.session == Session(
        "staff2001", "https://oapi.dingtalk.com/robot/sendBySession?session=s1", 1_800_000_000_000
    )


def test_unknown_types_are_unsupported_not_errors() -> None:
    for kind in ("video", "file", "audio", "interactiveCard", "未来的类型"):
        (event,) = parse_message(msg(kind, content={}), robot_code=ROBOT).events
        assert isinstance(event, Unsupported) and event.key == "dingtalk:msg:msgA1"


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"robotCode": "someone-else"}, 403),
        ({"msgId": ""}, 400),
        ({"senderStaffId": None}, 400),
        ({"senderStaffId": "a\nb"}, 400),
        ({"conversationType": "3"}, 400),
        ({"text": "not an object"}, 400),
        ({"text": {"content": 5}}, 400),
    ],
)
def test_malformed_messages_are_refused(change: dict[str, Any], status: int) -> None:
    with pytest.raises(CallbackRejected) as refused:
        parse_message({**msg("text", text={"content": "x"}), **change}, robot_code=ROBOT)
    assert refused.value.status == status


def click(action: str, tokens: str, **extra: Any) -> dict[str, Any]:
    private = {"actionIds": [action], "params": {"action": action, "token": tokens, **extra}}
    return {
        "outTrackId": "RC-1-s1-c7-ab",
        "userId": "manager1001",
        "content": json.dumps({"cardPrivateData": private}),
    }


def test_a_click_takes_its_own_actions_token() -> None:
    tokens = join_tokens({"approve": "tA.sig", "reject": "tR.sig"})
    action = parse_card_callback(click("reject", tokens))
    assert isinstance(action, CardAction) and action.token == "tR.sig"
    assert action.key == "dingtalk:card:RC-1-s1-c7-ab:manager1001:reject"
    assert parse_card_callback(click("transfer", tokens)).token == ""  # not on the card
    assert parse_card_callback(click("reject", tokens, reason=" 已使用 ")).reason == "已使用"
    for broken in (
        {**click("approve", tokens), "content": "{"},
        {**click("approve", tokens), "content": json.dumps({"cardPrivateData": {}})},
        {**click("approve", tokens), "userId": ""},
        click("", tokens),
    ):
        with pytest.raises(CallbackRejected):
            parse_card_callback(broken)


def test_the_param_map_is_strings_only_and_a_closed_card_has_no_buttons() -> None:
    card = Card(
        kind="approval",
        title="售后审批 RC-261123-0001",
        case_id="RC-261123-0001",
        summary="仅退款 ¥132.00，待客服组长审批",
        fields=(("申请金额", "¥132.00"), ("原因", "[点我](http://evil) *急*")),
        lines=("FEEDER-2 自动喂食器 ×1",),
        buttons=(
            Button("同意", "approve", "tA", "primary"),
            Button("驳回", "reject", "tR", "danger"),
        ),
    )
    params = dingtalk_cards.param_map(RENDERER, card)
    assert all(isinstance(v, str) for v in params.values())
    assert json.loads(params["buttons"]) == [
        {"text": "同意", "action": "approve", "color": "blue"},
        {"text": "驳回", "action": "reject", "color": "red"},
    ]
    assert params["token"] == "approve:tA,reject:tR" and params["closed"] == "false"
    assert "](http" not in params["content"] and "［点我］" in params["content"]
    closed = Card.from_dict(
        {**card.to_dict(), "status": "已由 王组长 于 11-23 10:02 同意", "closed": True}
    )
    shut = dingtalk_cards.param_map(RENDERER, closed)
    assert shut["closed"] == "true" and json.loads(shut["buttons"]) == [] and shut["token"] == ""
    assert shut["title"].endswith("· 已同意") and shut["summary"].startswith("已由 王组长")


def _sign(secret: str, ts: str) -> str:
    mac = hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def test_the_robot_signature_and_its_window() -> None:
    now = 1_764_000_000.0
    ts = str(int(now * 1000))
    verify({"timestamp": ts, "sign": _sign("s", ts)}, "s", now=lambda: now, window=3600)
    with pytest.raises(CallbackRejected, match="mismatch"):
        verify({"timestamp": ts, "sign": _sign("t", ts)}, "s", now=lambda: now, window=3600)
    with pytest.raises(CallbackRejected, match="replay window"):
        verify({"timestamp": ts, "sign": _sign("s", ts)}, "s", now=lambda: now + 3601, window=3600)
    url = signed_webhook("https://oapi.dingtalk.com", "tok", "SECx", 1_700_000_000_000)
    assert url.startswith("https://oapi.dingtalk.com/robot/send?access_token=tok&timestamp=")
    assert url.split("sign=")[1] == quote(_sign("SECx", "1700000000000"), safe="")


def test_only_dingtalks_own_live_session_webhooks_are_used() -> None:
    now = [1_000_000]
    sessions = Sessions("https://oapi.dingtalk.com", lambda: now[0])
    sessions.remember(Session("u1", "https://evil.example/robot/sendBySession?s=1", 9_000_000))
    sessions.remember(Session("u2", "https://oapi.dingtalk.com/other?s=1", 9_000_000))
    sessions.remember(
        Session("u3", "https://oapi.dingtalk.com/robot/sendBySession?s=1", 1_050_000)
    )
    assert sessions.url_for("u1") is None and sessions.url_for("u2") is None
    assert sessions.url_for("u3") is None  # within a minute of expiring: not used
    sessions.remember(
        Session("u4", "https://oapi.dingtalk.com/robot/sendBySession?s=2", 9_000_000)
    )
    assert (
        sessions.url_for(
            "u4",
        )
        is not None
    )
    now[0] = 9_000_000
    assert sessions.url_for("u4") is None


def test_the_shipped_card_builder_template_declares_every_variable_we_send() -> None:
    shipped = json.loads((RENDERER_ROOT / "dingtalk" / "returnhub-card.json").read_text())
    declared = {v["name"] for v in shipped["variables"]}
    for kind in ("approval", "inspection", "risk", "notice"):
        card = Card(kind=kind, title="t", case_id="RC-261123-0001")
        assert set(dingtalk_cards.param_map(RENDERER, card)) == declared, kind
    button = shipped["layout"][-1]["item"]["onClick"]["params"]
    assert button == {"action": "${item.action}", "token": "${token}"}  # CONTRACT.md
