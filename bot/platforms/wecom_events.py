"""Decrypted WeCom callback XML -> neutral events (text, image, template_card_event).

wechatpy's `parse_message` knows text and image but not `template_card_event`
(it becomes an `UnknownMessage`), so all three are read here from one parse of
the decrypted XML (DTDs and entities refused, see wecom_crypto.parse_xml).

Idempotency keys (DESIGN.md §6): `wecom:msg:<MsgId>` for messages;
`wecom:card:<FromUserName>:<CreateTime>:<EventKey>:<TaskId>` for card events,
which carry no MsgId. The inbox column holds 255 characters: a longer key keeps
its prefix and replaces the rest with a SHA-256 digest, still one key per event.

WeCom's own values (ResponseCode, MediaId, EventKey, TaskId, OptionId) are opaque:
the docs promise no alphabet and WeCom may change their shape, and a 400 makes
WeCom re-send three times and then drop the click. So any printable value of
1-1024 characters is taken (FromUserName: 1-120, see USERID_MAX); a control
character, a line break or an over-long value is refused with a logged reason
naming the field.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from bot import keys
from bot.events import CardAction, ChatMessage, ImageMessage, Sender
from bot.platforms.inbound import CallbackRejected, is_opaque
from bot.platforms.wecom_crypto import parse_xml

log = logging.getLogger(__name__)

NAME = "wecom"
TEXT_MAX = 4000
OPAQUE_MAX = 1024  # generous: a button key is at most 1024 bytes, a task_id 128
# Userids are 1-64 bytes; a linked corp's member is "corpid/userid". 120 characters fit
# the outbox destination ("wecom:<userid>", 128).
USERID_MAX = 120
REF_SEPARATOR = "|"  # platform_ref = "<task_id>|<response_code>"; task ids have no "|"
NOT_UPDATABLE = "-"  # platform_ref of a card WeCom gave no response_code for
_DIGITS = re.compile(r"\d{1,20}")

# Question keys of select-type cards (multiple_interaction / button_selection) and
# what their option ids mean: a reject reason from this list, or a member userid.
REASON_QUESTION = "reason"
TARGET_QUESTION = "target"
REJECT_REASONS: dict[str, str] = {
    "used": "商品已使用，影响二次销售",
    "expired": "已超过售后期限",
    "no_defect": "核实无质量问题",
    "no_evidence": "凭证不足，请补充照片",
    "policy": "不符合退换货政策",
}


Inbound = ChatMessage | CardAction | ImageMessage


def make_ref(task_id: str, response_code: str) -> str:
    return f"{task_id}{REF_SEPARATOR}{response_code}"


def split_ref(ref: str) -> tuple[str, str]:
    """(task_id, response_code) of a platform_ref; either may be empty."""
    task_id, _, code = ref.partition(REF_SEPARATOR)
    return task_id, code


def _text(root: dict[str, Any], name: str, *, required: bool = True) -> str:
    value = root.get(name)
    if value is None:
        if required:
            raise CallbackRejected(400, f"message has no {name}")
        return ""
    if not isinstance(value, str):
        raise CallbackRejected(400, f"{name} is not text")
    return value


def _match(pattern: re.Pattern[str], value: str, name: str) -> str:
    if not pattern.fullmatch(value):
        raise CallbackRejected(400, f"malformed {name}")
    return value


def _opaque(value: str, name: str, limit: int = OPAQUE_MAX) -> str:
    """`value` if it is an acceptable opaque WeCom value, else a 400 saying why."""
    if is_opaque(value, limit):
        return value
    why = (
        f"{len(value)} characters, over {limit}"
        if len(value) > limit
        else "empty"
        if not value
        else "has a control character or line break"
    )
    raise CallbackRejected(400, f"malformed {name}: {why}")


def parse(xml: str, *, agent_id: int = 0) -> Inbound | None:
    """The neutral event for a decrypted callback, or None for what we do not handle.

    Raises CallbackRejected(400) when a field we rely on is missing or malformed.
    """
    root = parse_xml(xml, force_list=("SelectedItem", "OptionId"))
    msg_type = _text(root, "MsgType").lower()
    user = _opaque(_text(root, "FromUserName"), "FromUserName", USERID_MAX)
    agent = root.get("AgentID")
    if agent_id and agent is not None and str(agent).strip() != str(agent_id):
        log.warning("wecom callback for agent %s ignored (ours is %s)", agent, agent_id)
        return None
    sender = Sender(NAME, user)
    if msg_type == "text":
        msg_id = _match(_DIGITS, _text(root, "MsgId"), "MsgId")
        text = _text(root, "Content", required=False)[:TEXT_MAX]
        return ChatMessage(key=keys.key(NAME, "msg", msg_id), sender=sender, text=text)
    if msg_type == "image":
        msg_id = _match(_DIGITS, _text(root, "MsgId"), "MsgId")
        media_id = _opaque(_text(root, "MediaId"), "MediaId")
        return ImageMessage(key=keys.key(NAME, "msg", msg_id), sender=sender, media_id=media_id)
    if msg_type == "event" and _text(root, "Event", required=False).lower() == (
        "template_card_event"
    ):
        return _card_event(root, sender)
    log.info("wecom %s callback from %s ignored", msg_type or "untyped", user)
    return None


def _card_event(root: dict[str, Any], sender: Sender) -> CardAction:
    created = _match(_DIGITS, _text(root, "CreateTime"), "CreateTime")
    event_key = _opaque(_text(root, "EventKey"), "EventKey")
    task_id = _opaque(_text(root, "TaskId"), "TaskId")
    if REF_SEPARATOR in task_id:  # never in ours (wecom_cards.task_id_for): not our card
        raise CallbackRejected(400, f"malformed TaskId: contains {REF_SEPARATOR!r}")
    code = _text(root, "ResponseCode", required=False)
    if code:
        _opaque(code, "ResponseCode")
    selected = selections(root.get("SelectedItems"))
    reason_ids = selected.get(REASON_QUESTION, [])
    reason = "；".join(REJECT_REASONS[i] for i in reason_ids if i in REJECT_REASONS)
    targets = [t for t in selected.get(TARGET_QUESTION, []) if is_opaque(t, USERID_MAX)]
    return CardAction(
        key=keys.key(NAME, "card", sender.user_id, created, event_key, task_id),
        sender=sender,
        token=event_key,
        reason=reason,
        target=targets[0] if targets else "",
        platform_ref=make_ref(task_id, code) if code else "",
    )


def selections(items: Any) -> dict[str, list[str]]:
    """`SelectedItems/SelectedItem[]/{QuestionKey, OptionIds/OptionId[]}` -> {key: ids}."""
    if not isinstance(items, dict):
        return {}
    found: dict[str, list[str]] = {}
    for item in items.get("SelectedItem") or []:
        if not isinstance(item, dict):
            continue
        question = item.get("QuestionKey")
        options = item.get("OptionIds")
        ids = options.get("OptionId") if isinstance(options, dict) else None
        if not isinstance(question, str) or not isinstance(ids, list):
            continue
        found[question] = [i for i in ids if isinstance(i, str) and is_opaque(i, OPAQUE_MAX)]
    return found
