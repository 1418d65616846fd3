"""`returnhub db upgrade` and `returnhub outbox dead|retry|discard`: the database commands."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from bot.settings import Settings
from storage import outbox_dead
from storage.db import Database
from storage.migrate import upgrade

Load = Callable[[str | None], Settings]


def _with_db(
    args: argparse.Namespace, load: Load, work: Callable[[Database], Awaitable[int]]
) -> int:
    settings = load(args.config)

    async def run() -> int:
        db = Database(settings.database.url)
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(run())


def cmd_db_upgrade(args: argparse.Namespace, load: Load) -> int:
    async def work(db: Database) -> int:
        await upgrade(db)
        print("数据库已是最新结构 / database is at the latest schema")
        return 0

    return _with_db(args, load, work)


def cmd_outbox_dead(args: argparse.Namespace, load: Load) -> int:
    async def work(db: Database) -> int:
        async with db.read() as session:
            rows = await outbox_dead.dead_letters(session, args.limit)
        for row in rows:
            print(
                f"{row.id}\t{row.kind}\t{row.destination}\t{row.case_id or '-'}\t"
                f"{row.attempts}\t{row.last_error[:120]}"
            )
        print(f"共 {len(rows)} 条死信 / {len(rows)} dead letter(s)", file=sys.stderr)
        return 0

    return _with_db(args, load, work)


def cmd_outbox_retry(args: argparse.Namespace, load: Load) -> int:
    if not args.all and not args.ids:
        print(
            "请给出要重新投递的 id，或用 --all / name the ids to retry, or --all", file=sys.stderr
        )
        return 2

    async def work(db: Database) -> int:
        async with db.transaction() as session:
            count = await outbox_dead.revive(
                session, None if args.all else args.ids, now=datetime.now(UTC)
            )
        print(f"已重新排队 {count} 条消息 / {count} message(s) queued again")
        return 0

    return _with_db(args, load, work)


def cmd_outbox_discard(args: argparse.Namespace, load: Load) -> int:
    async def work(db: Database) -> int:
        async with db.transaction() as session:
            count = await outbox_dead.discard(session, args.ids)
        print(f"已作废 {count} 条死信，其后被暂停的消息将按序发出 / {count} discarded")
        return 0

    return _with_db(args, load, work)


def add_parser(sub: Any, load: Load, config: Callable[[argparse.ArgumentParser], None]) -> None:
    """`returnhub db upgrade`, `returnhub outbox dead|retry|discard`."""
    db = sub.add_parser("db", help="数据库命令 / database commands")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="命令/command")
    up = db_sub.add_parser("upgrade", help="执行数据库迁移 / apply migrations")
    config(up)
    up.set_defaults(func=partial(cmd_db_upgrade, load=load))

    box = sub.add_parser("outbox", help="死信：列出与重新投递 / dead letters: list and retry")
    box_sub = box.add_subparsers(dest="outbox_command", required=True, metavar="命令/command")
    dead = box_sub.add_parser("dead", help="列出死信，最新的在前 / list dead letters")
    config(dead)
    dead.add_argument("--limit", type=int, default=100, help="最多列出几条；默认 100 / how many")
    dead.set_defaults(func=partial(cmd_outbox_dead, load=load))
    retry = box_sub.add_parser("retry", help="排除故障后重新投递死信 / queue dead letters again")
    config(retry)
    retry.add_argument("--all", action="store_true", help="全部死信 / every dead letter")
    retry.add_argument("ids", nargs="*", type=int, help="要重新投递的死信 id / ids to retry")
    retry.set_defaults(func=partial(cmd_outbox_retry, load=load))
    discard = box_sub.add_parser(
        "discard", help="作废死信（不再投递），放行其后被暂停的消息 / give dead letters up"
    )
    config(discard)
    discard.add_argument("ids", nargs="+", type=int, help="死信 id（见 outbox dead）/ ids")
    discard.set_defaults(func=partial(cmd_outbox_discard, load=load))
