"""The processes a bench run starts: the server under test, the ceiling, the sink.

Each is a child process on a free loopback port, started and waited for here and
always stopped (SIGTERM, then SIGKILL) when the run ends, whatever happened.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp

# Throwaway credentials of the bench's own temporary server, never a real tenant's.
GENERIC_SECRET = "bench-generic-secret"  # noqa: S105
SERVER_SECRET = "bench-server-secret-0123456789abcdef"  # noqa: S105
API_TOKEN = "bench-api-token"  # noqa: S105
WECOM_CORP_ID = "wwbench0000000001"
WECOM_AGENT_ID = 1000002
WECOM_TOKEN = "benchtoken"  # noqa: S105
# 43 characters: base64 of 32 bytes without the trailing "=", as WeCom issues them.
WECOM_AES_KEY = base64.b64encode(bytes(range(32))).decode()[:-1]

# name, roles, WeCom userid: one holder per role of the default rules.
MEMBERS = (
    ("王组长", "cs_lead", "wangzuzhang"),
    ("李总监", "ops_director", "lizongjian"),
    ("赵财务", "finance_director", "zhaocaiwu"),
    ("小周", "warehouse", "xiaozhou"),
    ("陈风控", "risk", "chenfengkong"),
    ("小美", "cs_agent", "xiaomei"),
    ("管理员", "admin", "admin"),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def write_config(directory: Path, *, port: int, db_url: str, sink: str) -> Path:
    """A returnhub.toml for the server under test: WeCom and the OMS point at the sink."""
    members = "".join(
        f'\n[[members]]\nname = "{name}"\nwecom_userid = "{userid}"\nroles = ["{role}"]\n'
        for name, role, userid in MEMBERS
    )
    path = directory / "returnhub.toml"
    path.write_text(
        f"""[server]
host = "127.0.0.1"
port = {port}
public_url = "http://127.0.0.1:{port}"
secret = "{SERVER_SECRET}"

[database]
url = "{db_url}"

[api]
token = "{API_TOKEN}"

[wecom]
corp_id = "{WECOM_CORP_ID}"
agent_id = {WECOM_AGENT_ID}
secret = "bench-wecom-secret"
token = "{WECOM_TOKEN}"
encoding_aes_key = "{WECOM_AES_KEY}"
api_base = "{sink}"

[channels.generic]
secret = "{GENERIC_SECRET}"
callback_url = "{sink}/oms"

[files]
evidence = "{directory / "evidence"}"
{members}""",
        encoding="utf-8",
    )
    return path


@dataclass
class Child:
    """Started child processes (one, or several sharing a port) and the URL they serve."""

    name: str
    procs: list[subprocess.Popen[bytes]]
    base: str
    log: IO[bytes]

    def rss_mib(self) -> float:
        """Resident memory of the processes and all their descendants, from /proc (Linux)."""
        return sum(_rss_kib(pid) for p in self.procs for pid in _tree(p.pid)) / 1024

    def open_fds(self) -> int:
        """File descriptors the processes and their descendants hold open, from /proc."""
        return sum(_fd_count(pid) for p in self.procs for pid in _tree(p.pid))

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the processes and their descendants used so far:
        the load-independent cost of a round, on a machine others share."""
        return sum(_cpu_ticks(pid) for p in self.procs for pid in _tree(p.pid)) / _TICKS

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.log.close()


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (a pre-forked server's workers), via /proc children."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with suppress(OSError):
                todo += [int(c) for c in task.read_text().split()]
    return found


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_ticks(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    return int(fields[11]) + int(fields[12])  # utime, stime


def _fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _rss_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def start(
    name: str, argv: list[str], base: str, ready: str, logs: Path, *, copies: int = 1
) -> Child:
    """Start `copies` of `argv`, wait (bounded) until GET `base + ready` answers 200."""
    log = (logs / f"{name}.log").open("wb")
    env = dict(os.environ, RETURNHUB_LOG_LEVEL=os.environ.get("RETURNHUB_LOG_LEVEL", "WARNING"))
    # Popen returns at once (it does not wait for the child): fine on the loop.
    procs = [
        subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)  # noqa: S603, ASYNC220
        for _ in range(copies)
    ]
    child = Child(name, procs, base, log)
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                break
            with suppress(aiohttp.ClientError, OSError):
                async with http.get(base + ready) as resp:
                    if resp.status == 200:
                        return child
            await asyncio.sleep(0.1)
    child.stop()
    tail = (logs / f"{name}.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"bench: {name} did not start / 未能启动:\n{tail}")


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


async def start_server(
    config: Path, port: int, logs: Path, *, workers: int = 1, profile: Path | None = None
) -> Child:
    """`returnhub serve`; with `profile`, under cProfile (written when it exits cleanly)."""
    run = ("-m", "cProfile", "-o", str(profile)) if profile else ()
    # Always explicit: serve's own default is one worker per core on PostgreSQL.
    argv = python(
        *run, "-m", "bot.cli", "serve", "--config", str(config), "--workers", str(workers)
    )
    return await start("server", argv, f"http://127.0.0.1:{port}", "/healthz", logs)


async def start_helper(mode: str, logs: Path, *, copies: int = 1) -> Child:
    """The sink, or the bare ceiling (`copies` processes sharing the port, SO_REUSEPORT)."""
    port = free_port()
    argv = python("-m", "bot.bench.ceiling", "--mode", mode, "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    return await start(mode, argv, base, "/", logs, copies=copies)
