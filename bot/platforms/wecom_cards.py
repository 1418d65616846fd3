"""The neutral Card as a WeCom `template_card` (button_interaction), within WeCom's limits.

The layout lives in `templates/cards/wecom/<kind>.json.j2`; this module prepares
what the templates show, already cut to size, because WeCom's limits are per
field: at most 6 `horizontal_content_list` items and 6 buttons, titles of a few
dozen characters (longer text is cut by the client, or the call is refused).

- Fields beyond six go into `sub_title_text` as "名称：值" lines, with the SKU
  lines, so nothing is lost; the SLA due time is kept among the six.
- Customer history (director tier) goes into `quote_area`: a separate grey block
  with its own title, so the history reads as a report beside the case, not as
  part of it, and it does not eat into the sub-title's length.
- A closed card shows its status line as the main description and sets
  `replace_text`, which turns the buttons into one grey, unclickable button.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from bot.cards import Card, CardRenderer
from bot.outbox import PermanentError

NAME = "wecom"
MAX_FIELDS = 6
MAX_BUTTONS = 6
TITLE_MAX = 36
DESC_MAX = 44
SUB_TITLE_MAX = 160
KEYNAME_MAX = 5
VALUE_MAX = 26
QUOTE_MAX = 160
BUTTON_MAX = 10
REPLACE_MAX = 12
SOURCE = "售后机器人"
KEY_BYTES = 1024
TASK_ID_BYTES = 128
# Keep these among the six horizontal items when a card has more fields.
PRIORITY = ("申请金额", "处理时限", "订单号", "原因", "验货结果", "退货运单", "已审批")
# style 1-4; the colours (1 blue, 2 red, 3 green, 4 grey) are UNCONFIRMED.
STYLES = {"primary": 1, "danger": 2, "default": 4}
_TASK_ID = re.compile(r"[0-9A-Za-z_\-@]{1,128}")


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, with "…" marking a cut."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def task_id_for(card_id: int) -> str:
    """`rh-<card_id>-<random>`: unique per send, so a reset database or a second
    deployment on the same app never collides with an old task id."""
    return f"rh-{card_id}-{secrets.token_hex(4)}"


def card_of(task_id: str) -> int | None:
    """The card record id a `TaskId` names (for logs; the button token decides)."""
    parts = task_id.split("-")
    if len(parts) == 3 and parts[0] == "rh" and parts[1].isdigit():
        return int(parts[1])
    return None


def _split_fields(card: Card) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    fields = list(card.fields)
    if len(fields) <= MAX_FIELDS:
        return fields, []
    rank = {label: i for i, label in enumerate(PRIORITY)}
    chosen = sorted(fields, key=lambda f: rank.get(f[0], len(PRIORITY)))[:MAX_FIELDS]
    keep = [f for f in fields if f in chosen][:MAX_FIELDS]
    return keep, [f for f in fields if f not in keep]


def view(card: Card) -> dict[str, Any]:
    """What the template shows, every string already within WeCom's limits."""
    shown, overflow = _split_fields(card)
    sub_lines = [f"{label}：{value}" for label, value in overflow] + list(card.lines)
    if card.closed and card.summary:
        sub_lines.insert(0, card.summary)
    buttons = list(card.buttons)[:MAX_BUTTONS]
    for button in buttons:
        if len(button.token.encode()) > KEY_BYTES:
            raise PermanentError(f"button key for {button.action} exceeds {KEY_BYTES} bytes")
    status = card.status or "已处理"
    return {
        "source": SOURCE,
        "title": clip(card.title, TITLE_MAX),
        "desc": clip(status if card.closed else card.summary, DESC_MAX),
        "sub_title": clip("\n".join(sub_lines), SUB_TITLE_MAX),
        "fields": [(clip(k, KEYNAME_MAX), clip(v, VALUE_MAX)) for k, v in shown],
        "quote_title": "客户历史",
        "quote_text": clip("\n".join(card.history), QUOTE_MAX),
        "buttons": [
            {"text": clip(b.label, BUTTON_MAX), "style": STYLES.get(b.style, 1), "key": b.token}
            for b in buttons
        ],
        "closed": card.closed,
        "replace_text": clip(status if len(status) <= REPLACE_MAX else "已处理", REPLACE_MAX),
    }


def render(
    renderer: CardRenderer, card: Card, *, agent_id: int, task_id: str, link: str = ""
) -> dict[str, Any]:
    """The `template_card` object for message/send and update_template_card."""
    if len(task_id.encode()) > TASK_ID_BYTES or not _TASK_ID.fullmatch(task_id):
        raise PermanentError("task_id must be 1-128 of [0-9A-Za-z_-@]")
    return renderer.render(
        NAME, card, agent_id=agent_id, task_id=task_id, view=view(card), link=link
    )
