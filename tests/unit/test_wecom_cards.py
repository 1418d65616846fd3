"""WeCom cards, callback parsing and signing, without a server.

Cards are rendered through the real templates and parsed back with json.loads
(CardRenderer does that); the checks are WeCom's limits and what each card must
show, open and closed.
"""

from __future__ import annotations

import json
import re

import pytest
from wechatpy.utils import WeChatSigner

from bot.cards import Button, Card, CardRenderer, send_id
from bot.events import CardAction, ChatMessage
from bot.outbox import PermanentError
from bot.platforms import wecom_cards
from bot.platforms.inbound import CallbackRejected
from bot.platforms.wecom_crypto import sign
from bot.platforms.wecom_events import ImageMessage, parse, split_ref
from bot.platforms.wecom_robot import CUT_NOTE, fit_markdown
from bot.settings import templates_dir
from tests.fakes.wecom_callbacks import CallbackSigner

RENDERER = CardRenderer(templates_dir())
FIELDS = (
    ("订单号", "SO20261101009"),
    ("渠道", "generic / main-store"),
    ("类型", "退货退款"),
    ("申请金额", "¥6,800.00"),
    ("原因", "质量问题：开关失灵，喂食器完全不出粮，客服已远程排查过三次仍未解决"),
    ("买家", "喵星人"),
    ("档位", "director"),
    ("审批", "第 1/2 步：运营总监 → 财务总监"),
    ("处理时限", "11-23 14:00"),
)


def card(**changes: object) -> Card:
    base = Card(
        kind="approval",
        title="售后审批 · RC-261123-0001",
        case_id="RC-261123-0001",
        summary="退货退款 ¥6,800.00，待运营总监审批",
        fields=FIELDS,
        lines=("自动喂食器（FEEDER-2）×2  ¥6,800.00",),
        history=("近一年订单 12 笔，累计消费 ¥9,120.00", "历史售后 3 次", "客户标记：无"),
        buttons=(
            Button("同意", "approve", "tok.approve", "primary"),
            Button("驳回", "reject", "tok.reject", "danger"),
            Button("转交", "transfer", "tok.transfer"),
        ),
    )
    return Card(**{**base.to_dict(), "buttons": base.buttons, "fields": base.fields, **changes})


def render(c: Card, task_id: str = "rh-1-0a1b2c3d") -> dict[str, object]:
    return wecom_cards.render(RENDERER, c, agent_id=1000002, task_id=task_id)


def test_an_approval_card_fits_wecom_limits_and_loses_nothing() -> None:
    tc = render(card())
    assert tc["card_type"] == "button_interaction" and tc["task_id"] == "rh-1-0a1b2c3d"
    items = tc["horizontal_content_list"]
    assert isinstance(items, list) and len(items) == 6
    names = [i["keyname"] for i in items]
    assert {"申请金额", "处理时限", "订单号", "原因"} <= set(names)
    assert all(len(i["keyname"]) <= 5 and len(i["value"]) <= 26 for i in items)
    sub = tc["sub_title_text"]
    assert isinstance(sub, str) and len(sub) <= 160
    assert "买家：喵星人" in sub and "审批：" in sub and "FEEDER-2" in sub  # overflow, SKUs
    assert tc["quote_area"] == {
        "type": 0,
        "title": "客户历史",
        "quote_text": "近一年订单 12 笔，累计消费 ¥9,120.00\n历史售后 3 次\n客户标记：无",
    }
    assert [b["key"] for b in tc["button_list"]] == ["tok.approve", "tok.reject", "tok.transfer"]
    assert "replace_text" not in tc


