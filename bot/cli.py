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

from aiohttp import web

from bot import settings as config
from bot.web.edge import server_kwargs
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
        raise SystemExit(2) from None


def _logging() -> None:
    logging.basicConfig(
        level=os.environ.get("RETURNHUB_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # two INFO lines per tick


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
    from bot.app import create_app

    settings = _load(args.config)
    app = create_app(settings, migrate=not args.no_migrate)
    _run(app, args.host or settings.server.host, args.port or settings.server.port)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from bot.app import create_app
    from bot.demo import demo_settings, install

    port = args.port or int(os.environ.get("RETURNHUB__SERVER__PORT", "8080"))
    settings = demo_settings(port, Path(args.var).resolve())
    app = create_app(settings)
    install(app)
    log.info("demo console: http://127.0.0.1:%d/console", port)
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
    }
    for src, dst in plan.items():
        if (target / dst).exists():
            print(f"{target / dst}: exists, left as is")
            continue
        shutil.copyfile(source / src, target / dst)
        print(f"wrote {target / dst}")
    scripts = target / "scripts"
    if not scripts.exists():
        shutil.copytree(source / "scripts", scripts)
        print(f"wrote {scripts}/")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    errors = config.check(args.config)
    for line in errors:
        print(line)
    if errors:
        return 2
    print("config ok")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    async def work(db: Database) -> int:
        await upgrade(db)
        print("database is at the latest schema")
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
        print(f"{len(rows)} dead letter(s)", file=sys.stderr)
        return 0

    return _with_db(args, work)


def cmd_outbox_retry(args: argparse.Namespace) -> int:
    if not args.all and not args.ids:
        print("name the ids to retry, or --all", file=sys.stderr)
        return 2

    async def work(db: Database) -> int:
        async with db.transaction() as session:
            count = await outbox.revive(
                session, None if args.all else args.ids, now=datetime.now(UTC)
            )
        print(f"{count} message(s) queued again")
        return 0

    return _with_db(args, work)


def cmd_console_login(args: argparse.Namespace) -> int:
    from bot.web.console_login import print_signin_link

    return print_signin_link(_load(args.config), args.name, args.hours)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="returnhub", description="售后退换货 chat-ops bot")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the bot server")
    serve.add_argument("--config")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--no-migrate", action="store_true")
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser("demo", help="SQLite under ./var, local console, demo data")
    demo.add_argument("--port", type=int)
    demo.add_argument("--var", default="var")
    demo.set_defaults(func=cmd_demo)

    init = sub.add_parser("init", help="write an editable config set into DIR")
    init.add_argument("dir", nargs="?", default=".")
    init.set_defaults(func=cmd_init)

    check = sub.add_parser("check-config", help="validate config; exit 2 on errors")
    check.add_argument("--config")
    check.set_defaults(func=cmd_check_config)

    signin = sub.add_parser("console-login", help="控制台登录链接：一次性，以该成员身份登录")
    signin.add_argument("name", help="成员姓名（[[members]] name）")
    signin.add_argument(
        "--hours", type=float, default=24, help="链接有效小时数（默认 24，最多 168）"
    )
    signin.add_argument("--config")
    signin.set_defaults(func=cmd_console_login)

    db = sub.add_parser("db", help="database commands")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="apply migrations")
    up.add_argument("--config")
    up.set_defaults(func=cmd_db_upgrade)

    box = sub.add_parser("outbox", help="dead letters: list and retry")
    box_sub = box.add_subparsers(dest="outbox_command", required=True)
    dead = box_sub.add_parser("dead", help="list dead letters, newest first")
    dead.add_argument("--config")
    dead.add_argument("--limit", type=int, default=100)
    dead.set_defaults(func=cmd_outbox_dead)
    retry = box_sub.add_parser("retry", help="queue dead letters again (after fixing the cause)")
    retry.add_argument("--config")
    retry.add_argument("--all", action="store_true")
    retry.add_argument("ids", nargs="*", type=int)
    retry.set_defaults(func=cmd_outbox_retry)
    return p


def main(argv: list[str] | None = None) -> int:
    _logging()
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
