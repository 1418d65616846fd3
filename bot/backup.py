"""`returnhub backup PATH`: an online copy of the SQLite database while `serve` runs.

It uses SQLite's online backup API (Python's `sqlite3.Connection.backup`) on the
live file, in one step: one read transaction, so the copy is a consistent snapshot
that includes what is still in the WAL. In WAL mode (returnhub's) a reader does not
block writers, so the server keeps committing meanwhile; copying in several steps
instead would start over each time the server wrote between two of them, and might
never finish under a steady load. The copy is written to `PATH.part`, checked
(`PRAGMA integrity_check`), then renamed to PATH, so PATH is never half a database.
PostgreSQL has its own tools: the command says to use `pg_dump` (docs/operations.md).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from bot.settings import Settings


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None for another engine or in-memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def backup(source: Path, target: Path) -> int:
    """Copy `source` (live, WAL or not) to `target` atomically; the number of pages."""
    part = target.with_name(target.name + ".part")
    part.unlink(missing_ok=True)
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(part)
        try:
            src.backup(dst)  # pages=-1: the whole database in one read transaction
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            (check,) = dst.execute("PRAGMA integrity_check").fetchone()
            (pages,) = dst.execute("PRAGMA page_count").fetchone()
        finally:
            dst.close()
    finally:
        src.close()
    if check != "ok":
        part.unlink(missing_ok=True)
        raise RuntimeError(f"integrity_check on the copy: {check}")
    with part.open("rb") as f:
        os.fsync(f.fileno())
    part.replace(target)
    return int(pages)


def command(args: argparse.Namespace, settings: Settings) -> int:
    source = sqlite_path(settings.database.url)
    if source is None:
        print(
            "backup 只用于 SQLite；PostgreSQL 请用 pg_dump -Fc（见 docs/operations.md）"
            " / backup is for SQLite: use pg_dump for PostgreSQL",
            file=sys.stderr,
        )
        return 2
    target = Path(args.path)
    if not source.is_file():
        print(f"数据库文件不存在 / no database file: {source}", file=sys.stderr)
        return 2
    if target.exists() and not args.force:
        print(f"目标已存在（用 --force 覆盖）/ {target} exists (use --force)", file=sys.stderr)
        return 2
    if target.resolve() == source.resolve():
        print("目标不能是数据库本身 / the target is the database itself", file=sys.stderr)
        return 2
    try:
        pages = backup(source, target)
    except (sqlite3.Error, RuntimeError, OSError) as err:
        print(f"备份失败 / backup failed: {err}", file=sys.stderr)
        return 1
    size = target.stat().st_size
    print(f"已备份 {source} → {target}（{pages} 页，{size} 字节，integrity_check ok）")
    return 0


def add_parser(
    sub: Any,
    load: Callable[[str | None], Settings],
    config: Callable[[argparse.ArgumentParser], None],
) -> None:
    """`returnhub backup PATH [--force]`."""
    p = sub.add_parser(
        "backup", help="在线备份 SQLite 数据库（服务运行中也可）/ online SQLite backup"
    )
    p.add_argument("path", help="备份文件路径 / where to write the copy")
    p.add_argument("--force", action="store_true", help="覆盖已有文件 / overwrite PATH")
    config(p)
    p.set_defaults(func=lambda args: command(args, load(args.config)))