def test_a_closed_card_says_what_happened_and_no_longer_asks() -> None:
    tc = render(card(closed=True, status="已由 李总监 于 11-23 10:02 同意"))
    assert tc["main_title"] == {
        "title": "售后审批 · RC-261123-0001 · 已同意",
        "desc": "已由 李总监 于 11-23 10:02 同意",
    }
    assert tc["replace_text"] == "已同意"
    assert "待" not in json.dumps(tc, ensure_ascii=False)  # the open card's "待运营总监审批"
    assert "待运营总监审批" in json.dumps(render(card()), ensure_ascii=False)
    reason = "凭证不足，请补充开箱视频和外包装照片，并说明签收时外包装是否完好"
    rejected = render(card(closed=True, status=f"已由 李总监 于 11-23 10:02 驳回：{reason}"))
    assert rejected["main_title"]["title"].endswith(" · 已驳回")
    assert rejected["main_title"]["desc"].endswith("…")  # the status is longer than 44
    assert (
        rejected["sub_title_text"].split("\n")[0] == f"已由 李总监 于 11-23 10:02 驳回：{reason}"
    )
    assert rejected["replace_text"] == "已驳回"


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("已由 王组长 于 11-21 14:03 同意", "已同意"),
        ("已由 王组长 于 11-21 14:03 驳回：商品已使用：同意换货不同意退款", "已驳回"),
        ("已由 王组长 于 11-21 14:03 转交给 刘组长", "已转交"),
        ("已由 小周 于 11-21 14:03 验货：破损", "已验货：破损"),
        ("已由 陈风控 于 11-21 14:03 全额退款", "已全额退款"),
        ("已由 陈风控 于 11-21 14:03 驳回退款", "已驳回退款"),
        ("已关闭：买家撤销申请（同意）", "已关闭"),
        ("", "已处理"),
    ],
)
def test_the_outcome_is_read_from_the_status_line(status: str, outcome: str) -> None:
    assert card(closed=True, status=status).outcome == outcome


def test_sku_lines_cut_for_length_are_counted_and_point_to_the_full_list() -> None:
    skus = tuple(f"猫砂盆 {i} 号（LITTER-{i}）×1  ¥{i}9.00" for i in range(12))
    tc = render(card(lines=skus))
    sub = tc["sub_title_text"]
    assert len(sub) <= wecom_cards.SUB_TITLE_MAX
    *shown, note = sub.split("\n")
    listed = [line for line in shown if "LITTER-" in line]
    assert listed == list(skus[: len(listed)]) and listed  # whole lines, in order
    assert note == f"…另有 {12 - len(listed)} 个商品，发送 /查单 RC-261123-0001 查看全部"
    assert "买家：喵星人" in sub  # the overflow fields come first and stay
    one = render(card(lines=("超长商品名" * 40 + "（SKU-1）×1",)))["sub_title_text"]
    assert len(one) <= wecom_cards.SUB_TITLE_MAX and one.endswith("…")  # cut, and marked
    assert "另有" not in render(card())["sub_title_text"]  # nothing cut, nothing said


def test_operator_text_cannot_break_the_json() -> None:
    nasty = 'x"}, "card_type": "text_notice", "y": {"z": "\n\\'
    tc = render(card(title=nasty, summary=nasty, fields=(("原因", nasty),)))
    assert tc["card_type"] == "button_interaction"
    assert tc["main_title"]["title"] == wecom_cards.clip(nasty, 36)
    assert json.loads(json.dumps(tc)) == tc


def test_limits_on_buttons_titles_keys_and_task_ids() -> None:
    many = tuple(Button(f"按钮{i}", "ok", f"t{i}") for i in range(8))
    tc = render(card(buttons=many, title="标" * 80))
    assert len(tc["button_list"]) == 6
    assert len(tc["main_title"]["title"]) == 36 and tc["main_title"]["title"].endswith("…")
    with pytest.raises(PermanentError):
        render(card(buttons=(Button("同意", "approve", "k" * 1025),)))
    with pytest.raises(PermanentError):
        render(card(), task_id="rh 1")


def test_the_task_id_is_the_same_for_every_attempt_of_one_send() -> None:
    sent = card(extra={"step": "2", "send": "9f3a1b2c"})
    task_id = send_id(sent, 123, outbox_id=7)
    assert task_id == "RC-261123-0001-s2-c123-9f3a1b2c"
    assert send_id(sent, 123, outbox_id=8) == task_id  # a retry: same card
    assert wecom_cards.card_of(task_id) == 123
    again = card(extra={"step": "2", "send": "0c1d2e3f"})  # the same step sent once more
    assert send_id(again, 123, outbox_id=7) != task_id
    odd = card(case_id="RC/26 11:23#" + "长" * 200, extra={"send": "ab"})
    weird = send_id(odd, 5, outbox_id=1)
    assert len(weird.encode()) <= 128 and re.fullmatch(r"[0-9A-Za-z_\-@]+", weird)
    assert render(odd, task_id=weird)["task_id"] == weird  # WeCom's rule holds
    # A row queued before sends carried a nonce: stable per outbox row all the same.
    assert send_id(card(), 5, outbox_id=41) == "RC-261123-0001-s0-c5-o41"


