"""The neutral card model and its rendering to each platform's JSON.

Handlers build a `Card` (what to show); each platform's template under
`templates/cards/<platform>/<kind>.json.j2` decides how. Every value goes
through `|tojson`, so operator text can never break the JSON, and that filter
is the one place where control characters are removed: buyer text (reasons,
nicknames, item names) may carry C0/C1 controls, which JSON can only write as
`\\u00XX` escapes and WeCom refuses with errcode 40033. Only a newline survives,
and only in the fields that are multi-line by nature (`|tojson(multiline=True)`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

# C0 (but tab and newline, replaced after), DEL and C1.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_BREAKS = re.compile(r"\r\n|[\r\v\f\x85\u2028\u2029]")
_SPACES = re.compile(r"[\t\n]+")
# "已由 王组长 于 11-21 14:03 驳回：原因" -> "驳回：原因"; see Card.outcome.
_DECIDED = re.compile(r"已由 .+? 于 \d\d-\d\d \d\d:\d\d (.+)", re.DOTALL)
OUTCOME_FALLBACK = "已处理"
# Card.extra keys every platform may read.
SEND_NONCE = "send"  # drawn once per send (handlers/notify.py), stable across its retries
ASSIGNEES = "assignees"  # a role-chat notice: the names of who got the card itself
_NOT_ID_CHAR = re.compile(r"[^0-9A-Za-z_\-@]")


def clean_text(text: str, *, multiline: bool = False) -> str:
    """`text` without control characters: a tab or (single-line) a line break becomes
    a space; in a multi-line field every line break becomes "\\n"."""
    text = _CONTROLS.sub("", _BREAKS.sub("\n", text))
    return text.replace("\t", " ") if multiline else _SPACES.sub(" ", text)


def clean(value: Any, *, multiline: bool = False) -> Any:
    """`clean_text` applied to every string inside `value` (lists, tuples, dicts)."""
    if isinstance(value, str):
        return clean_text(value, multiline=multiline)
    if isinstance(value, dict):
        return {clean(k): clean(v, multiline=multiline) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v, multiline=multiline) for v in value]
    return value


def tojson(value: Any, multiline: bool = False) -> str:
    """The templates' `|tojson`: cleaned, then JSON (non-ASCII kept readable)."""
    return json.dumps(clean(value, multiline=multiline), ensure_ascii=False)


def oneline(value: Any) -> str:
    """`|oneline`: a value spliced into a composed text (robot markdown) stays one line."""
    return clean_text(str(value))


@dataclass(frozen=True, slots=True)
class Button:
    label: str
    action: str  # approve | reject | transfer | ok | damaged | missing_parts | wrong_item | empty
    token: str  # opaque, signed; verified by the server on click
    style: str = "default"  # default | primary | danger


