"""The neutral Card as a DingTalk advanced interactive card's `cardParamMap`.

The card's layout lives in DingTalk, in the template imported into its card
builder (templates/dingtalk/returnhub-card.json, docs/dingtalk.md); what goes in
it is rendered here through `templates/cards/dingtalk/<kind>.json.j2`, one
variable per part: `title`, `summary` (the open card's prompt, the status line
once closed), `content` (markdown: the fields, the SKU lines, the customer
history), `buttons` (a JSON array the template loops over: text, action, colour),
`token` (each action's signed token, see dingtalk_events.py), `closed`
("true"/"false": the template hides the buttons and shows the status).

DingTalk wants every `cardParamMap` value as a string: anything else is turned
into its JSON text here, after rendering, so a template cannot get it wrong.
Customer text is defanged first (bot.cards.defang): it must not create links.
"""

from __future__ import annotations

import json
from typing import Any

from bot.cards import OUTCOME_FALLBACK, Card, CardRenderer, clean_card, defang
from bot.outbox import PermanentError
from bot.platforms.dingtalk_events import join_tokens

NAME = "dingtalk"
SOURCE = "售后机器人"
COLORS = {"primary": "blue", "danger": "red", "default": "gray"}
TOKENS_MAX = 4096


def view(card: Card) -> dict[str, Any]:
    """What the templates show; a closed card says who decided and when, and has no
    buttons left to click."""
    card = defang(clean_card(card))
    status = card.status or OUTCOME_FALLBACK
    buttons = [] if card.closed else list(card.buttons)
    tokens = join_tokens({b.action: b.token for b in buttons})
    if len(tokens) > TOKENS_MAX:
        raise PermanentError(f"card tokens exceed {TOKENS_MAX} characters")
    return {
        "source": SOURCE,
        "title": f"{card.title} · {card.outcome}" if card.closed else card.title,
        "summary": status if card.closed else card.summary,
        "fields": list(card.fields),
        "lines": list(card.lines),
        "history": list(card.history),
        "buttons": [
            {"text": b.label, "action": b.action, "color": COLORS.get(b.style, "blue")}
            for b in buttons
        ],
        "token": tokens,
        "status": card.status,
        "closed": card.closed,
        "case_id": card.case_id,
    }


def param_map(renderer: CardRenderer, card: Card) -> dict[str, str]:
    """`cardParamMap` for createAndDeliver and PUT card/instances: string values only."""
    rendered = renderer.render(NAME, card, view=view(card))
    params = rendered.get("cardParamMap")
    if not isinstance(params, dict):
        raise PermanentError(f"templates/cards/dingtalk/{card.kind}.json.j2 has no cardParamMap")
    return {
        str(k): v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        for k, v in params.items()
    }
