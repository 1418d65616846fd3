"""A role's WeCom group chat (应用群聊): notices through `appchat/send`.

`[roles.X] wecom_chat_id` names a chat the app created with `appchat/create`
(WeCom posts only to the app's own chats, and only for an app whose visible
range is the root department). `appchat/send` takes text, image, voice, video,
file, textcard, news, mpnews and markdown, but no `template_card` (doc
path/90248), so a group cannot hold an interactive card: the chat gets the card
as markdown without buttons, naming who must act, while each of them gets the
card itself in their app chat. A group message cannot be edited either, so a
decision is posted to the chat as one more line ("… · 已同意") instead.

Destination `wecom-chat:<chatid>`. Markdown for apps is at most 2048 bytes
(longer is cut at a line end and marked).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bot.cards import ASSIGNEES, Card, CardRenderer, clean_text, defang
from bot.platforms.outbound import split_text
from bot.platforms.wecom_client import WecomClient
from bot.platforms.wecom_events import NOT_UPDATABLE
from bot.platforms.wecom_robot import ROBOT_PLATFORM, fit_markdown

CHAT_PLATFORM = "wecom-chat"
CHAT_MARKDOWN_BYTES = 2048
CHAT_TEXT_BYTES = 2048


class WecomChatPlatform:
    """Group-chat notices of the app; the recipient is the chatid from `[roles.X]`."""

    name = CHAT_PLATFORM

    def __init__(self, client: WecomClient, renderer: CardRenderer) -> None:
        self.client = client
        self.renderer = renderer

    async def _post(self, chatid: str, msgtype: str, content: dict[str, Any]) -> None:
        body = {"chatid": chatid, "msgtype": msgtype, msgtype: content, "safe": 0}
        await self.client.call("POST", "appchat/send", body=body)

    async def send_card(self, recipient: str, card: Card, *, card_id: int, outbox_id: int) -> str:
        """The card as markdown (the robots' layout), with who must act on it."""
        assignees = card.extra.get(ASSIGNEES, "")
        if assignees:
            note = f"请 {assignees} 在应用消息中处理（卡片已单独发送）"
            card = dataclasses.replace(card, lines=(*card.lines, note))
        message = self.renderer.render(ROBOT_PLATFORM, defang(card))
        content = fit_markdown(message["markdown"]["content"], CHAT_MARKDOWN_BYTES)
        await self._post(recipient, "markdown", {"content": content})
        return NOT_UPDATABLE

    async def update_card(
        self, recipient: str, platform_ref: str, card: Card, *, card_id: int
    ) -> str | None:
        """A group message cannot change: post the outcome as a new line instead."""
        if card.closed and card.status:
            await self._text(recipient, clean_text(f"{card.title} · {card.status}"))
        return None

    async def send_text(
        self, recipient: str, text: str, *, outbox_id: int, retry: bool = False
    ) -> None:
        await self._text(recipient, text)

    async def _text(self, chatid: str, text: str) -> None:
        for piece in split_text(text, CHAT_TEXT_BYTES):
            await self._post(chatid, "text", {"content": piece})
