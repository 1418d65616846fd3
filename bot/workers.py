"""`returnhub serve --workers N`: a pre-fork parent that keeps N server processes running.

The parent does what must happen once: it runs the migrations (replicas starting
together would race on them), binds the listening sockets, then starts N workers
(bot/worker_child.py), each the full app from `create_app` on its socket. The
workers share nothing but the database, where the clock, the outbox and inbound
recovery already claim rows (FOR UPDATE SKIP LOCKED), exactly as replicas do.

Sockets: one per worker slot, all bound to the same port with SO_REUSEPORT, so
the kernel spreads new connections evenly over the workers. One shared socket
would not: each asyncio loop accepts a whole burst per wake-up, so the keep-alive
connections a load balancer or wrk opens at once land mostly on one worker. The
parent binds them (a busy port fails before anything starts) and keeps them open,
so a restarted worker takes over its slot's queued connections instead of them
being reset. Workers are fresh interpreters (subprocess with pass_fds), not
forks of a parent that has run an event loop and database threads.

What each worker keeps to itself, and why that is safe: the signing keyring (read
from the database at start; concurrent first starts settle on one stored secret),
the WeCom access token (each worker fetches its own; WeCom returns the same token
while it is valid) and outage state (each worker parks and alerts once), its pool
and dispatcher slots. Rate limits count sent rows in the database. Counters in
/metrics are summed across workers through PROMETHEUS_MULTIPROC_DIR, a directory
the parent makes and removes (bot/metrics.py).

Signals: SIGTERM/SIGINT are forwarded once to every worker, which does the usual
shutdown (stop intake, drain, stop the clock, flush); the parent exits 0 when all
exit 0. A worker that dies is restarted after a doubling delay; one that keeps
dying within QUICK_SECONDS of its start MAX_QUICK_FAILURES times in a row stops
the server with exit 1; a worker exiting 2 (its config) stops it with exit 2.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from types import FrameType

from bot.metrics import MULTIPROCESS_DIR
from bot.settings import Settings
from bot.settings_checks import workers_problem
from storage.db import Database
from storage.migrate import upgrade

log = logging.getLogger("returnhub.workers")

QUICK_SECONDS = 30.0  # a worker dying sooner than this after its start is crash-looping
MAX_QUICK_FAILURES = 5
FIRST_DELAY = 0.5  # before the first restart; doubles per quick failure
MAX_DELAY = 10.0
STOP_SECONDS = 85.0  # each worker's drain is bounded (~75 s); systemd waits 90
POLL_SECONDS = 0.1
BACKLOG = 1024
CONFIG_EXIT = 2


class WorkersRefused(Exception):
    """The worker count cannot run on this database (a config error: exit 2)."""


def cores() -> int:
    """The cores this process may use (CPU affinity, as in a container), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve(settings: Settings, flag: int | None) -> int:
    """How many workers to run: the flag, else `[server] workers`, else the default.

    The default is one per core on PostgreSQL and 1 on SQLite (one writer); more
    than 1 on SQLite is refused (bot/settings_checks.py `workers_problem` says why).
    """
    wanted = flag if flag is not None else settings.server.workers
    if wanted == 0:
        return 1 if settings.database.url.startswith("sqlite") else cores()
    if problem := workers_problem(wanted, settings.database.url):
        raise WorkersRefused(f"--workers {wanted}: {problem}")
    return wanted


