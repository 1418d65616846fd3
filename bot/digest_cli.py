"""`returnhub digest [--send-now]`: yesterday's digest printed, or queued for everyone.

Like `returnhub outbox retry`, the command only writes rows: the running server's
outbox delivers them. `--send-now` also takes today's digest key (handlers/digest.py),
so the scheduled run does not send the same digest again later today.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp

from bot.cards import CardRenderer
from bot.platforms import dingtalk, wecom
from bot.platforms.dingtalk_sessions import Sessions
from bot.settings import Settings, templates_dir
from handlers import digest
from handlers.context import Ctx
from handlers.digest_text import build, markdown
from storage.db import Database


def add_parser(
    sub: Any,
    load: Callable[[str | None], Settings],
    config: Callable[[argparse.ArgumentParser], None],
) -> None:
    """`returnhub digest [--send-now] [--config PATH]`."""
    parser = sub.add_parser(
        "digest", help="售后日报：预览昨天的日报，或立即发送 / daily digest: preview or send now"
    )
    config(parser)
    parser.add_argument(
        "--send-now",
        action="store_true",
        help="立即排队发给所有接收人（由运行中的服务投递），今天的定时日报不再重复 / queue it now",
    )
    parser.set_defaults(func=lambda args: command(args, load(args.config)))


def platform_names(settings: Settings) -> tuple[str, ...]:
    """The platforms `serve` would enable with these settings (nothing connects)."""

    def no_http() -> aiohttp.ClientSession:
        raise RuntimeError("the digest command sends nothing itself")

    renderer = CardRenderer(templates_dir())
    names = ["console"] if settings.console.enabled else []
    names += wecom.build_platforms(settings.wecom, renderer, no_http)
    sessions = Sessions(settings.dingtalk.oapi_base, lambda: 0)
    names += dingtalk.build_platforms(settings.dingtalk, renderer, no_http, sessions)
    return tuple(names)


def command(args: argparse.Namespace, settings: Settings) -> int:
    async def go() -> int:
        db = Database(settings.database.url)
        try:
            ctx = Ctx(db=db, settings=settings, platforms=platform_names(settings))
            if not args.send_now:
                async with db.read() as session:
                    print(markdown(await build(session, ctx, ctx.now())))
                return 0
            prepared = await digest.prepare(ctx)
            async with db.transaction() as session:
                await digest.claim(session, ctx, ctx.local(ctx.now()).date())
                rows, people = digest.put(session, ctx, prepared), len(prepared.to)
            print(
                f"已排队 {rows} 条消息给 {people} 个接收人，由运行中的 returnhub serve 投递"
                f" / {rows} message(s) queued for {people} recipient(s)"
            )
            return 0
        finally:
            await db.dispose()

    return asyncio.run(go())
