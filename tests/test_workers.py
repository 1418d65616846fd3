"""`returnhub serve --workers N` as an operator runs it: a parent and N worker processes.

On PostgreSQL two workers share the port and the database: every outbox row reaches
the fake OMS once, every acknowledged-but-unhandled event is recovered once, both
workers answer requests, /metrics counts the requests of both whichever answers, and
SIGTERM drains both and exits 0. A killed worker is
restarted; workers that cannot start end the server with a non-zero exit.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import ColumnElement, func, select, text

from bot.events import ChatMessage, Sender
from storage.db import Database
from storage.models import InboundEvent, InboxKey, OutboxMessage
from tests.conftest import pg_or_skip
from tests.fakes.oms import running_oms
from tests.support import GENERIC_SECRET, make_settings, return_body, sign_generic
from tests.test_serve import free_port

ROOT = Path(__file__).resolve().parents[1]
CLI = "import sys, bot.cli; sys.exit(bot.cli.main())"
HEADER = "X-Returnhub-Worker"
STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")
WAIT = 120.0  # generous bound on any one wait; no test asserts on speed


def alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    try:
        async with asyncio.timeout(WAIT):
            while True:
                if await check():
                    return
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"gave up waiting for {what}") from None


class Server:
    """`returnhub serve ...` in a subprocess; its output collected line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def start(cls, cwd: Path, *args: str) -> Server:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CLI, *args,
            cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.lines.append(line.decode(errors="replace"))

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def workers(self) -> dict[int, int]:
        """Each worker's pid by process id -> slot, from the parent's log."""
        return {int(m[2]): int(m[1]) for m in STARTED.finditer(self.output)}

    async def wait(self) -> int:
        async with asyncio.timeout(WAIT):
            code = await self.proc.wait()
            await self._reader
        return code

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.wait()


def serve_args(config: str, port: int) -> list[str]:
    return ["serve", "--config", config, "--workers", "2", "--port", str(port)]


async def answering_pids(port: int, tries: int = 1) -> set[int]:
    """Which workers answer /healthz over `tries` fresh connections (0 while starting)."""
    pids: set[int] = set()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        for _ in range(tries):
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        pids.add(int(resp.headers[HEADER]))
            except aiohttp.ClientError:
                await asyncio.sleep(0.2)
    return pids


async def wait_for_workers(port: int, expected: set[int] | int) -> set[int]:
    seen: set[int] = set()

    async def enough() -> bool:
        seen.update(await answering_pids(port, 4))
        return seen >= expected if isinstance(expected, set) else len(seen) >= expected

    await until(enough, f"workers answering on {port}")
    return seen


async def empty_schema(url: str) -> None:
    db = Database(url)
    async with db.engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await db.dispose()


async def push_cases(port: int, count: int) -> set[int]:
    """POST `count` distinct signed return requests on fresh connections; answering pids."""
    pids: set[int] = set()
    slots = asyncio.Semaphore(8)
    connector = aiohttp.TCPConnector(force_close=True)  # each request a new connection

    async def one(http: aiohttp.ClientSession, i: int) -> None:
        amount = "29.90" if i % 4 else "120.00"  # auto-approved and cs_lead tiers
        body = return_body(
            event_id=f"evt-{i}", external_id=f"AS-{i}", order_id=f"SO-{i}", amount=amount,
            buyer={"ref": f"buyer-{i}", "nick": "喵星人"},
            items=[{"sku": "FEEDER-2", "name": "自动喂食器", "qty": 1, "unit_price": amount}],
        )  # fmt: skip
        raw = json.dumps(body, ensure_ascii=False).encode()
        headers = sign_generic(GENERIC_SECRET, raw, int(datetime.now(UTC).timestamp()))
        url = f"http://127.0.0.1:{port}/webhooks/generic"
        async with slots, http.post(url, data=raw, headers=headers) as resp:
            assert resp.status == 202, await resp.text()
            pids.add(int(resp.headers[HEADER]))

    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(*(one(http, i) for i in range(count)))
    return pids


async def webhooks_counted(port: int, scrapes: int = 6) -> set[float]:
    """The accepted-webhook counter as each of `scrapes` /metrics answers has it."""
    seen: set[float] = set()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        for _ in range(scrapes):
            async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                page = await resp.text()
            for family in text_string_to_metric_families(page):
                for sample in family.samples:
                    if sample.name == "returnhub_http_requests_total" and sample.labels == {
                        "method": "POST", "route": "/webhooks/generic", "status": "202"
                    }:  # fmt: skip
                        seen.add(sample.value)
    return seen


async def seed_inbound(db: Database, count: int) -> list[str]:
    """Events acknowledged but never handled (as a crash leaves them), due for recovery."""
    now = datetime.now(UTC).replace(tzinfo=None)
    keys = [f"console:recover-{i}" for i in range(count)]
    async with db.transaction() as session:
        for key in keys:
            event = ChatMessage(key=key, sender=Sender("console", "小美"), text="/帮助")
            session.add(
                InboundEvent(
                    key=key, kind="chat_message", payload=asdict(event), status="pending",
                    attempts=0, next_at=now - timedelta(seconds=1), received_at=now, last_error="",
                )
            )  # fmt: skip
    return keys


