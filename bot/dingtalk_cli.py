"""`returnhub dingtalk register-callback`: where DingTalk posts HTTP-mode card clicks.

Advanced interactive cards sent with `callbackType = "HTTP"` call back the URL
registered for their `callbackRouteKey` (`POST /v1.0/card/callbacks/register`).
We register `<server.public_url>/callbacks/dingtalk/card?key=…`, the key derived
from the app secret (bot/platforms/dingtalk.py `card_key`), also given as the
route's `apiSecret`. Run it once after setting up the app, and again after
changing `server.public_url`, `dingtalk.callback_route_key` or the app secret.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import aiohttp

from bot.outbox import PermanentError, RetryableError
from bot.platforms.dingtalk import CARD_PATH, callback_url, card_key
from bot.platforms.dingtalk_client import DingtalkClient
from bot.settings import Settings

TIMEOUT = aiohttp.ClientTimeout(total=20, connect=5)


def problem(settings: Settings) -> str | None:
    """Why the callback cannot be registered with this config, or None."""
    if not settings.dingtalk.enabled:
        return "请先配置 [dingtalk] app_key 与 app_secret / set dingtalk.app_key and app_secret"
    if not settings.server.public_url.startswith("https://"):
        return (
            "请先把 [server] public_url 设为钉钉能访问到的 https:// 地址 / "
            "server.public_url must be an https:// URL DingTalk can reach"
        )
    return None


async def register(settings: Settings, http: aiohttp.ClientSession) -> str:
    """Register the card-callback route; the URL registered, without its key."""
    dingtalk = settings.dingtalk
    client = DingtalkClient(dingtalk, lambda: http)
    url = callback_url(settings.server.public_url, dingtalk.app_secret)
    await client.register_callback(dingtalk.callback_route_key, url, card_key(dingtalk.app_secret))
    return settings.server.public_url.rstrip("/") + CARD_PATH


def cmd_register_callback(args: argparse.Namespace) -> int:
    from bot.cli import _load

    settings = _load(args.config)
    if (why := problem(settings)) is not None:
        print(why, file=sys.stderr)
        return 2

    async def run() -> str:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            return await register(settings, http)

    try:
        where = asyncio.run(run())
    except (PermanentError, RetryableError) as exc:
        print(f"注册失败 / registration failed: {exc}", file=sys.stderr)
        return 1
    route = settings.dingtalk.callback_route_key
    print(f"已注册卡片回调 / registered: {where}（callbackRouteKey = {route}）")
    return 0


def add_parser(sub: Any) -> None:
    """`returnhub dingtalk …` under the main parser's sub-commands."""
    from bot.cli import _config

    dingtalk = sub.add_parser("dingtalk", help="钉钉应用的设置命令 / DingTalk app setup")
    commands = dingtalk.add_subparsers(
        dest="dingtalk_command", required=True, metavar="命令/command"
    )
    register_cmd = commands.add_parser(
        "register-callback",
        help="向钉钉注册互动卡片的 HTTP 回调地址 / register the card callback URL",
    )
    _config(register_cmd)
    register_cmd.set_defaults(func=cmd_register_callback)
