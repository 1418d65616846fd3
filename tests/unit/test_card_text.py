"""What every platform's card JSON says, parsed back from the real templates:
control characters from buyer text never reach it, and a closed card reads as closed.

WeCom refuses text holding `\\u00XX`-escaped control characters (errcode 40033);
JSON can write a C0/C1 control no other way, so none may be left in any value.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, cast

import pytest

from bot.cards import Button, Card, CardRenderer, clean_text, defang
from bot.platforms import wecom_cards
from bot.platforms.base import chat_performers
from bot.settings import templates_dir
from storage.db import Database
from storage.models import OutboxMessage

RENDERER = CardRenderer(templates_dir())
# What a marketplace may hand us: NUL, BEL, ESC sequences, DEL, C1 (NEL, CSI), CR/LF, tab.
DIRTY = "开关\x00失灵\x07，\x1b[31m不出粮\x7f\x85\x9b\r\n第二行\t完"
CONTROLS = {chr(c) for c in (*range(0x00, 0x20), *range(0x7F, 0xA0))}


def dirty_card(**changes: Any) -> Card:
    base = Card(
        kind="approval",
        title="售后审批 · RC-261123-0002",
        case_id="RC-261123-0002",
        summary="仅退款 ¥132.00，待客服组长审批",
        fields=(
            ("原因", f"质量问题：{DIRTY}"),
            ("买家", "喵\x1b星\x00人"),
            ("申请金额", "¥132.00"),
        ),
        lines=(f"自动喂食器{DIRTY}（FEEDER-2）×1  ¥132.00",),
        history=(f"近一年订单 3 笔{DIRTY}",),
        buttons=(Button("同意", "approve", "tok.a", "primary"),),
    )
    return Card(**{**base.to_dict(), "fields": base.fields, "buttons": base.buttons, **changes})


def rendered(platform: str, card: Card) -> dict[str, Any]:
    if platform == "wecom":
        return wecom_cards.render(RENDERER, card, agent_id=1, task_id="RC-1-s1-c1-ab")
    if platform == "wecom-robot":
        return RENDERER.render(platform, defang(card))
    return RENDERER.render(platform, card)


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


@pytest.mark.parametrize("platform", ["wecom", "wecom-robot", "console"])
@pytest.mark.parametrize("closed", [False, True])
def test_no_control_character_reaches_any_platforms_card(platform: str, closed: bool) -> None:
    card = dirty_card(closed=closed, status=f"已由 王组长 于 11-23 10:02 驳回：{DIRTY}")
    out = rendered(platform, card)
    body = json.dumps(out, ensure_ascii=False)  # what the client sends
    assert "\\u00" not in body
    values = strings(out)
    assert not CONTROLS & {ch for v in values for ch in v} - {"\n"}
    assert any("开关失灵，[31m不出粮" in v or "开关失灵，［31m不出粮" in v for v in values)


def test_a_newline_survives_only_where_a_field_is_multi_line() -> None:
    tc = rendered("wecom", dirty_card())
    cleaned = "开关失灵，[31m不出粮 第二行 完"
    assert tc["horizontal_content_list"][0] == {"keyname": "原因", "value": f"质量问题：{cleaned}"}
    # The sub-title is multi-line by design, one line per entry: an item name's own
    # line break does not split its line.
    assert tc["sub_title_text"] == f"自动喂食器{cleaned}（FEEDER-2）×1  ¥132.00"
    two = rendered("wecom", dirty_card(lines=("a\nb", "c")))["sub_title_text"]
    assert two == "a b\nc"
    assert tc["quote_area"]["quote_text"] == f"近一年订单 3 笔{cleaned}"
    robot = rendered("wecom-robot", dirty_card())["markdown"]["content"]
    # Buyer text cannot start a markdown line of its own: every line is ours.
    assert all(line.startswith(("**", "> ", "仅退款")) for line in robot.splitlines() if line), (
        robot
    )
    console = rendered("console", dirty_card())
    assert console["fields"][1]["value"] == "喵星人"
    assert all("\n" not in line for line in console["lines"])


def test_clean_text_rules() -> None:
    assert clean_text("a\r\nb\tc\x00d\u2028e") == "a b cd e"
    assert clean_text("a\r\nb\tc\x00d\x85e", multiline=True) == "a\nb cd\ne"
    assert clean_text("普通文本，无控制字符") == "普通文本，无控制字符"


@pytest.mark.parametrize("platform", ["console", "wecom-robot"])
def test_a_closed_card_drops_its_prompt_and_names_the_outcome(platform: str) -> None:
    status = "已由 王组长 于 11-23 10:02 同意"
    out = rendered(platform, dirty_card(closed=True, status=status))
    text = json.dumps(out, ensure_ascii=False)
    assert "待客服组长审批" not in text and status in text
    assert "待客服组长审批" in json.dumps(rendered(platform, dirty_card()), ensure_ascii=False)
    if platform == "console":
        assert out["title"] == "售后审批 · RC-261123-0002 · 已同意"
        assert (out["summary"], out["outcome"], out["closed"]) == ("", "已同意", True)
    else:
        assert out["markdown"]["content"].startswith("**售后审批 · RC-261123-0002 · 已同意**\n")


class Recorder:
    """A platform that keeps what it was asked to send."""

    name = "rec"

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def send_card(self, recipient: str, card: Card, *, card_id: int, outbox_id: int) -> str:
        raise AssertionError("no cards here")

    async def update_card(
        self, recipient: str, platform_ref: str, card: Card, *, card_id: int
    ) -> str | None:
        raise AssertionError("no cards here")

    async def send_text(
        self, recipient: str, text: str, *, outbox_id: int, retry: bool = False
    ) -> None:
        self.texts.append(text)


async def test_chat_texts_lose_control_characters_too() -> None:
    """A /查单 reply quotes the buyer's reason: the same rule as cards, lines kept."""
    platform = Recorder()
    send = chat_performers({"rec": platform}, db=cast(Database, None))["text.send"]
    text = f"【RC-1】待审批\n原因：{DIRTY}"
    await send(OutboxMessage(id=1, kind="text.send", destination="rec:u", payload={"text": text}))
    assert platform.texts == [clean_text(text, multiline=True)]
    assert platform.texts[0].startswith("【RC-1】待审批\n原因：开关失灵，[31m不出粮\n")


def test_to_dict_is_what_asdict_gives_and_round_trips() -> None:
    """`Card.to_dict` is written out for speed; it must stay what `asdict` made."""
    card = dirty_card(
        status="已由 王组长 于 11-21 14:03 同意",
        closed=True,
        extra={"send": "ab12cd34", "assignees": "王组长"},
        buttons=(Button("同意", "approve", "tok.a", "primary"), Button("驳回", "reject", "t.b")),
    )
    assert card.to_dict() == dataclasses.asdict(card)
    assert Card.from_dict(json.loads(json.dumps(card.to_dict()))) == card