async def count(db: Database, *where: ColumnElement[bool]) -> int:
    """Outbox rows matching `where`."""
    query = select(func.count()).select_from(OutboxMessage).where(*where)
    async with db.read() as session:
        return int(await session.scalar(query) or 0)


@pytest.mark.pg
async def test_two_workers_share_the_work_and_do_each_piece_once(tmp_path: Path) -> None:
    url = pg_or_skip()
    await empty_schema(url)  # the parent migrates it
    port = free_port()
    async with running_oms(lambda: datetime.now(UTC)) as oms:
        make_settings(tmp_path, url, callback_url=oms.url, outbox={"tick_seconds": 0.2})
        config = str(tmp_path / "returnhub.toml")
        server = await Server.start(tmp_path, *serve_args(config, port))
        db = Database(url)
        try:
            await wait_for_workers(port, 2)
            keys = await seed_inbound(db, 6)
            pids = await push_cases(port, 40)
            assert len(pids) == 2, f"one worker answered every request: {pids}"

            async def settled() -> bool:
                async with db.read() as session:
                    waiting = await session.scalar(select(func.count()).select_from(InboundEvent))
                return waiting == 0 and await count(db, OutboxMessage.status == "pending") == 0

            await until(settled, "outbox drained and inbound recovered")
            generic = OutboxMessage.destination == "channel:generic"
            sent = await count(db, generic, OutboxMessage.status == "sent")
            assert sent >= 40 and await count(db, generic) == sent
            assert len(oms.events) == sent, "every outbox row reached the OMS"
            assert len(oms.deliveries) == sent, "no event_id was delivered twice"
            assert oms.refused == []
            async with db.read() as session:
                handled = await session.scalar(select(func.count()).where(InboxKey.key.in_(keys)))
            assert handled == len(keys)
            replies = (
                OutboxMessage.destination == "console:小美",
                OutboxMessage.kind == "text.send",
            )
            assert await count(db, *replies) == len(keys), "each recovered event handled once"
            assert await webhooks_counted(port) == {40}, "every worker's /metrics sums both"

            server.proc.send_signal(signal.SIGTERM)
            assert await server.wait() == 0, server.output
        finally:
            await server.kill()
            await db.dispose()
    out = server.output
    assert out.count("migrations applied once, by the parent") == 1
    assert out.count("clock stopped") == 2, out
    assert set(server.workers()) == pids
    assert not any(alive(pid) for pid in server.workers())


@pytest.mark.pg
async def test_a_killed_worker_is_restarted_and_the_server_still_stops_cleanly(
    tmp_path: Path,
) -> None:
    url = pg_or_skip()
    await empty_schema(url)
    port = free_port()
    make_settings(tmp_path, url)
    config = str(tmp_path / "returnhub.toml")
    server = await Server.start(tmp_path, *serve_args(config, port))
    try:
        first = await wait_for_workers(port, 2)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)

        async def restarted() -> bool:
            return len(server.workers()) == 3

        await until(restarted, "the killed worker started again")
        (fresh,) = set(server.workers()) - first
        assert server.workers()[fresh] == server.workers()[victim]  # the same slot again
        await wait_for_workers(port, first - {victim} | {fresh})
        assert "restarting in" in server.output
        server.proc.send_signal(signal.SIGTERM)
        assert await server.wait() == 0, server.output
    finally:
        await server.kill()
    assert not any(alive(pid) for pid in server.workers())


async def test_workers_that_cannot_start_end_the_server_with_an_error(tmp_path: Path) -> None:
    # PostgreSQL on a port nobody listens on; --no-migrate: the parent does not connect.
    nowhere = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/returnhub"
    config = tmp_path / "returnhub.toml"
    config.write_text(f'[database]\nurl = "{nowhere}"\n', encoding="utf-8")
    server = await Server.start(
        tmp_path, "serve", "--config", str(config), "--workers", "2", "--port", str(free_port()),
        "--no-migrate",
    )  # fmt: skip
    try:
        code = await server.wait()
    finally:
        await server.kill()
    assert code == 1, server.output
    assert "crash-looped" in server.output
    assert len(server.workers()) >= 5  # restarted with a delay, then given up
    assert not any(alive(pid) for pid in server.workers())


@pytest.mark.pg
async def test_workers_whose_parent_was_killed_stop_by_themselves(tmp_path: Path) -> None:
    url = pg_or_skip()
    await empty_schema(url)
    port = free_port()
    make_settings(tmp_path, url)
    server = await Server.start(tmp_path, *serve_args(str(tmp_path / "returnhub.toml"), port))
    pids: set[int] = set()
    try:
        pids |= await wait_for_workers(port, 2)
        await server.kill()  # SIGKILL: the parent forwards nothing

        async def gone() -> bool:
            return not any(alive(pid) for pid in pids)

        await until(gone, "the orphaned workers to stop")
    finally:
        await server.kill()
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert "the parent is gone: stopping" in server.output