def test_a_notice_without_buttons_is_a_text_notice() -> None:
    tc = wecom_cards.render(
        RENDERER, card(kind="notice", buttons=()), agent_id=1, task_id="rh-2-x", link=""
    )
    assert tc["card_type"] == "text_notice" and tc["card_action"]["type"] == 1


SIGNER = CallbackSigner(lambda: 1_795_000_000)


def test_parse_text_image_and_card_events() -> None:
    text = parse(SIGNER.text("wangzuzhang", "/查单 RC-261123-0001", msg_id=9001))
    assert text == ChatMessage(
        key="wecom:msg:9001", sender=text.sender, text="/查单 RC-261123-0001"
    )
    image = parse(SIGNER.image("xiaozhou", "MEDIA_9", msg_id=9002))
    assert isinstance(image, ImageMessage) and image.media_id == "MEDIA_9"
    event = parse(
        SIGNER.card_event(
            "lizongjian",
            "tok.reject",
            "rh-5-aa",
            "CODE5",
            created=1_795_000_100,
            selected={"reason": ["used", "bogus"], "target": ["liuzuzhang", "bad user!"]},
        )
    )
    assert isinstance(event, CardAction)
    assert event.key == "wecom:card:lizongjian:1795000100:tok.reject:rh-5-aa"
    assert (event.token, event.reason, event.target) == (
        "tok.reject",
        "商品已使用，影响二次销售",
        "liuzuzhang",
    )
    assert split_ref(event.platform_ref) == ("rh-5-aa", "CODE5")


def test_a_long_card_event_key_still_fits_the_inbox() -> None:
    event = parse(SIGNER.card_event("wangzuzhang", "k" * 1000, "rh-1-a", "C", created=1))
    assert isinstance(event, CardAction) and len(event.key) == 255
    other = parse(SIGNER.card_event("wangzuzhang", "k" * 999 + "j", "rh-1-a", "C", created=1))
    assert isinstance(other, CardAction) and other.key != event.key


@pytest.mark.parametrize(
    "inner",
    [
        "<xml><MsgType>text</MsgType><FromUserName>u1</FromUserName></xml>",  # no MsgId
        "<xml><MsgType>text</MsgType><FromUserName>u\t1</FromUserName><MsgId>1</MsgId></xml>",
        "<xml><MsgType>image</MsgType><FromUserName>u1</FromUserName><MsgId>1</MsgId></xml>",
        "<xml><MsgType>text</MsgType><FromUserName><a>b</a></FromUserName></xml>",
    ],
)
def test_malformed_inner_messages_are_refused(inner: str) -> None:
    with pytest.raises(CallbackRejected) as caught:
        parse(inner)
    assert caught.value.status == 400


def test_our_signature_matches_wechatpys() -> None:
    signer = WeChatSigner()
    signer.add_data("token", "1795000000", "nonce1", "ENCRYPTED+/=")
    assert sign("token", "1795000000", "nonce1", "ENCRYPTED+/=") == signer.signature


def test_robot_markdown_is_cut_at_a_line_end_within_4096_bytes() -> None:
    assert fit_markdown("**标题**\n> 订单号：SO1") == "**标题**\n> 订单号：SO1"
    many = "**标题**\n" + "".join(
        f'> 商品{i}：<font color="info">¥{i}</font>\n' for i in range(300)
    )
    cut = fit_markdown(many)
    assert len(cut.encode()) <= 4096 and cut.endswith(CUT_NOTE)
    assert cut.removesuffix(CUT_NOTE).endswith("</font>")  # no tag split in half
    one_line = fit_markdown("长" * 3000)  # a single line over the limit: cut by bytes
    assert len(one_line.encode()) <= 4096 and one_line.startswith("长长")
