"""The `returnhub` command (CONTRACT.md "Commands")."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from bot import settings as config
from bot.bench.main import add_parser as add_bench_parser
from bot.dingtalk_cli import add_parser as add_dingtalk_parser
from bot.orders_import import add_parser as add_orders_parser
from bot.startup_report import log_report, render
from bot.web.edge import server_kwargs
from handlers.script_library import check_dir
from storage import outbox
from storage.db import Database
from storage.migrate import upgrade

log = logging.getLogger("returnhub")


def _load(path: str | None) -> config.Settings:
    try:
        return config.load(path)
    except config.ConfigError as err:
        for line in err.errors:
            print(line, file=sys.stderr)
        print(_error_count(err.errors), file=sys.stderr)
        raise SystemExit(2) from None


def _error_count(errors: list[str]) -> str:
    return f"配置有 {len(errors)} 处错误，请修改后重试 / {len(errors)} config error(s)"


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


def cmd_init(args: argparse.Namespace) -> int:
    target = Path(args.dir)
    target.mkdir(parents=True, exist_ok=True)
    source = config.config_dir()
    plan = {
        "returnhub.example.toml": "returnhub.toml",
        "routing.toml": "routing.toml",
        "sla.toml": "sla.toml",
        "warehouse.toml": "warehouse.toml",
    }
    for src, dst in plan.items():
        if (target / dst).exists():
            print(f"{target / dst}: 已存在，保持不变 / exists, left as is")
            continue
        shutil.copyfile(source / src, target / dst)
        print(f"已写入 / wrote {target / dst}")
    scripts = target / "scripts"
    if not scripts.exists():
        shutil.copytree(source / "scripts", scripts)
        print(f"已写入 / wrote {scripts}/")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    """Every error as `file:line: message` (exit 2); else what the config switches on."""
    try:
        settings = config.load(args.config)
    except config.ConfigError as err:
        for line in err.errors:
            print(line)
        print(_error_count(err.errors), file=sys.stderr)
        return 2
    # Dispute scripts are checked here, not in load(): the server re-reads them while
    # it runs and leaves a broken file out rather than refusing to start.
    if script_errors := check_dir(settings.scripts_dir):
        for line in script_errors:
            print(line)
        print(_error_count(script_errors), file=sys.stderr)
        return 2
    for line in render(settings):
        print(line)
    print("配置无误 / config ok")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    async def work(db: Database) -> int:
        await upgrade(db)
        print("数据库已是最新结构 / database is at the latest schema")
        return 0

    return _with_db(args, work)


def _with_db(args: argparse.Namespace, work: Callable[[Database], Awaitable[int]]) -> int:
    settings = _load(args.config)

    async def run() -> int:
        db = Database(settings.database.url)
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(run())


def cmd_outbox_dead(args: argparse.Namespace) -> int:
    async def work(db: Database) -> int:
        async with db.read() as session:
            rows = await outbox.dead_letters(session, args.limit)
        for row in rows:
            print(
                f"{row.id}\t{row.kind}\t{row.destination}\t{row.case_id or '-'}\t"
                f"{row.attempts}\t{row.last_error[:120]}"
            )
        print(f"共 {len(rows)} 条死信 / {len(rows)} dead letter(s)", file=sys.stderr)
        return 0

    return _with_db(args, work)


def cmd_outbox_retry(args: argparse.Namespace) -> int:
    if not args.all and not args.ids:
        print(
            "请给出要重新投递的 id，或用 --all / name the ids to retry, or --all", file=sys.stderr
        )
        return 2

    async def work(db: Database) -> int:
        async with db.transaction() as session:
            count = await outbox.revive(
                session, None if args.all else args.ids, now=datetime.now(UTC)
            )
        print(f"已重新排队 {count} 条消息 / {count} message(s) queued again")
        return 0

    return _with_db(args, work)


def cmd_outbox_discard(args: argparse.Namespace) -> int:
    async def work(db: Database) -> int:
        async with db.transaction() as session:
            count = await outbox.discard(session, args.ids)
        print(f"已作废 {count} 条死信，其后被暂停的消息将按序发出 / {count} discarded")
        return 0

    return _with_db(args, work)


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

    init = sub.add_parser("init", help="写出一套可编辑的配置 / write an editable config set")
    init.add_argument(
        "dir", nargs="?", default=".", help="目标目录；默认当前目录 / target directory"
    )
    init.set_defaults(func=cmd_init)

    check = sub.add_parser(
        "check-config", help="检查配置，有错误时以 2 退出 / validate config; exit 2 on errors"
    )
    _config(check)
    check.set_defaults(func=cmd_check_config)

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

    db = sub.add_parser("db", help="数据库命令 / database commands")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="命令/command")
    up = db_sub.add_parser("upgrade", help="执行数据库迁移 / apply migrations")
    _config(up)
    up.set_defaults(func=cmd_db_upgrade)

    box = sub.add_parser("outbox", help="死信：列出与重新投递 / dead letters: list and retry")
    box_sub = box.add_subparsers(dest="outbox_command", required=True, metavar="命令/command")
    dead = box_sub.add_parser("dead", help="列出死信，最新的在前 / list dead letters")
    _config(dead)
    dead.add_argument("--limit", type=int, default=100, help="最多列出几条；默认 100 / how many")
    dead.set_defaults(func=cmd_outbox_dead)
    retry = box_sub.add_parser("retry", help="排除故障后重新投递死信 / queue dead letters again")
    _config(retry)
    retry.add_argument("--all", action="store_true", help="全部死信 / every dead letter")
    retry.add_argument("ids", nargs="*", type=int, help="要重新投递的死信 id / ids to retry")
    retry.set_defaults(func=cmd_outbox_retry)
    discard = box_sub.add_parser(
        "discard", help="作废死信（不再投递），放行其后被暂停的消息 / give dead letters up"
    )
    _config(discard)
    discard.add_argument("ids", nargs="+", type=int, help="死信 id（见 outbox dead）/ ids")
    discard.set_defaults(func=cmd_outbox_discard)

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
    return p


def main(argv: list[str] | None = None) -> int:
    _logging()
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
