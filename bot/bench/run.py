"""One bench run: the rounds, in order, against the server and the ceiling.

Rounds alternate bare, server, bare, server … with the same client and the same
prepared requests, so a machine that slows down mid-run slows both sides. The
server is a real `returnhub serve` on a temporary database (SQLite, or a fresh
database created on the PostgreSQL server named by `--db` and dropped after).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bot.bench import procs, traffic
from bot.bench.load import Req, Stats, drive
from bot.bench.report import Progress, cpu_ratio, merge, ratio
from storage.db import Database


@dataclass(frozen=True)
class Options:
    client: str
    db: str | None
    connections: int
    burst: int  # the connections of the extra intake rounds (WeCom/DingTalk batch pushes)
    workers: int
    profile: Path | None
    seconds: float
    rounds: int
    sizes: tuple[int, ...]
    timer_sizes: tuple[int, ...]
    drain_limit: float


def now() -> int:
    return int(time.time())


@asynccontextmanager
async def temp_database(url: str | None, tmp: Path, name: str) -> AsyncIterator[str]:
    """A database nobody else uses: a file under `tmp`, or CREATE/DROP DATABASE on PG."""
    if not url:
        yield f"sqlite+aiosqlite:///{tmp}/{name}.db"
        return
    base = make_url(url)
    dbname = f"returnhub_bench_{name}_{secrets.token_hex(4)}"
    admin = create_async_engine(base, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{dbname}"'))
        yield base.set(database=dbname).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
        await admin.dispose()


async def count(db: Database, model: Any, *where: Any) -> int:
    async with db.read() as session:
        return int(
            await session.scalar(select(func.count()).select_from(model).where(*where)) or 0
        )


async def wait_zero(probe: Callable[[], Awaitable[int]], limit: float) -> float | None:
    """Seconds until `probe()` reads 0, or None when `limit` passed first."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        if await probe() == 0:
            return round(time.perf_counter() - start, 2)
        await asyncio.sleep(0.1)
    return None


class Run:
    def __init__(self, opts: Options, client: str, db: Database, progress: Progress) -> None:
        self.opts, self.client, self.db, self.progress = opts, client, db, progress
        self.rounds: dict[str, dict[str, list[Stats]]] = {}
        self.batch = 0

    async def ab(
        self,
        name: str,
        bare: procs.Child,
        server: procs.Child,
        build: Callable[[], list[Req]],
        side: Callable[[], AbstractAsyncContextManager[None]] | None = None,
        connections: int | None = None,
    ) -> None:
        """Interleaved rounds of one scenario; `side()` wraps each server round."""
        got = self.rounds.setdefault(name, {"bare": [], "server": []})
        for n in range(self.opts.rounds):
            requests = build()
            self.progress.step(f"{name}: bare round {n + 1}")
            got["bare"].append(await self.measure(bare, requests, connections=connections))
            self.progress.step(f"{name}: server round {n + 1}")
            async with side() if side else nullcontext():
                got["server"].append(await self.measure(server, requests, connections=connections))

    async def measure(
        self, target: procs.Child, requests: list[Req], connections: int | None = None
    ) -> Stats:
        """One round against `target`, with the CPU its processes spent meanwhile."""
        before = target.cpu_seconds()
        stats = await self.drive(target.base, requests, connections=connections)
        stats.cpu_seconds = target.cpu_seconds() - before
        return stats

    async def drive(
        self,
        base: str,
        requests: list[Req],
        seconds: float | None = None,
        connections: int | None = None,
    ) -> Stats:
        return await drive(
            self.client,
            base,
            requests,
            connections=connections or self.opts.connections,
            seconds=seconds or self.opts.seconds,
        )

    def generic(self) -> list[Req]:
        self.batch += 1
        size = int(min(60_000, max(2_000, self.opts.seconds * 4_000)))
        return traffic.generic(f"b{self.batch}", size, now())

    def summary(self) -> dict[str, Any]:
        out = {}
        for name, got in self.rounds.items():
            bare, server = merge(got["bare"]), merge(got["server"])
            out[name] = {
                "bare": bare,
                "server": server,
                "ratio": ratio(server, bare),
                "cpu_ratio": cpu_ratio(server, bare),
            }
        return out
