"""The `returnhub` command (CONTRACT.md "Commands")."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from bot import settings as config
from bot.backup import add_parser as add_backup_parser
from bot.bench.main import add_parser as add_bench_parser
from bot.config_cli import add_parser as add_config_parser
from bot.config_cli import error_count
from bot.db_cli import add_parser as add_db_parser
from bot.digest_cli import add_parser as add_digest_parser
from bot.dingtalk_cli import add_parser as add_dingtalk_parser
from bot.orders_import import add_parser as add_orders_parser
from bot.startup_report import log_report
from bot.web.edge import server_kwargs

log = logging.getLogger("returnhub")


def _load(path: str | None) -> config.Settings:
    try:
        return config.load(path)
    except config.ConfigError as err:
        for line in err.errors:
            print(line, file=sys.stderr)
        print(error_count(err.errors), file=sys.stderr)
        raise SystemExit(2) from None


# Libraries whose chatter is not ours, held at these levels whatever RETURNHUB_LOG_LEVEL
# says: apscheduler logs two INFO lines per tick; aiosqlite logs every statement with
# its parameters at DEBUG, which would put the server secret and buyers' details in
# the log of anyone who turned DEBUG on.
QUIET = {"apscheduler": logging.WARNING, "aiosqlite": logging.INFO}


def _logging(worker: str = "") -> None:
    """Log to stderr; a worker of `serve --workers N` tags its lines `[w<slot>:<pid>]`."""
    tag = f"[{worker}:%(process)d] " if worker else ""
    logging.basicConfig(
        level=os.environ.get("RETURNHUB_LOG_LEVEL", "INFO").upper(),
        format=f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s",
    )
    for name, level in QUIET.items():
        logging.getLogger(name).setLevel(level)


def _run(app: web.Application, host: str, port: int) -> None:
    # run_app handles SIGINT and SIGTERM: it stops accepting, then runs the
    # app's cleanup (drain, stop the clock, flush, dispose).
    web.run_app(
        app,
        host=host,
        port=port,
        **server_kwargs(app),
        print=lambda text: log.info("%s", text.strip()),
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from bot import workers as prefork
    from bot.app import create_app
    from bot.heap import freeze_after_start

    settings = _load(args.config)
    try:
        count = prefork.resolve(settings, args.workers)
    except prefork.WorkersRefused as err:
        print(err, file=sys.stderr)
        return 2
    log_report(settings, log)
    host, port = args.host or settings.server.host, args.port or settings.server.port
    if count > 1:  # a parent process supervising `count` workers (bot/workers.py)
        return prefork.serve(
            settings,
            config=args.config,
            workers=count,
            host=host,
            port=port,
            migrate=not args.no_migrate,
        )
    app = create_app(settings, migrate=not args.no_migrate)
    freeze_after_start(app)
    _run(app, host, port)
    return 0


def _worker_count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"须为正整数 / must be a positive integer: {text!r}")
    return int(text)


def cmd_demo(args: argparse.Namespace) -> int:
    from bot.app import create_app
    from bot.demo import demo_settings, install, reset

    port = args.port or int(os.environ.get("RETURNHUB__SERVER__PORT", "8080"))
    var = Path(args.var).resolve()
    if args.reset:
        for path in reset(var):
            log.info("演示重置：已删除 %s / demo reset: removed", path)
    settings = demo_settings(port, var)
    log_report(settings, log)
    app = create_app(settings)
    install(app)
    log.info("演示控制台 / demo console: http://127.0.0.1:%d/console", port)
    _run(app, "127.0.0.1", port)
    return 0


def cmd_console_login(args: argparse.Namespace) -> int:
    from bot.web.console_login import print_signin_link

    return print_signin_link(_load(args.config), args.name, args.hours)


def cmd_channels_check(args: argparse.Namespace) -> int:
    """Exit 0 when every configured shop's credentials work, 1 otherwise."""
    from bot.channels.check import check_channels

    lines, ok = asyncio.run(check_channels(_load(args.config)))
    for line in lines:
        print(line)
    return 0 if ok else 1


CONFIG_HELP = "配置文件；默认 $RETURNHUB_CONFIG，再是 ./returnhub.toml / config file"


def _config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="PATH", help=CONFIG_HELP)


class _Parser(argparse.ArgumentParser):
    """argparse whose -h line reads in Chinese too; sub-commands inherit the class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "add_help": False})
        self.add_argument("-h", "--help", action="help", help="显示本帮助并退出 / show this help")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="returnhub", description="售后退换货 chat-ops 机器人 / returns chat-ops bot")
    sub = p.add_subparsers(dest="command", required=True, metavar="命令/command")

    serve = sub.add_parser("serve", help="运行机器人服务（前台） / run the bot server")
    _config(serve)
    serve.add_argument("--host", help="监听地址；默认 [server] host / listen address")
    serve.add_argument("--port", type=int, help="监听端口；默认 [server] port / listen port")
    serve.add_argument(
        "--no-migrate",
        action="store_true",
        help="启动时不执行数据库迁移 / skip migrations at start",
    )
    serve.add_argument(
        "--workers",
        type=_worker_count,
        metavar="N",
        help="工作进程数；默认 [server] workers，未设置时 PostgreSQL 每核一个、SQLite 为 1"
        " / server processes (default: one per core on PostgreSQL, 1 on SQLite)",
    )
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser(
        "demo", help="演示：SQLite、本地控制台和示例数据 / SQLite, local console, demo data"
    )
    demo.add_argument(
        "--port", type=int, help="端口；默认 $RETURNHUB__SERVER__PORT 或 8080 / port"
    )
    demo.add_argument(
        "--var", default="var", help="数据目录（数据库、配置、照片）；默认 ./var / data dir"
    )
    demo.add_argument(
        "--reset",
        action="store_true",
        help="清空演示数据（数据库与照片）后重新开始 / start the demo over",
    )
    demo.set_defaults(func=cmd_demo)

    add_config_parser(sub, _config)

    signin = sub.add_parser(
        "console-login",
        help="成员的一次性控制台登录链接 / a member's one-time console sign-in link",
    )
    signin.add_argument("name", help="成员姓名（[[members]] name）/ member name")
    signin.add_argument(
        "--hours", type=float, default=24, help="有效小时数；默认 24，最多 168 / hours valid"
    )
    _config(signin)
    signin.set_defaults(func=cmd_console_login)

    add_db_parser(sub, _load, _config)
    add_orders_parser(sub, _load, _config)
    channels = sub.add_parser("channels", help="电商渠道：检查凭证 / shop channels")
    channels_sub = channels.add_subparsers(
        dest="channels_command", required=True, metavar="命令/command"
    )
    check_channels = channels_sub.add_parser(
        "check", help="逐店调用最便宜的鉴权接口，说明哪些凭证可用 / test each shop's credentials"
    )
    _config(check_channels)
    check_channels.set_defaults(func=cmd_channels_check)

    add_bench_parser(sub)
    add_dingtalk_parser(sub)
    add_digest_parser(sub, _load, _config)
    add_backup_parser(sub, _load, _config)
    return p


def main(argv: list[str] | None = None) -> int:
    _logging()
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
