"""Thin notifications -> neutral events: the handler the dispatcher runs for a stored
`ChannelNotice`, whichever channel sent it.

`fetchers` maps a channel name to its detail fetch (bot/channels/douyin.py
`DouyinChannel.fetch`); the intake (passed in by bot/app.py: adapters never
import handlers) applies the result under the notice's key, which deletes the
stored notice in the same transaction. Any failure raises, so the notice stays
stored and the dispatcher retries it with backoff (bot/dispatch.py `recover`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bot.events import ChannelNotice, ReturnRequest

Fetch = Callable[[ChannelNotice], Awaitable[ReturnRequest]]
Submit = Callable[[ReturnRequest, Any], Awaitable[Any]]


class NoticeRefused(Exception):
    """The detail conflicts with the case (intake refused it); retried, then alerted."""


def notice_handler(
    fetchers: Mapping[str, Fetch], submit: Submit
) -> Callable[[ChannelNotice, Any], Awaitable[None]]:
    """The dispatcher's handler for `ChannelNotice`."""

    async def on_channel_notice(notice: ChannelNotice, ctx: Any) -> None:
        fetch = fetchers.get(notice.channel)
        if fetch is None:
            raise NoticeRefused(f"channel {notice.channel!r} is not configured")
        event = await fetch(notice)
        result = await submit(event, ctx)
        if result.refused:
            raise NoticeRefused(f"{notice.key}: {result.refused}")

    return on_channel_notice
