"""The load client: the same requests, the same connections, for every target.

Two drivers with one result type. `wrk` (C, when installed) costs the machine
least, so the server keeps most of the second core; the asyncio driver needs
nothing but aiohttp. Both replay a list of prepared requests (signed in advance,
each distinct), so the client never signs on the hot path it measures.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp


@dataclass(frozen=True, slots=True)
class Req:
    method: str
    path: str  # with the query string
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


@dataclass(slots=True)
class Stats:
    """One round against one target: counts and ack latency in milliseconds."""

    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    cpu_seconds: float = 0.0  # the target's processes' CPU during the round (bench run.py)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "rate": round(self.rate, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "max_ms": round(self.max_ms, 2),
        }


def percentile(sorted_ms: Sequence[float], q: float) -> float:
    if not sorted_ms:
        return 0.0
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


def pick_client(wanted: str) -> str:
    """`auto` is wrk when it is on PATH; asking for wrk without it is an error."""
    if wanted == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    if wanted == "wrk" and not shutil.which("wrk"):
        raise SystemExit(
            "bench: --client wrk 需要安装 wrk（apt-get install wrk）/ wrk is not installed"
        )
    return wanted


async def drive(
    client: str,
    base: str,
    requests: Sequence[Req],
    *,
    connections: int,
    seconds: float,
    rate: float = 0.0,
) -> Stats:
    """Replay `requests` (cycling when exhausted) for `seconds` on `connections`.

    An error is a dropped connection, a timeout or an answer >= 400 (as wrk counts).
    `rate` > 0 paces the python driver to that many requests a second in all (a
    steady load, as the soak needs) instead of as fast as the server answers.
    """
    if client == "wrk":
        if rate:
            raise ValueError("wrk cannot pace requests: use the python client for a rate")
        return await _wrk(base, requests, connections=connections, seconds=seconds)
    return await _python(base, requests, connections=connections, seconds=seconds, rate=rate)


async def _python(
    base: str, requests: Sequence[Req], *, connections: int, seconds: float, rate: float = 0.0
) -> Stats:
    latencies: list[float] = []
    stats = Stats()
    counter = iter(range(1 << 62))
    began = time.perf_counter()
    deadline = began + seconds
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)

    async def worker(http: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline:
            n = next(counter)
            if rate:  # request n leaves at began + n / rate, whichever worker is free
                await asyncio.sleep(began + n / rate - time.perf_counter())
                if time.perf_counter() >= deadline:
                    break
            req = requests[n % len(requests)]
            start = time.perf_counter()
            try:
                async with http.request(
                    req.method, base + req.path, headers=dict(req.headers), data=req.body or None
                ) as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            latencies.append((time.perf_counter() - start) * 1000)
            key = str(status)
            stats.statuses[key] = stats.statuses.get(key, 0) + 1
            if status == 0 or status >= 400:
                stats.errors += 1

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        await asyncio.gather(*(worker(http) for _ in range(connections)))
    stats.seconds = time.perf_counter() - began
    stats.requests = len(latencies)
    latencies.sort()
    stats.p50_ms = percentile(latencies, 0.50)
    stats.p99_ms = percentile(latencies, 0.99)
    stats.max_ms = latencies[-1] if latencies else 0.0
    return stats


# wrk replays the prepared requests from a file: one thread, so the list is
# consumed in order and each request is sent once before the list repeats. wrk
# counts answers >= 400 as status errors itself (a Lua `response` hook would
# cost it most of its speed). The `done` hook prints the figures as one JSON line.
_WRK_SCRIPT = r"""
local reqs, n, i = {}, 0, 0
local function unhex(s)
  return (s:gsub('..', function(c) return string.char(tonumber(c, 16)) end))
end
function init(args)
  for line in io.lines(args[1]) do
    local method, path, headers, body = line:match('^(%S+)\t(%S+)\t(%S*)\t(%S*)$')
    local h = {}
    for pair in unhex(headers):gmatch('[^\n]+') do
      local k, v = pair:match('^([^:]+): (.*)$')
      h[k] = v
    end
    n = n + 1
    reqs[n] = wrk.format(method, unhex(path), h, unhex(body))
  end
end
function request()
  i = i % n + 1
  return reqs[i]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"micros":%d,"p50":%d,"p99":%d,"max":%d,' ..
    '"socket_errors":%d,"status_errors":%d}\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


async def _wrk(base: str, requests: Sequence[Req], *, connections: int, seconds: float) -> Stats:
    with tempfile.TemporaryDirectory(prefix="returnhub-wrk-") as tmp:
        data = Path(tmp) / "requests.tsv"
        with data.open("w") as out:
            for req in requests:
                headers = "\n".join(f"{k}: {v}" for k, v in req.headers).encode()
                out.write(
                    f"{req.method}\t{req.path.encode().hex()}\t{headers.hex()}\t{req.body.hex()}\n"
                )
        script = Path(tmp) / "replay.lua"
        script.write_text(_WRK_SCRIPT)
        cmd = [
            "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "30s",
            "-s", str(script), base, "--", str(data),
        ]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out_bytes, err = await proc.communicate()
    lines = [ln for ln in out_bytes.decode().splitlines() if ln.startswith('{"requests"')]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {err.decode()[-500:]}")
    raw = json.loads(lines[-1])
    return Stats(
        requests=raw["requests"],
        errors=raw["socket_errors"] + raw["status_errors"],
        seconds=raw["micros"] / 1e6,
        p50_ms=raw["p50"] / 1000,
        p99_ms=raw["p99"] / 1000,
        max_ms=raw["max"] / 1000,
    )
