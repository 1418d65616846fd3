"""A chat message of a kind the bot does not read (a voice note without text, a
video, a file): one polite reply, once per message, and nothing else changes.

The edge (bot/platforms/dingtalk.py) calls this instead of the dispatcher: there is
no event to store, only the reply, written with the message's idempotency key so
a redelivery does not answer twice.
"""

from __future__ import annotations

from bot.events import Sender
from handlers import notify
from handlers.context import Ctx
from handlers.inbox import once

UNSUPPORTED = "暂时看不懂这类消息（语音、视频、文件等）。请发送文字或图片；发送 /帮助 查看可用命令"


async def reply_unsupported(ctx: Ctx, key: str, sender: Sender) -> None:
    """Tell `sender` their message cannot be read, once for `key`."""
    await once(ctx, key, sender.platform, lambda s: notify.send_text(s, ctx, sender, UNSUPPORTED))
