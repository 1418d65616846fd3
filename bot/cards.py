"""The neutral card model and its rendering to each platform's JSON.

Handlers build a `Card` (what to show); each platform's template under
`templates/cards/<platform>/<kind>.json.j2` decides how. Every value goes
through `|tojson`, so operator text can never break the JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jinja2


@dataclass(frozen=True, slots=True)
class Button:
    label: str
    action: str  # approve | reject | transfer | ok | damaged | missing_parts | wrong_item | empty
    token: str  # opaque, signed; verified by the server on click
    style: str = "default"  # default | primary | danger


@dataclass(frozen=True, slots=True)
class Card:
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

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


class CardRenderer:
    """Card -> platform JSON through jinja2 templates (StrictUndefined: a typo fails loudly)."""

    def __init__(self, templates: Path) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(templates)),
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # noqa: S701 - JSON output; every value is |tojson-escaped
            keep_trailing_newline=True,
        )
        self.env.policies["json.dumps_kwargs"] = {"ensure_ascii": False, "sort_keys": False}

    def render(self, platform: str, card: Card, **context: Any) -> dict[str, Any]:
        template = self.env.get_template(f"cards/{platform}/{card.kind}.json.j2")
        rendered = template.render(card=card, **context)
        result: dict[str, Any] = json.loads(rendered)
        return result
