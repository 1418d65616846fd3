"""What the fake WeCom takes to send (message/send, appchat/send, update_template_card,
webhook/send) and the views tests read of what it delivered: part of `FakeWecom`
(tests/fakes/wecom.py), whose fields these methods use."""

from __future__ import annotations

import json
import secrets
from typing import Any

from aiohttp import web

from tests.fakes.wecom_checks import (
    CHAT_NOT_FOUND,
    INTERACTIVE,
    INVALID_MEDIA,
    INVALID_MSGTYPE,
    INVALID_PARAM,
    NO_CALLBACK_URL,
    TEXT_BYTES,
    Refusal,
    check_appchat,
    check_card,
    check_content,
    check_robot,
    err,
)
from tests.fakes.wecom_limits import issue_code, use_code


class Messages:
    """The sending endpoints of `FakeWecom` and what they recorded."""

    # --- what tests read ----------------------------------------------------------------

    def chat_texts(self, chatid: str) -> list[str]:
        return [
            m[m["msgtype"]]["content"]
            for m in self.chat_messages
            if m["chatid"] == chatid and m["msgtype"] in ("text", "markdown")
        ]

    def dropped_for(self, userid: str) -> list[dict[str, Any]]:
        """Messages WeCom accepted for `userid` (errcode 0) and never delivered."""
        return [d for d in self.dropped if d["touser"].lower() == userid.lower()]

    def texts_to(self, userid: str) -> list[str]:
        return [
            m["text"]["content"]
            for m in self.messages
            if m["msgtype"] == "text" and m["touser"] == userid
        ]

    def cards_to(self, userid: str) -> list[dict[str, Any]]:
        return [
            m["template_card"]
            for m in self.messages
            if m["msgtype"] == "template_card" and m["touser"] == userid
        ]

    def updates_for(self, userid: str) -> list[dict[str, Any]]:
        return [u for u in self.updates if userid in u["userids"]]

    def images_to(self, userid: str) -> list[bytes]:
        """The pictures message/send delivered to `userid` (their uploaded bytes)."""
        return [
            self.media[m["image"]["media_id"]][0]
            for m in self.messages
            if m["msgtype"] == "image" and m["touser"] == userid
        ]

    # --- the endpoints ------------------------------------------------------------------

    def _send(self, body: dict[str, Any]) -> dict[str, Any]:
        touser = body.get("touser")
        if not isinstance(touser, str) or not touser:
            raise Refusal(40031, "invalid touser")
        users = touser.split("|")
        # WeCom matches userids case-insensitively and echoes the invalid ones lowercased.
        known = {u.lower() for u in self.users} if self.users is not None else None
        invalid = [u for u in users if known is not None and u.lower() not in known]
        if len(invalid) == len(users):
            raise Refusal(81013, "user & party & tag all invalid")
        msgtype = body.get("msgtype")
        content = body.get(msgtype) if isinstance(msgtype, str) else None
        if msgtype in ("text", "markdown"):
            check_content(content, TEXT_BYTES)
        elif msgtype == "image":
            if not isinstance(content, dict) or content.get("media_id") not in self.media:
                raise Refusal(INVALID_MEDIA, "invalid media_id")
        elif msgtype == "template_card":
            check_card(content, send=True, seen=self.task_ids)
            if content["card_type"] in INTERACTIVE and not self.has_callback_url:
                raise Refusal(NO_CALLBACK_URL, "app has no callback url for this template_card")
        else:
            raise Refusal(INVALID_MSGTYPE, "invalid message type")
        now = self.clock()
        valid = [u for u in users if u not in invalid]
        if self._a_copy(body, valid, now):
            self.deduplicated.append(body)
            return {"msgid": secrets.token_hex(8), "invaliduser": ""}
        delivered = [u for u in valid if self.member_windows.admit(u, now)]
        shape = _shape(body)
        self.delivered_at.extend((now, u, shape) for u in delivered)
        self.dropped.extend({**body, "touser": u} for u in valid if u not in delivered)
        if delivered:
            self.messages.append({**body, "touser": "|".join(delivered)})
        answer: dict[str, Any] = {
            "msgid": secrets.token_hex(8),
            "invaliduser": "|".join(u.lower() for u in invalid),
        }
        if msgtype == "template_card" and content["card_type"] in INTERACTIVE:
            # Dropped or not, the task_id is taken and a code issued (UNCONFIRMED for drops).
            self.task_ids.add(content["task_id"])
            answer["response_code"] = issue_code(self.codes, users[0], content["task_id"], now)
        return answer

    def _a_copy(self, body: dict[str, Any], users: list[str], now: float) -> bool:
        """`enable_duplicate_check`: the same message (touser, msgtype and content)
        already delivered within `duplicate_check_interval` (default 1,800 s, at most
        4 h) is not sent again. The fake compares with every delivered message,
        flagged or not (UNCONFIRMED: WeCom's doc does not say)."""
        if body.get("enable_duplicate_check") not in (1, "1"):
            return False
        interval = body.get("duplicate_check_interval", 1800)
        if not isinstance(interval, int) or not 0 < interval <= 4 * 3600:
            raise Refusal(INVALID_PARAM, "invalid duplicate_check_interval")
        shape = _shape(body)
        return all(
            any(u == seen and shape == old and now - at <= interval
                for at, seen, old in self.delivered_at)
            for u in users
        )  # fmt: skip

    def _appchat(self, body: dict[str, Any]) -> dict[str, Any]:
        """appchat/send: no agentid; only chats this app created; no template cards."""
        chatid = body.get("chatid")
        if not isinstance(chatid, str) or chatid not in self.chats:
            raise Refusal(CHAT_NOT_FOUND, "chatid not found")
        check_appchat(body)
        now = self.clock()
        for member in sorted(self.chats[chatid]):
            if not self.chat_windows.admit(member, now):
                self.dropped.append({**body, "touser": member})
        self.chat_messages.append(body)
        return {}

    def _update(self, body: dict[str, Any]) -> dict[str, Any]:
        userids = body.get("userids")
        if not isinstance(userids, list) or not userids or len(userids) > 1000:
            raise Refusal(INVALID_PARAM, "invalid userids")
        if not self.has_callback_url:
            raise Refusal(NO_CALLBACK_URL, "app has no callback url")  # UNCONFIRMED here
        code = use_code(self.codes, str(body.get("response_code")), userids, self.clock())
        if "template_card" in body:
            card = body["template_card"]
            check_card(card, send=False, seen=set())
            if card.get("task_id", code["task_id"]) != code["task_id"]:
                raise Refusal(INVALID_PARAM, "task_id does not match the response_code")
        elif not isinstance(body.get("button"), dict) or not body["button"].get("replace_name"):
            raise Refusal(INVALID_PARAM, "need template_card or button.replace_name")
        code["used"] = True
        self.updates.append(body)
        return {"invaliduser": []}

    async def _webhook(self, request: web.Request) -> web.Response:
        if (injected := await self._before("webhook/send")) is not None:
            return injected
        key = request.query.get("key", "")
        if key not in self.robot_keys:
            return err(93000, "invalid webhook url")
        try:
            body = json.loads(await request.read())
            check_robot(body)
        except ValueError:
            return err(40035, "invalid json")
        except Refusal as exc:
            return err(exc.errcode, exc.errmsg)
        now = self.clock()
        recent = [t for t in self.robot_times.get(key, []) if now - t < 60]
        if len(recent) >= 20:  # 20 messages a minute per robot
            return err(45009, "api freq out of limit")
        self.robot_times[key] = [*recent, now]
        self.robot.append((key, body))
        return err(0, "ok")


def _shape(body: dict[str, Any]) -> str:
    """What the duplicate check compares: the message, not the request's flags."""
    msgtype = body.get("msgtype")
    return json.dumps([msgtype, body.get(str(msgtype))], sort_keys=True, ensure_ascii=False)