def listen(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` listening sockets on one port (SO_REUSEPORT), or one shared where the
    kernel does not balance SO_REUSEPORT (outside Linux)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    balanced = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
    sockets: list[socket.socket] = []
    try:
        for _ in range(count if balanced else 1):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if balanced:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if len(sockets) > 1:  # port 0: the others join the port the first one got
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
            sock.listen(BACKLOG)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets if balanced else sockets * count


@dataclass
class Slot:
    """One worker position: its socket, its current process, its failure streak."""

    number: int
    sock: socket.socket
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    quick_failures: int = 0
    restart_at: float | None = None


class Supervisor:
    """Starts the workers, restarts the ones that die, forwards the stop signal."""

    def __init__(
        self, sockets: list[socket.socket], config: str | None, env: dict[str, str] | None = None
    ) -> None:
        self.slots = [Slot(i + 1, sock) for i, sock in enumerate(sockets)]
        self.config = config
        self.env = env
        self.stop_since: float | None = None
        self.requested = 0  # the stop signal received, if any
        self.code = 0

    def command(self, slot: Slot) -> list[str]:
        cmd = [sys.executable, "-m", "bot.worker_child", "--fd", str(slot.sock.fileno())]
        cmd += ["--slot", str(slot.number)]
        return cmd + (["--config", self.config] if self.config else [])

    def start(self, slot: Slot) -> None:
        fd = slot.sock.fileno()
        slot.proc = subprocess.Popen(self.command(slot), pass_fds=(fd,), env=self.env)  # noqa: S603
        slot.started, slot.restart_at = time.monotonic(), None
        log.info(
            "工作进程 %d 已启动 / worker %d started (pid %d)",
            slot.number,
            slot.number,
            slot.proc.pid,
        )

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Only noted here: the loop acts on it between starts and polls, so a worker
        # being started as the signal lands still gets told to stop.
        self.requested = self.requested or signum

    def stop(self, code: int) -> None:
        """Tell every worker to drain and exit; the server then exits with `code` (or worse)."""
        self.code = max(self.code, code)
        if self.stop_since is not None:
            return
        self.stop_since = time.monotonic()
        for slot in self.slots:
            slot.restart_at = None
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.send_signal(signal.SIGTERM)
        for sock in {id(s.sock): s.sock for s in self.slots}.values():
            sock.close()  # the workers hold their own copies until they stop listening

    def _exited(self, slot: Slot, pid: int, code: int) -> None:
        slot.proc = None
        where = (slot.number, slot.number, pid)
        if self.stop_since is not None:
            if code != 0:
                log.error("工作进程 %d 停止时出错 / worker %d (pid %d) exited %d", *where, code)
                self.code = max(self.code, 1)
            return
        if code == CONFIG_EXIT:
            log.error("工作进程 %d 配置错误，停止服务 / worker %d (pid %d): config error", *where)
            self.stop(CONFIG_EXIT)
            return
        quick = time.monotonic() - slot.started < QUICK_SECONDS
        slot.quick_failures = slot.quick_failures + 1 if quick else 1
        if slot.quick_failures >= MAX_QUICK_FAILURES:
            log.error(
                "工作进程 %d 连续 %d 次启动后很快退出，停止服务 / worker %d crash-looped "
                "(%d quick exits in a row, last code %d): stopping",
                slot.number, slot.quick_failures, slot.number, slot.quick_failures, code,
            )  # fmt: skip
            self.stop(1)
            return
        delay = min(MAX_DELAY, FIRST_DELAY * 2 ** (slot.quick_failures - 1))
        slot.restart_at = time.monotonic() + delay
        log.warning(
            "工作进程 %d 意外退出（退出码 %d），%.1f 秒后重启 / worker %d (pid %d) exited %d; "
            "restarting in %.1f s",
            slot.number, code, delay, slot.number, pid, code, delay,
        )  # fmt: skip

    def run(self) -> int:
        """Supervise until every worker has stopped; the exit code of the server."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            return self._supervise()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _supervise(self) -> int:
        for slot in self.slots:
            self.start(slot)
        while True:
            if self.requested and self.stop_since is None:
                name = signal.Signals(self.requested).name
                log.info("收到 %s，通知工作进程停止 / %s: stopping the workers", name, name)
                self.stop(0)
            now = time.monotonic()
            for slot in self.slots:
                if slot.proc is not None and (code := slot.proc.poll()) is not None:
                    self._exited(slot, slot.proc.pid, code)
                elif slot.restart_at is not None and now >= slot.restart_at:
                    self.start(slot)
            if self.stop_since is not None:
                if all(slot.proc is None for slot in self.slots):
                    return self.code
                if now - self.stop_since > STOP_SECONDS:
                    self._kill_stragglers()
                    return 1
            time.sleep(POLL_SECONDS)

    def _kill_stragglers(self) -> None:
        for slot in self.slots:
            if slot.proc is not None:
                log.error("工作进程 %d 未能按时停止 / worker %d killed", slot.number, slot.number)
                slot.proc.kill()
                slot.proc.wait()


async def _migrate(settings: Settings) -> None:
    """What `create_app` would run at start-up, with the same database bounds."""
    db = Database(
        settings.database.url,
        timeout=settings.database.timeout_seconds,
        statement_timeout=settings.database.statement_timeout_seconds,
    )
    try:
        await upgrade(db)
    finally:
        await db.dispose()


def serve(
    settings: Settings, *, config: str | None, workers: int, host: str, port: int, migrate: bool
) -> int:
    """The parent: migrate once, bind, supervise `workers` processes; its exit code."""
    if migrate:
        try:
            asyncio.run(_migrate(settings))
        except Exception:
            log.exception("数据库迁移失败 / migrations failed")
            return 1
        log.info("数据库迁移完成（仅父进程执行一次） / migrations applied once, by the parent")
    try:
        sockets = listen(host, port, workers)
    except OSError as err:
        log.error("无法监听 %s:%d：%s / cannot listen", host, port, err)
        return 1
    log.info(
        "在 http://%s:%d 上启动 %d 个工作进程 / starting %d workers (parent pid %d)",
        host, sockets[0].getsockname()[1], workers, workers, os.getpid(),
    )  # fmt: skip
    # The workers' counters, summed by whichever answers /metrics (bot/metrics.py).
    shared = tempfile.mkdtemp(prefix="returnhub-metrics-")
    try:
        env = {**os.environ, MULTIPROCESS_DIR: shared}
        return Supervisor(sockets, config, env).run()
    finally:
        shutil.rmtree(shared, ignore_errors=True)
