"""The neutral Card as a WeCom `template_card` (button_interaction), within WeCom's limits.

The layout lives in `templates/cards/wecom/<kind>.json.j2`; this module prepares
what the templates show, already cut to size, because WeCom's limits are per
field: at most 6 `horizontal_content_list` items and 6 buttons, titles of a few
dozen characters (longer text is cut by the client, or the call is refused).

- Fields beyond six go into `sub_title_text` as "名称：值" lines, with the SKU
  lines; the SLA due time is kept among the six. What the sub-title's length
  cannot hold is never dropped unmarked: a last line counts the SKU lines left
  out and names `/查单 RC-…`, which lists them all.
- Customer history (director tier) goes into `quote_area`: a separate grey block
  with its own title, so the history reads as a report beside the case, not as
  part of it, and it does not eat into the sub-title's length.
- A closed card says what happened everywhere: the title ends with the outcome
  ("· 已同意"), the status line is the main description (and the first sub-title
  line when longer), the open card's prompt ("待…审批") is gone, and
  `replace_text` (the outcome) turns the buttons into one grey, unclickable button.
"""

from __future__ import annotations

import re
from typing import Any

from bot.cards import OUTCOME_FALLBACK, Card, CardRenderer, clean_card
from bot.outbox import PermanentError

NAME = "wecom"
MAX_FIELDS = 6
MAX_BUTTONS = 6
TITLE_MAX = 36
DESC_MAX = 44
SUB_TITLE_MAX = 112  # WeCom: 建议不超过112个字; the client cuts the rest unmarked
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
_CARD_PART = re.compile(r"-c(\d+)-")


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, with "…" marking a cut."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def card_of(task_id: str) -> int | None:
    """The card record id a `TaskId` names (for logs; the button token decides)."""
    found = _CARD_PART.search(task_id)
    return int(found.group(1)) if found else None


def _split_fields(card: Card) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    fields = list(card.fields)
    if len(fields) <= MAX_FIELDS:
        return fields, []
    rank = {label: i for i, label in enumerate(PRIORITY)}
    chosen = sorted(fields, key=lambda f: rank.get(f[0], len(PRIORITY)))[:MAX_FIELDS]
    keep = [f for f in fields if f in chosen][:MAX_FIELDS]
    return keep, [f for f in fields if f not in keep]


def _more(count: int, case_id: str) -> str:
    return f"…另有 {count} 个商品，发送 /查单 {case_id} 查看全部"


def fit_sub_title(head: list[str], items: list[str], case_id: str) -> str:
    """`head` lines, then as many SKU lines as fit in SUB_TITLE_MAX; the ones that do
    not fit are counted in a last line that says where the full list is (/查单)."""
    reserve = len(_more(len(items), case_id)) + 1 if items else 0
    text = clip("\n".join(head), SUB_TITLE_MAX - reserve) if head else ""
    for i, line in enumerate(items):
        after = len(items) - i - 1
        tail = "\n" + _more(after, case_id) if after else ""
        joined = f"{text}\n{line}" if text else line
        if len(joined) + len(tail) <= SUB_TITLE_MAX:
            text = joined
            continue
        room = SUB_TITLE_MAX - len(text) - (1 if text else 0) - len(tail)
        if i == 0 and room >= 8:  # the first item at least in part, its cut marked
            return (f"{text}\n" if text else "") + clip(line, room) + tail
        return (f"{text}\n" if text else "") + _more(len(items) - i, case_id)
    return text


def _title(card: Card) -> str:
    if not card.closed:
        return clip(card.title, TITLE_MAX)
    suffix = f" · {card.outcome}"
    return clip(card.title, max(TITLE_MAX - len(suffix), 1)) + suffix


def view(card: Card) -> dict[str, Any]:
    """What the template shows, every string already within WeCom's limits.

    Open, the description is the card's prompt (`summary`); closed, it is the
    status line, the title ends with the outcome and the prompt is gone, so a
    decided card never still asks for a decision.
    """
    card = clean_card(card)  # one line per value, before lengths are counted and joined
    shown, overflow = _split_fields(card)
    status = card.status or OUTCOME_FALLBACK
    desc = status if card.closed else card.summary
    head = [status] if card.closed and len(status) > DESC_MAX else []
    head += [f"{label}：{value}" for label, value in overflow]
    buttons = list(card.buttons)[:MAX_BUTTONS]
    for button in buttons:
        if len(button.token.encode()) > KEY_BYTES:
            raise PermanentError(f"button key for {button.action} exceeds {KEY_BYTES} bytes")
    outcome = card.outcome
    return {
        "source": SOURCE,
        "title": _title(card),
        "desc": clip(desc, DESC_MAX),
        "sub_title": fit_sub_title(head, list(card.lines), card.case_id),
        "fields": [(clip(k, KEYNAME_MAX), clip(v, VALUE_MAX)) for k, v in shown],
        "quote_title": "客户历史",
        "quote_text": clip("\n".join(card.history), QUOTE_MAX),
        "buttons": [
            {"text": clip(b.label, BUTTON_MAX), "style": STYLES.get(b.style, 1), "key": b.token}
            for b in buttons
        ],
        "closed": card.closed,
        "replace_text": outcome if len(outcome) <= REPLACE_MAX else OUTCOME_FALLBACK,
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