@dataclass(frozen=True, slots=True)
class Card:
    """What a card shows. `summary` is the open card's prompt ("…，待客服组长审批"):
    a closed card shows its `status` instead, and `outcome` in its title."""

    kind: str  # approval | inspection | notice | risk
    title: str
    case_id: str
    summary: str = ""
    fields: tuple[tuple[str, str], ...] = ()
    lines: tuple[str, ...] = ()  # line items, one per SKU
    history: tuple[str, ...] = ()  # customer purchase/return history (director tier)
    buttons: tuple[Button, ...] = ()
    status: str = ""  # e.g. "已由 王组长 于 11-21 14:03 同意"
    closed: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def outcome(self) -> str:
        """The decision in a few characters, for a closed card's title and greyed button.

        Read from the status lines the handlers write: "已由 <谁> 于 <时间> <做了什么>
        [：<详情>]" gives "已同意", "已驳回", "已转交", "已验货：破损", "已全额退款"…;
        "已关闭：<原因>" gives "已关闭"; anything else "已处理".
        """
        if self.status.startswith("已关闭"):
            return "已关闭"
        decided = _DECIDED.fullmatch(self.status)
        if decided is None:
            return OUTCOME_FALLBACK
        action, _, detail = decided.group(1).partition("：")
        if action.startswith("转交"):
            return "已转交"
        if action == "验货" and detail:
            return f"已验货：{detail}"
        return f"已{action}"

    def to_dict(self) -> dict[str, Any]:
        """What `dataclasses.asdict` gives (tests/unit/test_card_text.py checks it), written
        out: asdict deep-copies every leaf, which was most of the cost of building a card
        at intake (0.17 ms of 0.26 ms a card under cProfile)."""
        return {
            "kind": self.kind,
            "title": self.title,
            "case_id": self.case_id,
            "summary": self.summary,
            "fields": tuple(tuple(f) for f in self.fields),
            "lines": tuple(self.lines),
            "history": tuple(self.history),
            "buttons": tuple(
                {"label": b.label, "action": b.action, "token": b.token, "style": b.style}
                for b in self.buttons
            ),
            "status": self.status,
            "closed": self.closed,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Card:
        return cls(
            kind=data["kind"],
            title=data["title"],
            case_id=data["case_id"],
            summary=data.get("summary", ""),
            fields=tuple((str(a), str(b)) for a, b in data.get("fields", ())),
            lines=tuple(data.get("lines", ())),
            history=tuple(data.get("history", ())),
            buttons=tuple(Button(**b) for b in data.get("buttons", ())),
            status=data.get("status", ""),
            closed=bool(data.get("closed", False)),
            extra=dict(data.get("extra", {})),
        )


def send_id(card: Card, card_id: int, outbox_id: int) -> str:
    """The platform's id for one send of a card: "<case>-s<step>-c<card record>-<nonce>".

    WeCom's `task_id`, DingTalk's `outTrackId`. The same for every attempt of one
    send, so a send retried after a timeout is the same card to the platform (WeCom
    refuses a task_id it has seen, DingTalk an outTrackId: the clients read that as
    delivered) and the copy the member got can still be updated. The card record
    names the recipient; the nonce (`extra["send"]`, drawn once when the card is
    queued) keeps a reset database or a second deployment on the same app from
    reusing an old id. Digits, letters and "_-@" only (WeCom's alphabet), at most
    128 bytes; other characters of a case id become "_".
    """
    case = _NOT_ID_CHAR.sub("_", card.case_id)[:48] or "case"
    step = _NOT_ID_CHAR.sub("_", card.extra.get("step", "0"))[:8]
    send = _NOT_ID_CHAR.sub("_", card.extra.get(SEND_NONCE, ""))[:32] or f"o{outbox_id}"
    return f"{case}-s{step}-c{card_id}-{send}"


_DEFANG = str.maketrans({"[": "［", "]": "］", "<": "＜", ">": "＞", "`": "'", "*": "＊"})


def defang(card: Card) -> Card:
    """`card` fit for markdown (robots, DingTalk cards): customer text must not create
    links, font tags or emphasis, so its brackets and markers become full-width."""

    def clean(value: str) -> str:
        return value.translate(_DEFANG)

    return dataclasses.replace(
        card,
        title=clean(card.title),
        summary=clean(card.summary),
        status=clean(card.status),
        fields=tuple((clean(a), clean(b)) for a, b in card.fields),
        lines=tuple(clean(x) for x in card.lines),
        history=tuple(clean(x) for x in card.history),
    )


def clean_card(card: Card) -> Card:
    """`card` with every string one clean line, for code that composes its own text
    from a card's values before the templates see them (bot/platforms/wecom_cards.py)."""
    return Card.from_dict(clean(card.to_dict()))


class CardRenderer:
    """Card -> platform JSON through jinja2 templates (StrictUndefined: a typo fails loudly)."""

    def __init__(self, templates: Path) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(templates)),
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # noqa: S701 - JSON output; every value is |tojson-escaped
            keep_trailing_newline=True,
        )
        self.env.filters["tojson"] = tojson
        self.env.filters["oneline"] = oneline

    def render(self, platform: str, card: Card, **context: Any) -> dict[str, Any]:
        template = self.env.get_template(f"cards/{platform}/{card.kind}.json.j2")
        rendered = template.render(card=card, **context)
        result: dict[str, Any] = json.loads(rendered)
        return result
